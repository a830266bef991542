// The local virtual adapter (seed 002): the requester's end of the proxy path.
// The virtual target module hands it tasks for LUNs the partner owns; it turns
// each into an interconnect Envelope, ships it on one of a few Proxy.Exchange
// streams to the partner's PartnerVirtualAdapter, and completes the task when
// the matching Completion comes back.
//
// It never blocks the caller (the iSCSI event loop): streams use gRPC's
// completion-queue API on the PartnerChannel's queue, whose one polling thread
// also takes the socket's events, so an answer is read, decoded and completed
// on one thread; Forward() only queues. Called inside a common::DeferScope (the
// event loop opens one per round of ready connections), it holds the round's
// envelopes and sends them, per stream, as one message when the round ends.
// Completions run on the polling thread (or the adapter's timer thread), never
// under the adapter's locks.
//
// Flow control: each stream carries at most max_outstanding_requests_per_stream
// commands and max_outstanding_bytes_per_stream bytes (data-out + expected
// data-in); the least loaded stream with room gets the next command; when none
// has room commands wait in a bounded FIFO. Only when that FIFO is full does a
// command complete at once with TASK SET FULL (the host retries); nothing is
// ever dropped.
//
// Failure: when the partner is unreachable (PartnerChannel::connected() false),
// a stream breaks, or a command outlives command_timeout, the command
// completes with CHECK CONDITION, NOT READY, 04/0C (LOGICAL UNIT NOT
// ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE; fixed format) so multipath
// hosts retry on another path. On a timeout the adapter also sends ABORT TASK
// for it to the owner. Nothing hangs.
//
// Task management goes to the owner on a stream of the affected commands, so
// it arrives after them: ABORT TASK on the stream its command went on; a
// function affecting several commands on one stream, plus an ABORT TASK on
// each other stream for its commands in scope. Commands still waiting in the
// FIFO are aborted locally.
#ifndef VADAPTER_LOCAL_VIRTUAL_ADAPTER_H_
#define VADAPTER_LOCAL_VIRTUAL_ADAPTER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "interconnect/partner_channel.h"
#include "interconnect/proxy.grpc.pb.h"
#include "target/virtual_target/module.h"
#include "vadapter/envelope.h"
#include "vadapter/wire.h"
#include "vadapter/write_batcher.h"

namespace vadapter {

class LocalVirtualAdapter final : public virtual_target::Forwarder {
 public:
  struct Options {
    // Exchange streams kept open to the partner (opened on first use).
    int streams = 4;
    // A command goes on the lowest-numbered stream whose outstanding bytes
    // stay within this with it, else on the least loaded stream. Small
    // commands then share one stream and leave in larger batches (every
    // interconnect message costs both nodes thread wake-ups), while large
    // transfers spread over the streams.
    size_t fill_stream_bytes = 256 * 1024;
    // Per-stream flow control. A single command larger than the byte bound
    // still goes, alone on its stream.
    size_t max_outstanding_requests_per_stream = 128;
    size_t max_outstanding_bytes_per_stream = 64u * 1024 * 1024;
    // Commands waiting for room on a stream; beyond it, TASK SET FULL.
    size_t max_queued_requests = 4096;
    // A command (or TMF) not answered within this completes with the
    // unavailable sense (a TMF with kRejected); a command also gets an ABORT
    // TASK to the owner.
    absl::Duration command_timeout = absl::Seconds(30);
    // Largest batch of envelopes in one stream message (a single larger
    // envelope goes alone); must fit the interconnect's message limit.
    size_t max_batch_bytes = 4u * 1024 * 1024;
    EnvelopeLimits limits;
  };

  struct Stats {
    uint64_t forwarded = 0;        // commands accepted by Forward
    uint64_t completed = 0;        // answered by the partner
    uint64_t unavailable = 0;      // completed with 04/0C (unreachable/broken)
    uint64_t timed_out = 0;        // of which by command_timeout
    uint64_t task_set_full = 0;    // FIFO overflow
    uint64_t streams_opened = 0;
    uint64_t batches_sent = 0;     // stream messages (each 1+ envelopes)
    uint64_t malformed_messages = 0;  // unreadable answers (stream ended)
    size_t outstanding = 0;        // on streams now
    size_t queued = 0;             // in the FIFO now
  };

