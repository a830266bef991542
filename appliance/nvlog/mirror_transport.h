// MirrorTransport: how an Nvlog reaches its partner's NvlogReplica.
//
// The production implementation is GrpcMirrorTransport (NvlogMirror over the
// interconnect); tests use an in-process fake with controllable delays and
// failures. A transport carries one session at a time for the Nvlog: Open()
// resynchronises the partner and starts a stream; batches then go out with
// Session::Send and each is answered by one ack, in order.
#ifndef APPLIANCE_NVLOG_MIRROR_TRANSPORT_H_
#define APPLIANCE_NVLOG_MIRROR_TRANSPORT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interconnect/nvlog.pb.h"

namespace nvlog {

// One batch for the partner: the message with every record's data left out,
// and record i's data in data[i], shared with the log rather than copied (the
// log never changes it; the transport may keep it until the bytes are sent).
struct OutgoingBatch {
  interconnect::NvlogBatch batch;
  std::vector<std::shared_ptr<const std::string>> data;

  // The whole message, data copied in (in-process transports).
  interconnect::NvlogBatch Materialize() const;
};

class MirrorTransport {
 public:
  // What the partner sends back on a session. Both run on a transport thread,
  // never while the transport holds a lock the Nvlog could wait for. on_ack
  // runs once per batch, in order; on_closed runs exactly once, last, when
  // the session ends for any reason (Close, link failure, protocol error).
  struct SessionCallbacks {
    std::function<void(const interconnect::NvlogAck&)> on_ack;
    std::function<void(const absl::Status&)> on_closed;
  };

  class Session {
   public:
    // Ends the session (on_closed follows, if it has not run yet) and waits
    // until no callback of the session is running or will run.
    virtual ~Session() = default;
    // Queues a batch; never blocks. Ignored once the session is closing.
    virtual void Send(OutgoingBatch batch) = 0;
    // Starts closing the session; on_closed follows (possibly before Close
    // returns, on the calling thread).
    virtual void Close() = 0;
  };

  virtual ~MirrorTransport() = default;

  // Cheap view of the link to the partner (PartnerChannel::connected() in
  // production): while false, the Nvlog does not try to Open.
  virtual bool LinkUp() const = 0;

  // Resynchronises the partner with request and opens a stream. Blocks (up
  // to the transport's own timeout); kUnavailable when the partner cannot be
  // reached, other codes when it refused the request.
  virtual absl::StatusOr<std::unique_ptr<Session>> Open(
      const interconnect::NvlogResyncRequest& request,
      SessionCallbacks callbacks) = 0;
};

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_MIRROR_TRANSPORT_H_
