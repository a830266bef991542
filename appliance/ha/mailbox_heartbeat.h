// MailboxHeartbeat: keeps this node's mailbox record beating and watches the
// partner's, feeding a FailureDetector (see failure_detector.h and README.md).
//
// Every Options::interval it writes this node's record (beat + 1, the state
// from the state function, the fence set with SetFence) and reads the
// partner's; on the same period it feeds the detector with the latest read,
// the interconnect's view and whether this node's writes are getting through.
// Listeners hear about every change of verdict(), self_isolated() and
// fenced_by_partner().
//
// Two threads: one does the storage I/O, the other observes and notifies.
// Shared storage can hang rather than fail; a write that hangs must still make
// this node self-isolate before the partner's detection time runs out, so the
// observing thread never waits for the I/O (a write that has not completed
// within Options::write_timeout counts as failed).
//
// Restart: Create() reads this node's own last record and continues from it:
// the beat goes on, the incarnation is new (larger than the old one), and a
// fence this node held against its partner is held again (a survivor that
// restarts in takeover keeps its partner fenced until an explicit giveback
// calls SetFence(std::nullopt)).
//
// Typical use (the daemon):
//   auto mailbox = Mailbox::Open(shared_dir, "node-a", "node-b");
//   auto hb = MailboxHeartbeat::Create(std::move(*mailbox), state_fn,
//       [&] { return channel.connected(); }, options);
//   (*hb)->AddListener([&] { controller.Reevaluate(); });
//   (*hb)->Start();
//   ...
//   (*hb)->Stop();  // last record says shutting_down
//
// Thread-safe, except that Tick() is for a heartbeat that was not started.
#ifndef APPLIANCE_HA_MAILBOX_HEARTBEAT_H_
#define APPLIANCE_HA_MAILBOX_HEARTBEAT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/ha/failure_detector.h"
#include "appliance/ha/ha.pb.h"
#include "appliance/ha/mailbox.h"

namespace appliance::ha {

struct MailboxHeartbeatOptions {
  // Period of the mailbox writes, reads and observations.
  absl::Duration interval = absl::Milliseconds(100);
  // No successful write for longer than this (a write that fails or hangs,
  // or an I/O thread stuck in a read) counts as a failed write. Zero:
  // 2 * interval.
  absl::Duration write_timeout = absl::ZeroDuration();
  // A node whose writes stop must notice it (write_timeout), wait
  // detection_time / 2 and act on the next observation (interval), all
  // before its partner has waited detection_time (plus one interval for the
  // partner's read): Create() requires
  //   write_timeout + 2 * interval <= detection_time / 2
  // (with the default write_timeout: interval <= detection_time / 8).
  // detection_time: see FailureDetectorOptions.
  FailureDetectorOptions detector;
  // The detector's clock; it must not jump (the default is the monotonic
  // clock, expressed as an absl::Time). Tests inject a fake one with Tick().
  std::function<absl::Time()> now;
  // Wall clock for MailboxRecord::incarnation and written_unix_micros.
  // Default absl::Now.
  std::function<absl::Time()> wall_now;
};

class MailboxHeartbeat {
 public:
  using Options = MailboxHeartbeatOptions;

  // state: this node's HaState, read for every write (called without locks,
  // from the I/O thread). interconnect_up: the interconnect's view of the
  // partner (PartnerChannel::connected()), read for every observation; it
  // must be cheap. Reads the own mailbox's last record (see the file comment);
  // does not start the threads. kInvalidArgument for null functions or bad
  // timing options.
  static absl::StatusOr<std::unique_ptr<MailboxHeartbeat>> Create(
      std::unique_ptr<Mailbox> mailbox, std::function<HaState()> state,
      std::function<bool()> interconnect_up, Options options = Options());

  // Stop()s.
  ~MailboxHeartbeat();
  MailboxHeartbeat(const MailboxHeartbeat&) = delete;
  MailboxHeartbeat& operator=(const MailboxHeartbeat&) = delete;

  // Starts the threads (once; later calls do nothing).
  void Start();

  // Stops the threads, then writes a last record with shutting_down = true
  // (unless writes are stopped). Idempotent. Blocks while a storage call
  // hangs (a syscall cannot be cancelled).
  void Stop();

