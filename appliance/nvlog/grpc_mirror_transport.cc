#include "appliance/nvlog/grpc_mirror_transport.h"

#include <chrono>
#include <deque>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "interconnect/slices.h"

namespace nvlog {
namespace {

// NvlogBatch.records and NvlogRecord.data (interconnect/nvlog.proto).
constexpr int kRecordsField = 2;
constexpr int kDataField = 5;

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

}  // namespace

grpc::ByteBuffer EncodeMirrorBatch(const OutgoingBatch& out) {
  const interconnect::NvlogBatch& batch = out.batch;
  interconnect::SliceBuilder message;
  // Session, commit and retire marks: the batch without its records (field
  // order does not matter to a protobuf parser).
  interconnect::NvlogBatch marks;
  marks.set_session(batch.session());
  if (batch.has_commit()) *marks.mutable_commit() = batch.commit();
  if (batch.has_retire()) *marks.mutable_retire() = batch.retire();
  message.Append(marks.SerializeAsString());
  std::string head;
  for (int i = 0; i < batch.records_size(); ++i) {
    const interconnect::NvlogRecord& record = batch.records(i);
    const std::string* data =
        static_cast<size_t>(i) < out.data.size() ? out.data[i].get() : nullptr;
    const size_t data_bytes = data != nullptr ? data->size() : 0;
    // Sizes once (AppendMessage reuses the cached sizes).
    const size_t record_bytes = record.ByteSizeLong();
    const size_t data_field =
        data_bytes == 0 ? 0 : interconnect::LengthDelimitedSize(kDataField, data_bytes);
    head.clear();
    interconnect::AppendFieldHead(kRecordsField, record_bytes + data_field, &head);
    interconnect::AppendMessage(record, record_bytes, &head);
    if (data_bytes > 0) interconnect::AppendFieldHead(kDataField, data_bytes, &head);
    message.Append(head);
    if (data_bytes > 0) message.AppendShared(out.data[i], data->data(), data_bytes);
  }
  return message.Build();
}

// One Mirror call (gRPC's generic API: batches go out as EncodeMirrorBatch
// builds them, acks are parsed here); its tags run on the queue's polling
// thread. The call finishes once its read side has ended and no write is in
// flight; Send() after the read side ended is ignored.
class GrpcMirrorTransport::GrpcSession final : public MirrorTransport::Session {
 public:
  explicit GrpcSession(SessionCallbacks callbacks)
      : callbacks_(std::move(callbacks)),
        started_([this](bool ok) { OnStarted(ok); }),
        read_([this](bool ok) { OnReadDone(ok); }),
        written_([this](bool ok) { OnWriteDone(ok); }),
        finished_([this](bool) { OnFinished(); }) {}

  void Begin(grpc::GenericStub& stub, grpc::CompletionQueue* cq) {
    absl::MutexLock l(&mu_);
    call_ = stub.PrepareCall(&context_, MirrorMethod(), cq);
    call_->StartCall(&started_);
  }

  ~GrpcSession() override {
    Close();
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  void Send(OutgoingBatch batch) override {
    grpc::ByteBuffer message = EncodeMirrorBatch(batch);
    absl::MutexLock l(&mu_);
    if (read_ended_ || cancelled_) return;
    writes_.push_back(std::move(message));
    if (started_ok_ && !writing_) StartWriteLocked();
  }

  void Close() override {
    {
      absl::MutexLock l(&mu_);
      if (cancelled_ || done_) return;
      cancelled_ = true;
    }
    context_.TryCancel();
  }

 private:
  static const std::string& MirrorMethod() {
    static const std::string* const method = new std::string(absl::StrCat(
        "/", interconnect::NvlogMirror::service_full_name(), "/Mirror"));
    return *method;
  }

  void OnStarted(bool ok) {
    absl::MutexLock l(&mu_);
    if (!ok) {  // never started: nothing to read or write
      read_ended_ = true;
      writes_.clear();
      MaybeFinishLocked();
      return;
    }
    started_ok_ = true;
    call_->Read(&read_buffer_, &read_);
    if (!writes_.empty() && !writing_) StartWriteLocked();
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      absl::MutexLock l(&mu_);
      read_ended_ = true;
      MaybeFinishLocked();
      return;
    }
    interconnect::NvlogAck ack;
    bool parsed = false;
    {
      grpc::ProtoBufferReader reader(&read_buffer_);
      parsed = reader.status().ok() && ack.ParseFromZeroCopyStream(&reader);
    }
    read_buffer_.Clear();
    if (parsed) {
      callbacks_.on_ack(ack);
    } else {
      Close();  // a partner that sends garbage: start over (the read ends it)
    }
    absl::MutexLock l(&mu_);
    // Keep reading even when cancelled: the failed read is what ends it.
    call_->Read(&read_buffer_, &read_);
  }

  void OnWriteDone(bool ok) {
    absl::MutexLock l(&mu_);
    writes_.pop_front();
    writing_ = false;
    if (!ok) writes_.clear();  // the call is over; the read side reports it
    if (!writes_.empty() && !read_ended_) {
      StartWriteLocked();
      return;
    }
    writes_.clear();
    MaybeFinishLocked();
  }

  void OnFinished() {
    callbacks_.on_closed(status_.ok()
                             ? absl::UnavailableError("NVLOG mirror stream ended")
                             : FromGrpc(status_));
    absl::MutexLock l(&mu_);
    done_ = true;
  }

  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    call_->Write(writes_.front(), &written_);
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!read_ended_ || writing_ || finishing_) return;
    finishing_ = true;
    call_->Finish(&status_, &finished_);
  }

  const SessionCallbacks callbacks_;
  grpc::ClientContext context_;
  grpc::ByteBuffer read_buffer_;
  grpc::Status status_;
  absl::Mutex mu_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_
      ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> writes_ ABSL_GUARDED_BY(mu_);
  bool started_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  interconnect::QueueTag started_, read_, written_, finished_;
};

GrpcMirrorTransport::GrpcMirrorTransport(std::shared_ptr<grpc::Channel> channel,
                                         Options options)
    : options_(std::move(options)),
      stub_(interconnect::NvlogMirror::NewStub(channel)),
      generic_stub_(std::make_unique<grpc::GenericStub>(std::move(channel))),
      own_queue_(options_.cq == nullptr
                     ? std::make_unique<interconnect::NodeQueue>("nvlog-mirror")
                     : nullptr),
      cq_(options_.cq != nullptr ? options_.cq : own_queue_->get()) {}

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
  session->Begin(*generic_stub_, cq_);
  return std::unique_ptr<MirrorTransport::Session>(std::move(session));
}

}  // namespace nvlog
