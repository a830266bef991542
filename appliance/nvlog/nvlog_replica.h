// NvlogReplica: the partner's copy of an owner's NVLOG, and the NvlogMirror
// gRPC service that fills it (see interconnect/nvlog.proto for the protocol).
//
// It holds the owner's entries in memory with their committed and retired
// states. Everything a peer sends is validated before anything changes: a
// malformed batch (bad sizes, unknown flags, a sequence gap, a conflicting
// duplicate, a stale session, a commit or retire mark going backwards, too
// much data) ends that stream with an error and leaves the replica as it was;
// the service keeps serving. Identical duplicates (resends) are accepted.
//
// For takeover, after Freeze() (no more changes from the old owner):
// CheckConsistency() tells whether the log can be trusted (no gap, resync
// complete), CommittedUnretired() lists what Replay() must write, in
// sequence order.
#ifndef APPLIANCE_NVLOG_NVLOG_REPLICA_H_
#define APPLIANCE_NVLOG_NVLOG_REPLICA_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/nvlog/nvlog_entry.h"
#include "interconnect/nvlog.grpc.pb.h"
#include "interconnect/server.h"

namespace nvlog {

// Served on the interconnect server's polling thread (PolledService).
class NvlogReplica final : public interconnect::NvlogMirror::AsyncService,
                           public interconnect::PolledService {
 public:
  struct Options {
    // Shape limits of one entry.
    EntryLimits limits;
    // Data bytes held; a batch that would exceed it is refused
    // (RESOURCE_EXHAUSTED). Must be at least the owner's Nvlog max_bytes.
    size_t max_bytes = 256u * 1024 * 1024;
    // Records held, and records in one batch.
    size_t max_records = 1u << 20;
    size_t max_batch_records = 4096;
    // How far a retire mark may run ahead of the records held (the owner can
    // retire entries it has not sent yet).
    uint64_t max_retire_ahead = uint64_t{1} << 24;
  };

  struct Stats {
    uint64_t resyncs = 0;
    uint64_t batches = 0;           // applied
    uint64_t records = 0;           // received in applied batches
    uint64_t rejected = 0;          // batches or resyncs refused
    uint64_t streams_opened = 0;
  };

  NvlogReplica();
  explicit NvlogReplica(Options options);

  // --- The protocol, without gRPC (the service below and in-process
  // transports call these). ---

  // Starts a new owner session: drops everything held, expects records from
  // request.first_sequence on. kFailedPrecondition for a session that is not
  // newer than the current one or when frozen; kInvalidArgument for
  // inconsistent fields.
  absl::StatusOr<interconnect::NvlogSnapshot> ApplyResync(
      const interconnect::NvlogResyncRequest& request);
  // Validates the whole batch, then applies it and returns the ack. The
  // records' data is moved into the replica, not copied.
  absl::StatusOr<interconnect::NvlogAck> ApplyBatch(
      interconnect::NvlogBatch batch);

  // --- State and takeover ---

  interconnect::NvlogSnapshot Snapshot() const;
  // Every entry held, in sequence order, with its states.
  std::vector<NvlogEntry> Held() const;
  // The committed entries not retired, in sequence order (what a takeover
  // replays).
  std::vector<NvlogEntry> CommittedUnretired() const;
  // OK when the log can be replayed: a session was synchronised, no sequence
  // is missing among the held entries and the resync completed (the partner
  // holds every entry the owner had when the session began).
  // kFailedPrecondition with the reason otherwise.
  absl::Status CheckConsistency() const;
  // Refuses every later resync and batch (takeover: the old owner is fenced).
  void Freeze();
  // Accepts resyncs again (giveback: the old owner is back and mirrors anew;
  // its next session must still be newer than the last one seen).
  void Thaw();
  bool frozen() const;
  // Forgets everything (after a takeover replayed it, or at giveback).
  void Clear();

  Stats stats() const;
  int open_streams() const { return open_streams_.load(); }

  // --- interconnect::PolledService ---
  void StartServing(grpc::ServerCompletionQueue* cq) override;
  void StopServing() override;

 private:
  class Stream;

  interconnect::NvlogAck AckLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  interconnect::NvlogSnapshot SnapshotLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t MissingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CommittedLocked(const NvlogEntry& e) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  bool frozen_ ABSL_GUARDED_BY(mu_) = false;
  std::string owner_node_ ABSL_GUARDED_BY(mu_);
  uint64_t session_ ABSL_GUARDED_BY(mu_) = 0;  // 0: never synchronised
  uint64_t resync_through_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t retired_through_ ABSL_GUARDED_BY(mu_) = 0;
  // Every record <= held_through_ is held or retired.
  uint64_t held_through_ ABSL_GUARDED_BY(mu_) = 0;
  // The owner's commit mark (records <= it are committed once held).
  uint64_t commit_mark_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, NvlogEntry> entries_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> open_streams_{0};
  grpc::ServerCompletionQueue* cq_ = nullptr;
  interconnect::QueueGate gate_;
};

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_NVLOG_REPLICA_H_
