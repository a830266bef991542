// GrpcMirrorTransport: the production MirrorTransport, NvlogMirror over the
// interconnect's gRPC channel to the partner (mTLS, keepalives: see
// interconnect/partner_channel.h).
//
// Open() calls Resync (unary, with Options::resync_timeout) and then starts a
// Mirror stream on a completion queue (gRPC's async API; the PartnerChannel's
// queue in the daemon, whose one thread polls every client call to the
// partner); Send() encodes and queues (writes go one at a time, in order). The session ends when the stream fails (partner
// died, link cut, keepalive expired, the partner refused a batch) or Close()
// cancels it.
#ifndef APPLIANCE_NVLOG_GRPC_MIRROR_TRANSPORT_H_
#define APPLIANCE_NVLOG_GRPC_MIRROR_TRANSPORT_H_

#include <functional>
#include <memory>

#include "absl/time/time.h"
#include "appliance/nvlog/mirror_transport.h"
#include "grpcpp/channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "interconnect/nvlog.grpc.pb.h"
#include "interconnect/server.h"

namespace nvlog {

// The Mirror stream message of a batch: the protobuf encoding of the whole
// NvlogBatch (any protobuf peer reads it), with each record's data handed to
// gRPC as a slice that shares it instead of copying it into the message.
grpc::ByteBuffer EncodeMirrorBatch(const OutgoingBatch& batch);

class GrpcMirrorTransport final : public MirrorTransport {
 public:
  struct Options {
    // Deadline of the Resync call that starts a session.
    absl::Duration resync_timeout = absl::Seconds(2);
    // The link view (PartnerChannel::connected in the daemon); must be cheap
    // and thread-safe. Empty: always up (Open then fails fast while the
    // partner is unreachable).
    std::function<bool()> link_up;
    // Where Mirror streams run (PartnerChannel::completion_queue(); must
    // outlive the transport). Null: a queue and thread of the transport's own.
    grpc::CompletionQueue* cq = nullptr;
  };

  // channel: to the partner's interconnect server (which hosts an
  // NvlogReplica). The transport must outlive every session it opened.
  GrpcMirrorTransport(std::shared_ptr<grpc::Channel> channel, Options options);
  explicit GrpcMirrorTransport(std::shared_ptr<grpc::Channel> channel)
      : GrpcMirrorTransport(std::move(channel), Options()) {}

  bool LinkUp() const override;
  absl::StatusOr<std::unique_ptr<Session>> Open(
      const interconnect::NvlogResyncRequest& request,
      SessionCallbacks callbacks) override;

 private:
  class GrpcSession;

  const Options options_;
  const std::unique_ptr<interconnect::NvlogMirror::StubInterface> stub_;
  const std::unique_ptr<grpc::GenericStub> generic_stub_;
  // Declared last: destroyed first, once no session is left.
  std::unique_ptr<interconnect::NodeQueue> own_queue_;
  grpc::CompletionQueue* cq_;
};

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_GRPC_MIRROR_TRANSPORT_H_
