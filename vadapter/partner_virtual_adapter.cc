#include "vadapter/partner_virtual_adapter.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/defer_scope.h"
#include "vadapter/wire.h"
#include "vadapter/write_batcher.h"

namespace vadapter {

// One Exchange stream, from its acceptance to its Finish. Its tags run on the
// adapter's polling thread; writes may start from any thread (the engine's
// completions), under shared_->mu. Router completions may arrive after the
// stream is gone, so they hold the Shared state (not the stream) and drop their
// answer once the stream has finished.
class PartnerVirtualAdapter::Stream {
 public:
  struct Outstanding {
    std::shared_ptr<const scsi::ItNexus> nexus;
    uint64_t lun = 0;
    uint64_t tag = 0;
  };

  struct Shared : std::enable_shared_from_this<Shared> {
    explicit Shared(size_t max_batch_bytes) : writes(max_batch_bytes) {}

    absl::Mutex mu;
    Stream* stream ABSL_GUARDED_BY(mu) = nullptr;  // null once finished
    WriteBatcher writes ABSL_GUARDED_BY(mu);
    bool finish_requested ABSL_GUARDED_BY(mu) = false;
    bool flush_deferred ABSL_GUARDED_BY(mu) = false;
    absl::flat_hash_map<uint64_t, Outstanding> outstanding ABSL_GUARDED_BY(mu);

    // Queues c, with data_in as its payload, for writing (drops it once the
    // stream is finishing). finishes_task: c answers a command in
    // outstanding. Inside a DeferScope round (a stream message's envelopes,
    // an I/O reaper's completions) the round's completions leave as one
    // message when it ends.
    void Write(const interconnect::Completion& c,
               std::vector<uint8_t> data_in = {}, bool finishes_task = false) {
      WireItem item = EncodeItem(c, kDataIn, std::move(data_in));
      absl::MutexLock l(&mu);
      if (finishes_task) outstanding.erase(c.request_id());
      if (stream == nullptr || finish_requested) return;
      const bool hold = common::DeferScope::IsOpen();
      if (WireBatch* b = writes.Add(std::move(item), hold)) {
        stream->StartWrite(b);
      }
      if (hold && !flush_deferred) {
        flush_deferred = true;
        common::DeferScope::Defer([self = shared_from_this()] { self->Flush(); });
      }
    }

    // Hands over what was held (if no write is in flight).
    void Flush() {
      absl::MutexLock l(&mu);
      flush_deferred = false;
      if (stream == nullptr || finish_requested) return;
      if (WireBatch* b = writes.Release()) {
        stream->StartWrite(b);
      }
    }
  };

  explicit Stream(PartnerVirtualAdapter& adapter)
      : adapter_(adapter),
        shared_(std::make_shared<Shared>(adapter.options_.max_batch_bytes)),
        accepted_([this](bool ok) { OnAccepted(ok); }),
        read_([this](bool ok) { OnReadDone(ok); }),
        written_([this](bool ok) { OnWriteDone(ok); }),
        finished_([this](bool ok) { OnFinished(); }) {}

  // Waits for the next call; deletes this once the queue is closed.
  void Accept() {
    if (!adapter_.Post([this] {
          adapter_.RequestExchange(&context_, &stream_, adapter_.cq_,
                                   adapter_.cq_, &accepted_);
        })) {
      delete this;
    }
  }

 private:
  // Under shared_->mu. With the queue closed (the server has shut down and
  // cancelled the call) the write counts as failed.
  void StartWrite(WireBatch* batch) {
    if (!adapter_.Post([&] { stream_.Write(batch->Seal(), &written_); })) {
      shared_->writes.WriteDone(false);
    }
  }
  // Under shared_->mu. False: the queue is closed; the caller calls
  // OnFinished() once it has released shared_->mu.
  bool StartFinish() {
    return adapter_.Post(
        [this] { stream_.Finish(finish_status_, &finished_); });
  }
  void StartRead() {
    if (!adapter_.Post([this] { stream_.Read(&message_, &read_); })) {
      EndOfRequests();
    }
  }

