#include "appliance/daemon/pr_persistence.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace appliance::daemon {

ConfigDbPrPersistence::ConfigDbPrPersistence(std::shared_ptr<config::ConfigDb> db)
    : db_(std::move(db)), worker_([this] { Work(); }) {}

ConfigDbPrPersistence::~ConfigDbPrPersistence() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

void ConfigDbPrPersistence::Save(const std::string& lu_key, uint64_t sequence,
                                 std::string state, SaveCallback done) {
  config::PrStateRecord record;
  record.set_sequence(sequence);
  record.set_state(std::move(state));
  absl::MutexLock lock(&mu_);
  queue_.push_back([this, lu_key, record = std::move(record),
                    done = std::move(done)]() mutable {
    std::move(done)(db_->PutPrState(lu_key, record));
  });
}

absl::StatusOr<std::string> ConfigDbPrPersistence::Load(
    const std::string& lu_key) {
  absl::StatusOr<std::optional<config::PrStateRecord>> record =
      db_->GetPrState(lu_key);
  if (!record.ok()) return record.status();
  if (!record->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no reservation state saved for ", lu_key));
  }
  return (*record)->state();
}

void ConfigDbPrPersistence::Work() {
  for (;;) {
    absl::AnyInvocable<void() &&> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ConfigDbPrPersistence* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
               self->mu_) { return self->stopping_ || !self->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, and everything is saved
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(job)();
  }
}

}  // namespace appliance::daemon
