// The partner virtual adapter (seed 002): the owner's end of the proxy path.
// It serves interconnect.Proxy: every Envelope the partner's local virtual
// adapter sends is validated field by field, rebuilt into a scsi::Task (or
// TmfRequest) on a shared ItNexus, and submitted to the owner's TaskRouter
// (its SCSI engine) as if it had arrived locally; each completion streams back
// on the stream it came from, from whatever thread the engine completes on.
//
// It is served through gRPC's completion-queue API (interconnect::
// PolledService): the interconnect server's polling thread takes the socket
// event, handles each stream message, runs the engine's inline completions
// and starts the answer's write, with no hand-off between threads on the way.
// Exchange is a raw method: its messages are read and written by
// vadapter/wire.h, so a command's data-out lands in the task's buffer and a
// read's data-in leaves from it without protobuf copies. A stream message that
// cannot be parsed ends the stream (INVALID_ARGUMENT; its commands aborted).
//
// A malformed envelope is answered (CHECK CONDITION, ILLEGAL REQUEST, INVALID
// FIELD IN CDB; or a kRejected TMF result), never fatal. When a stream ends
// (the requester crashed, the link dropped, or it closed), every task still
// outstanding from that stream is aborted on the engine with ABORT TASK for its
// (nexus, tag): nothing keeps running for a requester that can no longer hear
// the answer. (The requester's iSCSI sessions own the nexuses; it sends I_T
// NEXUS LOSS itself when one ends.)
#ifndef VADAPTER_PARTNER_VIRTUAL_ADAPTER_H_
#define VADAPTER_PARTNER_VIRTUAL_ADAPTER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "interconnect/proxy.grpc.pb.h"
#include "interconnect/server.h"
#include "target/scsi/task.h"
#include "vadapter/envelope.h"

namespace vadapter {

class PartnerVirtualAdapter final
    : public interconnect::Proxy::WithRawMethod_Exchange<interconnect::Proxy::Service>,
                                    public interconnect::PolledService {
 public:
  struct Options {
    EnvelopeLimits limits;
    // Commands one stream may have running on the engine; beyond it a command
    // is answered TASK SET FULL (the requester's own flow control keeps well
    // below this; it guards against a runaway peer).
    size_t max_outstanding_per_stream = 4096;
    // Nexuses remembered (so every task of one nexus shares one ItNexus
    // object) before idle ones are forgotten; I_T NEXUS LOSS forgets one.
    size_t max_nexuses = 4096;
    // Largest batch of completions in one stream message (a single larger
    // completion goes alone); must fit the interconnect's message limit.
    size_t max_batch_bytes = 4u * 1024 * 1024;
  };

  struct Stats {
    uint64_t envelopes = 0;         // received
    uint64_t batches = 0;           // stream messages received
    uint64_t rejected = 0;          // answered as malformed
    uint64_t streams_opened = 0;
    uint64_t aborted_on_stream_end = 0;  // ABORT TASKs issued for dead streams
    uint64_t malformed_messages = 0;     // unreadable stream messages (stream ended)
  };

  // router (the owner's engine, usually) must outlive the adapter and the
  // server hosting it; the adapter must outlive that server.
  PartnerVirtualAdapter(scsi::TaskRouter& router, Options options);
  explicit PartnerVirtualAdapter(scsi::TaskRouter& router)
      : PartnerVirtualAdapter(router, Options()) {}
  // interconnect::PolledService (called by InterconnectServer).
  void StartServing(grpc::ServerCompletionQueue* cq) override;
  void StopServing() override;

  Stats stats() const;
  // Streams currently open.
  int open_streams() const { return open_streams_.load(); }

 private:
  class Stream;
  friend class Stream;

  // Requests the next Exchange call (one is always waiting to be accepted).
  void AcceptNext();
  // Runs start (which starts an operation on cq_) unless the server has shut
  // down (StopServing); false then.
  bool Post(absl::FunctionRef<void()> start) { return gate_.Post(start); }
  std::shared_ptr<const scsi::ItNexus> Intern(scsi::ItNexus nexus);
  void ForgetNexus(const scsi::ItNexus& nexus);

  scsi::TaskRouter& router_;
  const Options options_;
  const NexusInterner interner_;
  grpc::ServerCompletionQueue* cq_ = nullptr;
  interconnect::QueueGate gate_;

  std::atomic<uint64_t> envelopes_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> streams_opened_{0};
  std::atomic<uint64_t> aborted_on_stream_end_{0};
  std::atomic<uint64_t> malformed_messages_{0};
  std::atomic<int> open_streams_{0};

  absl::Mutex nexus_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const scsi::ItNexus>>
      nexuses_ ABSL_GUARDED_BY(nexus_mu_);
  size_t nexus_sweep_at_ ABSL_GUARDED_BY(nexus_mu_);
};

}  // namespace vadapter

#endif  // VADAPTER_PARTNER_VIRTUAL_ADAPTER_H_