  void OnAccepted(bool ok) {
    if (!ok) {  // the server is shutting down
      delete this;
      return;
    }
    adapter_.AcceptNext();
    {
      absl::MutexLock l(&shared_->mu);
      shared_->stream = this;
    }
    adapter_.streams_opened_++;
    adapter_.open_streams_++;
    StartRead();
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      EndOfRequests();
      return;
    }
    const absl::Status decoded =
        DecodeBatch(&message_, kDataOut, adapter_.options_.limits.max_data_out_bytes,
                    &envelopes_);
    message_.Clear();
    if (!decoded.ok()) {
      // Not a message this side can read: the stream ends as if the peer had
      // closed it (what it left running is aborted).
      adapter_.malformed_messages_++;
      EndOfRequests(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 std::string(decoded.message())));
      return;
    }
    adapter_.batches_++;
    adapter_.envelopes_ += envelopes_.size();
    {
      // Completions the engine gives inline leave together.
      common::DeferScope round;
      for (DecodedItem<interconnect::Envelope>& e : envelopes_) Handle(&e);
    }
    StartRead();
  }

  void OnWriteDone(bool ok) {
    {
      absl::MutexLock l(&shared_->mu);
      // !ok: the call is gone; finishing: nothing more is written.
      WireBatch* next =
          shared_->writes.WriteDone(ok && !shared_->finish_requested);
      if (next != nullptr) {
        StartWrite(next);
        return;
      }
      if (!shared_->finish_requested || StartFinish()) return;
    }
    OnFinished();
  }

  void OnFinished() {
    {
      absl::MutexLock l(&shared_->mu);
      shared_->stream = nullptr;
    }
    adapter_.open_streams_--;
    delete this;
  }

  // The requester stopped sending (closed, crashed, or the link broke), or
  // sent what cannot be read: abort what it left running and finish with
  // status. Answers still in flight are dropped.
  void EndOfRequests(grpc::Status status = grpc::Status::OK) {
    PartnerVirtualAdapter& adapter = adapter_;  // this may be deleted below
    std::vector<Outstanding> abort;
    bool finished = false;
    {
      absl::MutexLock l(&shared_->mu);
      for (auto& [id, o] : shared_->outstanding) abort.push_back(o);
      shared_->outstanding.clear();
      shared_->finish_requested = true;
      finish_status_ = std::move(status);
      shared_->writes.DropQueued();
      finished = !shared_->writes.writing() && !StartFinish();
    }
    if (finished) OnFinished();
    for (Outstanding& o : abort) {
      adapter.aborted_on_stream_end_++;
      scsi::TmfRequest r;
      r.nexus = std::move(o.nexus);
      r.function = scsi::TmfFunction::kAbortTask;
      r.lun = o.lun;
      r.referenced_tag = o.tag;
      adapter.router_.ManageTasks(std::move(r), [](scsi::TmfResult) {});
    }
  }

  void Reject(uint64_t request_id, bool tmf, const absl::Status& why) {
    adapter_.rejected_++;
    interconnect::Completion c;
    c.set_request_id(request_id);
    if (tmf) {
      c.mutable_tmf()->set_result(
          static_cast<uint32_t>(scsi::TmfResult::kRejected));
    } else {
      EncodeScsiResponse(InvalidFieldInCdbResponse(), c.mutable_scsi());
    }
    shared_->Write(c);
  }

  void Handle(DecodedItem<interconnect::Envelope>* item) {
    const interconnect::Envelope& envelope = item->message;
    const uint64_t id = envelope.request_id();
    switch (envelope.payload_case()) {
      case interconnect::Envelope::kScsiCommand:
        HandleCommand(id, envelope.scsi_command(), std::move(item->payload));
        return;
      case interconnect::Envelope::kTaskManagement:
        HandleTmf(id, envelope.task_management());
        return;
      case interconnect::Envelope::PAYLOAD_NOT_SET:
        Reject(id, false, absl::InvalidArgumentError("empty envelope"));
        return;
    }
    Reject(id, false, absl::InvalidArgumentError("unknown payload"));
  }

  void HandleCommand(uint64_t id, const interconnect::ScsiCommand& command,
                     std::vector<uint8_t> data_out) {
    auto task = DecodeScsiCommand(command, std::move(data_out),
                                  adapter_.options_.limits, adapter_.interner_);
    if (!task.ok()) {
      Reject(id, false, task.status());
      return;
    }
    enum { kAccepted, kDuplicate, kFull } verdict = kAccepted;
    {
      absl::MutexLock l(&shared_->mu);
      if (shared_->outstanding.contains(id)) {
        verdict = kDuplicate;
      } else if (shared_->outstanding.size() >=
                 adapter_.options_.max_outstanding_per_stream) {
        verdict = kFull;
      } else {
        shared_->outstanding.emplace(
            id, Outstanding{(*task)->nexus, (*task)->lun, (*task)->tag});
      }
    }
    if (verdict == kDuplicate) {
      // A reused request id would make completions ambiguous.
      Reject(id, false, absl::InvalidArgumentError("duplicate request_id"));
      return;
    }
    if (verdict == kFull) {
      interconnect::Completion c;
      c.set_request_id(id);
      EncodeScsiResponse(TaskSetFullResponse(), c.mutable_scsi());
      shared_->Write(c);
      return;
    }
    // The engine may complete inline, on this thread: no lock held here.
    adapter_.router_.Submit(
        std::move(*task), [shared = shared_, id](scsi::TaskResponse r) {
          interconnect::Completion c;
          c.set_request_id(id);
          EncodeScsiResponse(r, c.mutable_scsi());
          shared->Write(c, std::move(r.data_in), /*finishes_task=*/true);
        });
  }

  void HandleTmf(uint64_t id, const interconnect::TaskManagement& tmf) {
    auto request =
        DecodeTaskManagement(tmf, adapter_.options_.limits, adapter_.interner_);
    if (!request.ok()) {
      Reject(id, true, request.status());
      return;
    }
    if (request->function == scsi::TmfFunction::kItNexusLoss) {
      adapter_.ForgetNexus(*request->nexus);
    }
    adapter_.router_.ManageTasks(
        std::move(*request), [shared = shared_, id](scsi::TmfResult result) {
          interconnect::Completion c;
          c.set_request_id(id);
          c.mutable_tmf()->set_result(static_cast<uint32_t>(result));
          shared->Write(c);
        });
  }

  PartnerVirtualAdapter& adapter_;
  const std::shared_ptr<Shared> shared_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_{
      &context_};
  grpc::ByteBuffer message_;  // the stream message being read
  std::vector<DecodedItem<interconnect::Envelope>> envelopes_;  // decoded from it
  grpc::Status finish_status_;
  interconnect::QueueTag accepted_, read_, written_, finished_;
};

