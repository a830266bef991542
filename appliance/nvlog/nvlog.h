// Nvlog: the owner's write journal, mirrored into the partner's memory
// (ARCHITECTURE.md §2 "Mirrored write").
//
// For every write to a LUN it owns, the node calls Append() before (or while)
// writing its BlockStore. The entry gets the next sequence number, stays in
// memory, and is sent to the partner's NvlogReplica through a MirrorTransport.
// The Append callback runs once the partner holds the entry *and* the owner's
// commit mark for it (two pipelined round trips: data, then commit), which is
// the point where the write may be acknowledged to the host: if this node dies
// afterwards, the partner replays it; if it dies before, the partner holds the
// entry uncommitted and drops it at takeover (the host resends).
//
// Group commit: at most Options::max_batches_in_flight batches are on the
// wire; entries appended meanwhile, and commit and retire marks, gather into
// the next batch, so many concurrent writes share one round trip.
//
// The partner's memory is bounded: entries stay until retired (Retire(seq)
// after the data is on stable storage) and are freed in sequence order, here
// and (through retire marks) on the partner, which is sent at most
// Options::max_bytes of unretired entries (the mirror window). Entries
// appended beyond it wait in the log, unsent, until retirement makes room;
// their writes wait for the mirror like any other. Append never blocks: its
// callers are event loops (the iSCSI loop, the interconnect's polling thread),
// and a full window must slow writes down, not stall every other command (or
// the interconnect's keepalives) behind a flush. What the log holds beyond
// the window is bounded by what the hosts have outstanding.
//
// Link failure: when the session breaks (stream error, ack_timeout, partner
// unreachable), the log turns unmirrored: waiting appends and every new one
// complete at once with AppendResult::mirrored == false, mirrored() is false
// (a takeover would lose data), and unmirrored_writes() counts them. The
// caller must then make such a write durable (FUA) before acknowledging the
// host. When the link returns the log opens a new session, resynchronises
// the partner (resends every entry not yet retired) and reports mirrored()
// again only once the partner holds all of them, commit marks included.
// Appends made while resynchronising wait for the mirror like normal ones.
//
// Thread-safe. Callbacks run on the transport's threads (or inside Append for
// an unmirrored completion), never under the log's lock. Batches leave one
// thread at a time from the transport thread whose ack made room (the commit
// marks it made due, entries appended meanwhile), so the second round trip of
// a write costs no hand-off between threads, or else from the log's worker
// (a write that finds the link idle). Sending from the appending thread was
// tried and measured no better: it puts the encryption on the iSCSI loop.
#ifndef APPLIANCE_NVLOG_NVLOG_H_
#define APPLIANCE_NVLOG_NVLOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "appliance/nvlog/mirror_transport.h"
#include "appliance/nvlog/nvlog_entry.h"

namespace nvlog {

struct AppendResult {
  uint64_t sequence = 0;
  // true: the partner holds the entry and its commit (a takeover replays it).
  // false: completed while unmirrored; only this node has it.
  bool mirrored = false;
};

// Runs exactly once: with a result, or kUnavailable when the log shuts down
// before the entry was mirrored (the write must then not be acknowledged).
using AppendCallback =
    absl::AnyInvocable<void(absl::StatusOr<AppendResult>) &&>;

class Nvlog {
 public:
  struct Options {
    // This node's name (sent to the partner with each resync).
    std::string node_name;
    // Data bytes of unretired entries the partner may hold (the mirror
    // window, counted from the oldest unretired one); entries beyond wait,
    // unsent. The partner's NvlogReplica::Options::max_bytes must be at least
    // this. A single entry larger than this is refused.
    size_t max_bytes = 64u * 1024 * 1024;
    // Most entries / data bytes in one batch (a single larger entry still
    // goes, alone). Keep max_batch_bytes well under the interconnect's
    // message limit (16 MiB + 64 KiB).
    size_t max_batch_entries = 256;
    size_t max_batch_bytes = 4u * 1024 * 1024;
    // Batches sent and not yet acknowledged. 1 maximises batching; 2 lets the
    // commit marks of one batch travel while the next carries data.
    int max_batches_in_flight = 2;
    // A batch unacknowledged for this long breaks the session (unmirrored
    // until a new one is synchronised).
    absl::Duration ack_timeout = absl::Seconds(2);
    // Pause between attempts to open a session while the link is down or the
    // partner refuses.
    absl::Duration reconnect_interval = absl::Milliseconds(200);
    // Shape limits of one entry.
    EntryLimits limits;
    // First session number; 0: the current time in Unix microseconds (so it
    // grows across restarts, as the partner requires).
    uint64_t first_session = 0;
  };