  // link must outlive the adapter.
  static absl::StatusOr<std::unique_ptr<LocalVirtualAdapter>> Create(
      interconnect::PartnerChannel& link, Options options);
  static absl::StatusOr<std::unique_ptr<LocalVirtualAdapter>> Create(
      interconnect::PartnerChannel& link) {
    return Create(link, Options());
  }

  // Completes everything still pending with the unavailable sense, cancels
  // the streams and waits until gRPC has let go of them.
  ~LocalVirtualAdapter() override;

  // virtual_target::Forwarder
  bool PartnerReachable() const override;
  void Forward(std::unique_ptr<scsi::Task> task,
               scsi::TaskCompletion done) override;
  // If the partner is unreachable, every forwarded command has already been
  // completed here (and the owner aborts them when the stream drops): ABORT
  // TASK answers kTaskDoesNotExist, other functions kComplete.
  void ForwardTaskManagement(scsi::TmfRequest request,
                             scsi::TmfCompletion done) override;

  Stats stats() const;

 private:
  class Stream;
  friend class Stream;

  // A command or TMF between Forward*() and its completion.
  struct Pending {
    bool is_tmf = false;
    scsi::TaskCompletion task_done;
    scsi::TmfCompletion tmf_done;
    std::shared_ptr<const scsi::ItNexus> nexus;
    uint64_t lun = 0;
    uint64_t tag = 0;
    uint32_t expected_data_in_length = 0;
    size_t bytes = 0;
    absl::Time deadline;
    Stream* stream = nullptr;  // null while in the FIFO
    interconnect::Envelope envelope;  // while in the FIFO
    std::vector<uint8_t> data_out;    // its payload, while in the FIFO
  };
  using Callbacks = std::vector<absl::AnyInvocable<void() &&>>;

  LocalVirtualAdapter(interconnect::PartnerChannel& link, Options options);

  // All *Locked functions run under mu_ and append user callbacks to run
  // after mu_ is released.
  void DispatchLocked(Callbacks* cb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Stream* PickStreamLocked(size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Stream* AnyStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Stream* OpenStreamLocked(int slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(Stream* s, uint64_t id, Pending& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendAbortTaskLocked(Stream* s, const std::shared_ptr<const scsi::ItNexus>& nexus,
                           uint64_t lun, uint64_t tag)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes id and queues its completion with the unavailable answer (or
  // result for a TMF).
  void FailLocked(uint64_t id, Callbacks* cb, scsi::TmfResult tmf_result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAllLocked(Callbacks* cb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Pending TakeLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a stream write should be held for the end of this thread's
  // DeferScope round (then a flush of every stream is deferred to it).
  bool HoldWritesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushHeldWrites();

  // From Stream reactions.
  void OnCompletions(Stream* s,
                     std::vector<DecodedItem<interconnect::Completion>>* batch);
  void CompleteLocked(Stream* s, DecodedItem<interconnect::Completion>* c,
                      Callbacks* cb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStreamBroken(Stream* s);
  void OnStreamDone(Stream* s);

  void OnLinkChange(bool connected);
  void TimerLoop();

  interconnect::PartnerChannel& link_;
  const Options options_;
  // Exchange is called as a raw method: its messages are vadapter/wire.h's.
  const std::unique_ptr<grpc::GenericStub> stub_;
  int listener_id_ = 0;

  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_deferred_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> fifo_ ABSL_GUARDED_BY(mu_);  // may hold stale ids
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;           // live ids in fifo_
  std::set<std::pair<absl::Time, uint64_t>> deadlines_ ABSL_GUARDED_BY(mu_);
  // Stream slots (null or broken: reopened on demand) and every stream gRPC
  // still holds (until OnDone).
  std::vector<Stream*> slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Stream*> live_streams_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  absl::Notification stop_timer_;
  std::thread timer_;
};

}  // namespace vadapter

#endif  // VADAPTER_LOCAL_VIRTUAL_ADAPTER_H_