PartnerVirtualAdapter::PartnerVirtualAdapter(scsi::TaskRouter& router,
                                             Options options)
    : router_(router),
      options_(options),
      interner_([this](scsi::ItNexus n) { return Intern(std::move(n)); }) {
  absl::MutexLock l(&nexus_mu_);
  nexus_sweep_at_ = options_.max_nexuses;
}

void PartnerVirtualAdapter::StartServing(grpc::ServerCompletionQueue* cq) {
  cq_ = cq;
  gate_.Open();
  AcceptNext();
}

void PartnerVirtualAdapter::StopServing() { gate_.Close(); }

void PartnerVirtualAdapter::AcceptNext() { (new Stream(*this))->Accept(); }

namespace {
std::string NexusKey(const scsi::ItNexus& n) {
  return absl::StrCat(n.initiator_port_name, "\n", n.target_port_name, "\n",
                      n.relative_target_port_id, "\n", n.target_port_group);
}
}  // namespace

std::shared_ptr<const scsi::ItNexus> PartnerVirtualAdapter::Intern(
    scsi::ItNexus nexus) {
  std::string key = NexusKey(nexus);
  absl::MutexLock l(&nexus_mu_);
  auto it = nexuses_.find(key);
  if (it != nexuses_.end()) return it->second;
  if (nexuses_.size() >= nexus_sweep_at_) {
    // Forget nexuses no task refers to any more (their sessions are gone or
    // idle; a later command simply gets a new object).
    absl::erase_if(nexuses_,
                   [](const auto& kv) { return kv.second.use_count() == 1; });
    nexus_sweep_at_ = std::max(options_.max_nexuses, nexuses_.size() * 2);
  }
  auto fresh = std::make_shared<const scsi::ItNexus>(std::move(nexus));
  nexuses_.emplace(std::move(key), fresh);
  return fresh;
}

void PartnerVirtualAdapter::ForgetNexus(const scsi::ItNexus& nexus) {
  absl::MutexLock l(&nexus_mu_);
  nexuses_.erase(NexusKey(nexus));
}

PartnerVirtualAdapter::Stats PartnerVirtualAdapter::stats() const {
  Stats s;
  s.envelopes = envelopes_.load();
  s.batches = batches_.load();
  s.rejected = rejected_.load();
  s.streams_opened = streams_opened_.load();
  s.aborted_on_stream_end = aborted_on_stream_end_.load();
  s.malformed_messages = malformed_messages_.load();
  return s;
}

}  // namespace vadapter