  struct Stats {
    uint64_t appends = 0;
    uint64_t mirrored_appends = 0;    // completed with mirrored == true
    uint64_t unmirrored_appends = 0;  // completed with mirrored == false
    uint64_t append_waits = 0;        // appends that found the window full
    uint64_t retired = 0;
    uint64_t batches_sent = 0;        // round trips
    uint64_t entries_sent = 0;        // including resends
    uint64_t sessions_opened = 0;
    uint64_t sessions_lost = 0;
    uint64_t resyncs_completed = 0;   // sessions that reached mirrored()
    size_t entries = 0;               // held now (unretired prefix and after)
    size_t bytes = 0;                 // data bytes held now
    uint64_t next_sequence = 0;
    uint64_t committed_through = 0;
    uint64_t retired_through = 0;
  };

  // transport must outlive the log. Starts the log's worker thread, which
  // opens a session as soon as transport.LinkUp().
  static absl::StatusOr<std::unique_ptr<Nvlog>> Create(
      MirrorTransport& transport, Options options);

  // Closes the session and completes appends still waiting for the mirror
  // with kUnavailable.
  ~Nvlog();

  Nvlog(const Nvlog&) = delete;
  Nvlog& operator=(const Nvlog&) = delete;

  // Logs a write of block_count blocks at lba of lun (data: whole blocks of
  // 512 or 4096 bytes) and returns its sequence number; never blocks (a full
  // window delays done). done runs as described above (possibly before Append returns,
  // when unmirrored). kInvalidArgument for a malformed write or one larger
  // than max_bytes (done is not called); kUnavailable when shutting down.
  absl::StatusOr<uint64_t> Append(uint64_t lun, uint64_t lba,
                                  uint32_t block_count,
                                  absl::Span<const uint8_t> data,
                                  AppendCallback done, bool fua = false);

  // The entry's data is on stable storage (BlockStore write + flush done):
  // it may be forgotten here and, once every earlier one is retired too, on
  // the partner. kNotFound for an unknown or already retired sequence.
  absl::Status Retire(uint64_t sequence);

  // Whether a takeover by the partner would lose nothing: a session is up
  // and the partner holds every entry this node acknowledged.
  bool mirrored() const;
  // Appends completed unmirrored since creation.
  uint64_t unmirrored_writes() const;
  Stats stats() const;
  // The entries held now, in sequence order, with their states.
  std::vector<NvlogEntry> Entries() const;

  // Blocks until mirrored() == want or timeout passes; returns whether it got
  // there (start-up code and tests).
  bool WaitUntilMirrored(bool want, absl::Duration timeout) const;

 private:
  enum class Mode { kUnmirrored, kResyncing, kMirrored };
  using Completions =
      std::vector<std::pair<AppendCallback, absl::StatusOr<AppendResult>>>;

  Nvlog(MirrorTransport& transport, Options options);
  void WorkerLoop();
  // Worker steps; each returns with mu_ held.
  void OpenSessionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends batches of session while there is something to send and room in
  // flight (mu_ released around each send). One thread at a time: a thread
  // that finds another sending returns, so batches leave in the order built.
  void SendBatchesLocked(uint64_t session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CanSendLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether held entry sequence (not yet sent) fits the mirror window.
  bool FitsWindowLocked(uint64_t sequence) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  OutgoingBatch BuildBatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void OnAck(uint64_t session, const interconnect::NvlogAck& ack);
  void OnClosed(uint64_t session, const absl::Status& status);
  // Ends the current session: unmirrored, waiting appends complete.
  void BreakSessionLocked(Completions* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Run(Completions& completions);

  MirrorTransport& transport_;
  const Options options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // An entry of the log. Its data is kept apart (entry.data stays empty) and
  // shared with the batches that carry it, so sending copies nothing.
  struct Logged {
    NvlogEntry entry;
    std::shared_ptr<const std::string> data;
  };
  // The log: entries retired_through_+1 .. next_seq_-1, in order.
  std::deque<Logged> log_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t retired_through_ ABSL_GUARDED_BY(mu_) = 0;
  // Every entry <= commit_through_ is committed (promised to the host).
  uint64_t commit_through_ ABSL_GUARDED_BY(mu_) = 0;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Appends waiting for the partner's commit ack, by sequence.
  std::map<uint64_t, AppendCallback> waiting_ ABSL_GUARDED_BY(mu_);
  // Highest sequence completed unmirrored: mirrored() needs the partner to
  // hold it committed.
  uint64_t unmirrored_through_ ABSL_GUARDED_BY(mu_) = 0;

  // The session (current_session_ != 0 from the resync request on, even
  // while Open runs and session_ is still null).
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kUnmirrored;
  uint64_t next_session_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t current_session_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<MirrorTransport::Session> session_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // Close() requested
  bool sending_ ABSL_GUARDED_BY(mu_) = false;  // SendBatchesLocked runs
  uint64_t send_next_ ABSL_GUARDED_BY(mu_) = 1;
  // Data bytes of the held entries below send_next_: what the partner holds
  // once it has the latest retire mark.
  size_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_commit_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_retire_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_held_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<absl::Time> in_flight_ ABSL_GUARDED_BY(mu_);  // send times
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Sessions ended by the transport, destroyed by the worker.
  std::vector<std::unique_ptr<MirrorTransport::Session>> dead_
      ABSL_GUARDED_BY(mu_);

  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_NVLOG_H_
