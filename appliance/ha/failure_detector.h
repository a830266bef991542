// FailureDetector: decides whether the partner is dead from two independent
// links, so that a cut interconnect is not taken for a dead node.
//
//  - the interconnect: the caller passes PartnerChannel::connected() (which
//    already turns false only after several missed interconnect heartbeats);
//  - the partner's mailbox on shared storage: alive while its record keeps
//    changing (beat or incarnation differs from the previous one seen).
//
// Only when both have been silent for at least Options::detection_time is the
// verdict kDead, the one verdict that allows a takeover. The full table is in
// appliance/ha/README.md. The detector also tells this node when it must stop
// serving on its own (self_isolated) and when the partner fences it.
//
// Pure logic: no threads, no clock, no I/O. The caller feeds one observation
// per tick through Observe(); times only need to be consistent with each other
// (use a monotonic clock) and must not go backwards (a smaller `now` is
// treated as the previous one). Not thread-safe; MailboxHeartbeat wraps one.
#ifndef APPLIANCE_HA_FAILURE_DETECTOR_H_
#define APPLIANCE_HA_FAILURE_DETECTOR_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "appliance/ha/ha.pb.h"

namespace appliance::ha {

enum class PartnerVerdict {
  // No observation yet, or start-up: the partner's mailbox has not been seen
  // changing and detection_time has not passed since the first observation.
  // Treat as not dead.
  kUnknown,
  // Interconnect up and the mailbox beating.
  kAlive,
  // Interconnect down, the mailbox beating: the link is cut, the partner
  // lives. No takeover.
  kInterconnectLost,
  // The mailbox is silent (stale, missing, unreadable, or the partner wrote
  // shutting_down) and the interconnect is up or went down less than
  // detection_time ago. No takeover.
  kMailboxLost,
  // Both silent for >= detection_time (and this node is not self-isolated):
  // the partner is dead or stopped; a takeover is allowed.
  kDead,
};
using Verdict = PartnerVerdict;

// "alive", "interconnect-lost", ... for logs and the management API.
absl::string_view PartnerVerdictName(PartnerVerdict verdict);

struct FailureDetectorOptions {
  // How long both links must be silent before the partner is declared dead.
  // This node self-isolates after half of it (see self_isolated()).
  absl::Duration detection_time = absl::Seconds(2);
};

class FailureDetector {
 public:
  using Options = FailureDetectorOptions;

  // own_node: this node's name, matched against Fence::fenced_node.
  explicit FailureDetector(absl::string_view own_node,
                           Options options = Options());

  // One tick.
  //  interconnect_up   the interconnect's current view of the partner.
  //  partner_mailbox   the partner's record as just read: a record, kNotFound
  //                    (the partner never wrote one), or any other error
  //                    (torn block, I/O error, ...: no information this tick).
  //  own_write_ok      this tick's write of this node's own record succeeded.
  // The first call starts the detector (the start-up rule counts from it).
  void Observe(absl::Time now, bool interconnect_up,
               const absl::StatusOr<MailboxRecord>& partner_mailbox,
               bool own_write_ok);

  // The verdict as of the last Observe().
  PartnerVerdict verdict() const { return verdict_; }

  // True when this node's own mailbox writes have failed for at least
  // detection_time / 2 and the interconnect is down (as last observed): the
  // partner may soon declare this node dead, so this node must stop serving
  // before the partner's detection_time runs out. A self-isolated node never
  // sees its partner as kDead (its view of the shared storage is broken).
  bool self_isolated(absl::Time now) const;

  // The fence the partner's last good record holds against this node, if any
  // (fence.fenced_node == own node). A fenced node must not serve.
  std::optional<Fence> fenced_by_partner() const;

  // The partner's last good record (the last one read successfully).
  const std::optional<MailboxRecord>& partner_record() const {
    return partner_record_;
  }
  // The partner's mailbox has been read at least once with a definite answer
  // (a record, or none written yet). Until then fenced_by_partner() cannot
  // know: a starting node should not serve before this is true.
  bool partner_mailbox_seen() const { return baseline_ != Baseline::kNone; }
  // The partner's last good record says shutting_down.
  bool partner_shutting_down() const {
    return partner_record_.has_value() && partner_record_->shutting_down();
  }

  // When the partner's record was last seen to change (absl::InfinitePast()
  // when never: the first record seen is only a baseline, unless the partner
  // had no record before).
  absl::Time partner_mailbox_last_change() const { return mailbox_changed_; }
  // When the interconnect was last observed up (absl::InfinitePast() if never).
  absl::Time interconnect_last_up() const { return interconnect_up_at_; }
  // When this node's own write last succeeded (absl::InfinitePast() if never).
  absl::Time own_write_last_ok() const { return own_write_ok_at_; }
  // The time of the first observation (absl::InfinitePast() before it).
  absl::Time started() const { return started_; }

  const std::string& own_node() const { return own_node_; }
  const Options& options() const { return options_; }

 private:
  // How long a link has been silent at `now`, never counting from before the
  // detector started.
  absl::Duration SilentFor(absl::Time last, absl::Time now) const;
  PartnerVerdict Decide(absl::Time now) const;

  const std::string own_node_;
  const Options options_;

  absl::Time started_ = absl::InfinitePast();
  absl::Time last_now_ = absl::InfinitePast();

  bool interconnect_up_ = false;  // as last observed
  absl::Time interconnect_up_at_ = absl::InfinitePast();

  bool own_write_ok_ = true;  // as last observed
  absl::Time own_write_ok_at_ = absl::InfinitePast();

  // What the partner's mailbox looked like: nothing known yet, no record,
  // or a record (its incarnation and beat).
  enum class Baseline { kNone, kAbsent, kRecord };
  Baseline baseline_ = Baseline::kNone;
  uint64_t seen_incarnation_ = 0;
  uint64_t seen_beat_ = 0;
  absl::Time mailbox_changed_ = absl::InfinitePast();
  std::optional<MailboxRecord> partner_record_;

  PartnerVerdict verdict_ = PartnerVerdict::kUnknown;
};

}  // namespace appliance::ha

#endif  // APPLIANCE_HA_FAILURE_DETECTOR_H_
