#include "target/iscsi/session_registry.h"

#include <utility>

namespace iscsi {

SessionRegistry::AdmitResult SessionRegistry::Admit(
    const std::string& key, absl::AnyInvocable<void()> drop,
    absl::AnyInvocable<void() &&> on_ready, std::shared_ptr<SessionRecord>* record) {
  absl::AnyInvocable<void()> drop_old;
  AdmitResult result = AdmitResult::kAdmitted;
  {
    absl::MutexLock lock(&mu_);
    auto old_it = by_key_.find(key);
    std::shared_ptr<SessionRecord> old =
        old_it == by_key_.end() ? nullptr : old_it->second;
    if (old == nullptr && by_tsih_.size() >= max_sessions_) {
      return AdmitResult::kTooManySessions;
    }
    auto fresh = std::make_shared<SessionRecord>();
    fresh->key = key;
    fresh->drop = std::move(drop);
    do {
      fresh->tsih = next_tsih_++;
      if (next_tsih_ == 0) next_tsih_ = 1;
    } while (fresh->tsih == 0 || by_tsih_.count(fresh->tsih) > 0);
    if (old != nullptr) {
      // Reinstatement: wait for the old nexus to be cleaned up.
      old->waiters.push_back(std::move(on_ready));
      if (!old->cleaning) drop_old = std::move(old->drop);
      result = AdmitResult::kMustWait;
    }
    by_key_[key] = fresh;
    by_tsih_[fresh->tsih] = fresh;
    *record = std::move(fresh);
  }
  if (drop_old) drop_old();
  return result;
}

void SessionRegistry::BeginCleanup(const std::shared_ptr<SessionRecord>& record) {
  absl::MutexLock lock(&mu_);
  record->cleaning = true;
  record->drop = nullptr;
}

void SessionRegistry::EndCleanup(const std::shared_ptr<SessionRecord>& record) {
  std::vector<absl::AnyInvocable<void() &&>> waiters;
  {
    absl::MutexLock lock(&mu_);
    record->cleaning = false;
    record->ended = true;
    waiters = std::move(record->waiters);
    auto it = by_key_.find(record->key);
    if (it != by_key_.end() && it->second == record) by_key_.erase(it);
    auto t = by_tsih_.find(record->tsih);
    if (t != by_tsih_.end() && t->second == record) by_tsih_.erase(t);
  }
  for (auto& w : waiters) std::move(w)();
}

bool SessionRegistry::IsCurrent(const std::shared_ptr<SessionRecord>& record) {
  absl::MutexLock lock(&mu_);
  auto it = by_key_.find(record->key);
  return it != by_key_.end() && it->second == record;
}

bool SessionRegistry::TsihExists(uint16_t tsih) {
  absl::MutexLock lock(&mu_);
  return by_tsih_.count(tsih) > 0;
}

size_t SessionRegistry::size() {
  absl::MutexLock lock(&mu_);
  return by_tsih_.size();
}

}  // namespace iscsi