  // One round on the caller's thread: write, read, observe, notify. For a
  // heartbeat that was not Start()ed (tests with a fake clock); does nothing
  // once started or stopped.
  void Tick();

  // Calls listener() from the observing thread (or Tick's caller), with no
  // lock held, after every change of verdict(), self_isolated() or
  // fenced_by_partner(). The accessors then already return the new values.
  // A listener must not call Stop() or AddListener(). Add listeners before
  // Start() to see every change.
  void AddListener(std::function<void()> listener);

  // The fence written in this node's record from the next write on
  // (std::nullopt clears it: giveback). Set fence.fenced_node to the partner.
  void SetFence(std::optional<Fence> fence);
  std::optional<Fence> fence() const;

  // Fault injection ("stop this node's mailbox writes"): no writes happen and
  // observations report the own write as failed. Returns once a write that
  // was under way has finished (so none lands afterwards; blocks while that
  // write hangs).
  void SetWritesStopped(bool stopped);
  bool writes_stopped() const;

  // The detector's outputs as of the last observation.
  PartnerVerdict verdict() const;
  bool self_isolated() const;
  std::optional<Fence> fenced_by_partner() const;
  // The partner's last good record.
  std::optional<MailboxRecord> partner_record() const;
  // See FailureDetector::partner_mailbox_seen().
  bool partner_mailbox_seen() const;
  absl::Time partner_mailbox_last_change() const;
  absl::Time interconnect_last_up() const;

  // Records written successfully by this process.
  uint64_t beats_written() const;
  uint64_t incarnation() const { return incarnation_; }
  // This node's record found at Create() (before a restart), if one was read.
  const std::optional<MailboxRecord>& restored_record() const {
    return restored_record_;
  }
  // Why no record was restored: OK (restored or none written yet: kNotFound
  // is reported as OK) or the read's error (e.g. kDataLoss: a torn block; a
  // fence this node held before is then unknown).
  const absl::Status& restore_status() const { return restore_status_; }

  const Mailbox& mailbox() const { return *mailbox_; }
  const Options& options() const { return options_; }

 private:
  MailboxHeartbeat(std::unique_ptr<Mailbox> mailbox,
                   std::function<HaState()> state,
                   std::function<bool()> interconnect_up, Options options);

  // Writes this node's record (unless stopped) and reads the partner's.
  void IoRound();
  // Feeds the detector and notifies listeners of changes.
  void ObserveRound();
  void IoLoop();
  void ObserveLoop();
  // Builds and writes the next record unless writes are stopped; returns
  // the write's status (kFailedPrecondition when stopped).
  absl::Status WriteRecord(bool shutting_down);
  bool WaitForStop(absl::Time deadline);

  const std::unique_ptr<Mailbox> mailbox_;
  const std::function<HaState()> state_;
  const std::function<bool()> interconnect_up_;
  const Options options_;
  uint64_t incarnation_ = 0;
  std::optional<MailboxRecord> restored_record_;
  absl::Status restore_status_;

  // Held across each mailbox write; taken before mu_.
  absl::Mutex write_mu_;
  // State, fence and shutting_down of the last record written durably.
  std::string last_durable_part_ ABSL_GUARDED_BY(write_mu_);
  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool ticked_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> listeners_ ABSL_GUARDED_BY(mu_);

  // What gets written.
  uint64_t beat_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<Fence> fence_ ABSL_GUARDED_BY(mu_);
  bool writes_stopped_ ABSL_GUARDED_BY(mu_) = false;

  // The I/O thread's results.
  uint64_t beats_written_ ABSL_GUARDED_BY(mu_) = 0;
  bool last_write_ok_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time last_write_ok_at_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<MailboxRecord> partner_read_ ABSL_GUARDED_BY(mu_);

  // The observer's state.
  FailureDetector detector_ ABSL_GUARDED_BY(mu_);
  PartnerVerdict verdict_ ABSL_GUARDED_BY(mu_) = PartnerVerdict::kUnknown;
  bool self_isolated_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Fence> fenced_by_partner_ ABSL_GUARDED_BY(mu_);

  std::thread io_thread_;
  std::thread observe_thread_;
};

}  // namespace appliance::ha

#endif  // APPLIANCE_HA_MAILBOX_HEARTBEAT_H_
