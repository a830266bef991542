#include "appliance/ha/failure_detector.h"

#include <algorithm>
#include <utility>

namespace appliance::ha {

absl::string_view PartnerVerdictName(PartnerVerdict verdict) {
  switch (verdict) {
    case PartnerVerdict::kUnknown:
      return "unknown";
    case PartnerVerdict::kAlive:
      return "alive";
    case PartnerVerdict::kInterconnectLost:
      return "interconnect-lost";
    case PartnerVerdict::kMailboxLost:
      return "mailbox-lost";
    case PartnerVerdict::kDead:
      return "dead";
  }
  return "invalid";
}

FailureDetector::FailureDetector(absl::string_view own_node, Options options)
    : own_node_(own_node), options_(options) {}

void FailureDetector::Observe(
    absl::Time now, bool interconnect_up,
    const absl::StatusOr<MailboxRecord>& partner_mailbox, bool own_write_ok) {
  if (started_ == absl::InfinitePast()) {
    started_ = now;
  } else {
    now = std::max(now, last_now_);
  }
  last_now_ = now;

  interconnect_up_ = interconnect_up;
  if (interconnect_up) interconnect_up_at_ = now;

  own_write_ok_ = own_write_ok;
  if (own_write_ok) own_write_ok_at_ = now;

  if (partner_mailbox.ok()) {
    const MailboxRecord& record = *partner_mailbox;
    // The first record ever seen is only a baseline: it may be years old.
    // A record appearing where there was none, or any new beat or
    // incarnation, is the partner writing now.
    const bool changed = baseline_ == Baseline::kAbsent ||
                         (baseline_ == Baseline::kRecord &&
                          (record.incarnation() != seen_incarnation_ ||
                           record.beat() != seen_beat_));
    baseline_ = Baseline::kRecord;
    seen_incarnation_ = record.incarnation();
    seen_beat_ = record.beat();
    if (changed) mailbox_changed_ = now;
    partner_record_ = record;
  } else if (absl::IsNotFound(partner_mailbox.status())) {
    // A partner that has never written. A record that later disappears is no
    // sign of life either: keep the baseline (and the last good record, whose
    // fence still holds).
    if (baseline_ == Baseline::kNone) baseline_ = Baseline::kAbsent;
  }
  // Any other error (torn block, I/O error): no information this tick.

  verdict_ = Decide(now);
}

absl::Duration FailureDetector::SilentFor(absl::Time last,
                                          absl::Time now) const {
  return now - std::max(last, started_);
}

PartnerVerdict FailureDetector::Decide(absl::Time now) const {
  if (started_ == absl::InfinitePast()) return PartnerVerdict::kUnknown;
  const absl::Duration detection = options_.detection_time;

  const absl::Duration mailbox_silent = SilentFor(mailbox_changed_, now);
  const bool seen_change = mailbox_changed_ != absl::InfinitePast();
  const bool stopped = partner_shutting_down();
  const bool mailbox_beating =
      seen_change && !stopped && mailbox_silent < detection;

  if (mailbox_beating) {
    return interconnect_up_ ? PartnerVerdict::kAlive
                            : PartnerVerdict::kInterconnectLost;
  }
  // Start-up: an old record (or none) is not yet evidence of anything.
  if (!seen_change && !stopped && mailbox_silent < detection) {
    return PartnerVerdict::kUnknown;
  }
  if (interconnect_up_) return PartnerVerdict::kMailboxLost;

  const absl::Duration interconnect_silent =
      SilentFor(interconnect_up_at_, now);
  if (interconnect_silent >= detection && mailbox_silent >= detection &&
      !self_isolated(now)) {
    return PartnerVerdict::kDead;
  }
  return PartnerVerdict::kMailboxLost;
}

bool FailureDetector::self_isolated(absl::Time now) const {
  if (started_ == absl::InfinitePast()) return false;
  if (own_write_ok_ || interconnect_up_) return false;
  now = std::max(now, last_now_);
  return SilentFor(own_write_ok_at_, now) >= options_.detection_time / 2;
}

std::optional<Fence> FailureDetector::fenced_by_partner() const {
  if (!partner_record_.has_value() || !partner_record_->has_fence()) {
    return std::nullopt;
  }
  const Fence& fence = partner_record_->fence();
  if (fence.fenced_node().empty() || fence.fenced_node() != own_node_) {
    return std::nullopt;
  }
  return fence;
}

}  // namespace appliance::ha
