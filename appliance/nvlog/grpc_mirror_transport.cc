#include "appliance/nvlog/grpc_mirror_transport.h"

#include <chrono>
#include <deque>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace nvlog {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

}  // namespace

// One Mirror call. A hold keeps gRPC from finishing the call until the read
// side has ended; Send() after that is ignored, so a write never races OnDone.
class GrpcMirrorTransport::GrpcSession final
    : public MirrorTransport::Session,
      public grpc::ClientBidiReactor<interconnect::NvlogBatch,
                                     interconnect::NvlogAck> {
 public:
  explicit GrpcSession(SessionCallbacks callbacks)
      : callbacks_(std::move(callbacks)) {}

  void Begin(interconnect::NvlogMirror::StubInterface& stub) {
    stub.async()->Mirror(&context_, this);
    AddHold();
    StartRead(&ack_);
    StartCall();
  }

  ~GrpcSession() override {
    Close();
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  void Send(interconnect::NvlogBatch batch) override {
    absl::MutexLock l(&mu_);
    if (read_ended_ || cancelled_) return;
    writes_.push_back(std::move(batch));
    if (!writing_) {
      writing_ = true;
      StartWrite(&writes_.front());
    }
  }

  void Close() override {
    {
      absl::MutexLock l(&mu_);
      if (cancelled_ || done_) return;
      cancelled_ = true;
    }
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock l(&mu_);
        read_ended_ = true;
      }
      RemoveHold();
      return;
    }
    callbacks_.on_ack(ack_);
    ack_.Clear();
    StartRead(&ack_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writes_.pop_front();
    if (!ok) writes_.clear();  // the call is over; the read side reports it
    if (!writes_.empty() && !read_ended_) {
      StartWrite(&writes_.front());
    } else {
      writes_.clear();
      writing_ = false;
    }
  }

  void OnDone(const grpc::Status& status) override {
    callbacks_.on_closed(status.ok()
                             ? absl::UnavailableError("NVLOG mirror stream ended")
                             : FromGrpc(status));
    absl::MutexLock l(&mu_);
    done_ = true;
  }

 private:
  const SessionCallbacks callbacks_;
  grpc::ClientContext context_;
  interconnect::NvlogAck ack_;
  absl::Mutex mu_;
  std::deque<interconnect::NvlogBatch> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

GrpcMirrorTransport::GrpcMirrorTransport(std::shared_ptr<grpc::Channel> channel,
                                         Options options)
    : options_(std::move(options)),
      stub_(interconnect::NvlogMirror::NewStub(std::move(channel))) {}

bool GrpcMirrorTransport::LinkUp() const {
  return options_.link_up ? options_.link_up() : true;
}

absl::StatusOr<std::unique_ptr<MirrorTransport::Session>>
GrpcMirrorTransport::Open(const interconnect::NvlogResyncRequest& request,
                          SessionCallbacks callbacks) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.resync_timeout));
  interconnect::NvlogSnapshot snapshot;
  grpc::Status s = stub_->Resync(&context, request, &snapshot);
  if (!s.ok()) return FromGrpc(s);
  auto session = std::make_unique<GrpcSession>(std::move(callbacks));
  session->Begin(*stub_);
  return std::unique_ptr<MirrorTransport::Session>(std::move(session));
}

}  // namespace nvlog
