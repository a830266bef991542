#include "vadapter/local_virtual_adapter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/defer_scope.h"
#include "common/thread_name.h"
#include "interconnect/server.h"

namespace vadapter {
namespace {

// Whether a TMF affects a forwarded command (SAM-5 scopes, as seen from the
// requester: its own commands only).
bool InScope(const scsi::TmfRequest& r, const scsi::ItNexus& nexus, uint64_t lun,
             uint64_t tag) {
  const bool same_nexus = r.nexus && *r.nexus == nexus;
  switch (r.function) {
    case scsi::TmfFunction::kAbortTask:
      return same_nexus && tag == r.referenced_tag;
    case scsi::TmfFunction::kAbortTaskSet:
      return same_nexus && lun == r.lun;
    case scsi::TmfFunction::kClearTaskSet:
    case scsi::TmfFunction::kLogicalUnitReset:
      return lun == r.lun;
    case scsi::TmfFunction::kClearAca:
      return false;
    case scsi::TmfFunction::kTargetWarmReset:
    case scsi::TmfFunction::kTargetColdReset:
      return true;
    case scsi::TmfFunction::kItNexusLoss:
      return same_nexus;
  }
  return false;
}

scsi::TaskResponse AbortedResponse() {
  scsi::TaskResponse r;
  r.aborted = true;
  return r;
}

}  // namespace

// One Proxy.Exchange call. Every member but the gRPC buffers is guarded by
// the adapter's mu_; its tags run on the adapter's polling thread. The call
// ends (Finish, then the adapter deletes it) once its read side has failed and
// no write is in flight.
class LocalVirtualAdapter::Stream {
 public:
  Stream(LocalVirtualAdapter& adapter, int slot)
      : slot(slot),
        adapter_(adapter),
        writes_(adapter.options_.max_batch_bytes),
        started_([this](bool ok) { OnStarted(ok); }),
        read_([this](bool ok) { OnReadDone(ok); }),
        written_([this](bool ok) { OnWriteDone(ok); }),
        finished_([this](bool) { adapter_.OnStreamDone(this); }) {}

  void Begin() {
    call_ = adapter_.stub_->PrepareCall(&context, ExchangeMethod(),
                                        adapter_.link_.completion_queue());
    call_->StartCall(&started_);
  }

  // Queues e with data_out as its payload (in order; what queues while a
  // write is in flight, or before the call has started, leaves as one batch,
  // and so does what a DeferScope round adds: see HoldWritesLocked).
  void Write(const interconnect::Envelope& e, std::vector<uint8_t> data_out = {}) {
    if (!usable) return;
    const bool hold = adapter_.HoldWritesLocked() || !call_started_;
    Send(writes_.Add(EncodeItem(e, kDataOut, std::move(data_out)), hold));
  }

  // Hands over what was held (if no write is in flight).
  void Flush() {
    if (usable && call_started_) Send(writes_.Release());
  }

  void Cancel() {
    if (!usable) return;
    usable = false;
    context.TryCancel();
  }

  // The read side has failed (under mu_): finish once no write is in flight.
  void EndReads() {
    reads_ended_ = true;
    MaybeFinish();
  }

  grpc::ClientContext context;
  const int slot;
  bool usable = true;
  size_t outstanding_requests = 0;
  size_t outstanding_bytes = 0;
  absl::flat_hash_set<uint64_t> ids;  // pending entries sent on this stream

 private:
  void OnStarted(bool ok) {
    if (!ok) {  // the call never started: nothing to read
      adapter_.OnStreamBroken(this);
      return;
    }
    absl::MutexLock l(&adapter_.mu_);
    call_started_ = true;
    call_->Read(&read_buffer_, &read_);
    Flush();
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      adapter_.OnStreamBroken(this);
      return;
    }
    const absl::Status decoded =
        DecodeBatch(&read_buffer_, kDataIn, adapter_.options_.limits.max_data_in_bytes,
                    &completions_);
    read_buffer_.Clear();
    if (!decoded.ok()) {
      // An answer this side cannot read: the stream's commands fail over
      // (unavailable sense) and the call is cancelled.
      {
        absl::MutexLock l(&adapter_.mu_);
        adapter_.stats_.malformed_messages++;
        Cancel();
      }
      adapter_.OnStreamBroken(this);
      return;
    }
    adapter_.OnCompletions(this, &completions_);
    // Keep reading even when cancelled: the failed read is what ends it.
    call_->Read(&read_buffer_, &read_);
  }

  void OnWriteDone(bool ok) {
    absl::MutexLock l(&adapter_.mu_);
    // Once cancelled, what waits is dropped (its commands have failed).
    Send(writes_.WriteDone(ok && usable));
    MaybeFinish();
  }

  // Under the adapter's mu_.
  void Send(WireBatch* batch) {
    if (batch == nullptr) return;
    adapter_.stats_.batches_sent++;
    call_->Write(batch->Seal(), &written_);
  }

  static const std::string& ExchangeMethod() {
    static const std::string* const method = new std::string(
        absl::StrCat("/", interconnect::Proxy::service_full_name(), "/Exchange"));
    return *method;
  }

  void MaybeFinish() {
    if (!reads_ended_ || writes_.writing() || finishing_) return;
    finishing_ = true;
    call_->Finish(&status_, &finished_);
  }

  LocalVirtualAdapter& adapter_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool call_started_ = false;
  bool reads_ended_ = false;
  bool finishing_ = false;
  grpc::Status status_;
  grpc::ByteBuffer read_buffer_;  // the stream message being read
  std::vector<DecodedItem<interconnect::Completion>> completions_;  // decoded
  WriteBatcher writes_;
  interconnect::QueueTag started_, read_, written_, finished_;
};

LocalVirtualAdapter::LocalVirtualAdapter(interconnect::PartnerChannel& link,
                                         Options options)
    : link_(link),
      options_(std::move(options)),
      stub_(std::make_unique<grpc::GenericStub>(link.channel())) {
  slots_.assign(std::max(1, options_.streams), nullptr);
}

absl::StatusOr<std::unique_ptr<LocalVirtualAdapter>> LocalVirtualAdapter::Create(
    interconnect::PartnerChannel& link, Options options) {
  if (options.streams < 1 || options.streams > 64) {
    return absl::InvalidArgumentError("streams must be in 1..64");
  }
  if (options.max_outstanding_requests_per_stream < 1) {
    return absl::InvalidArgumentError("max_outstanding_requests_per_stream < 1");
  }
  if (options.max_batch_bytes < 1) {
    return absl::InvalidArgumentError("max_batch_bytes < 1");
  }
  if (options.command_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("command_timeout must be positive");
  }
  std::unique_ptr<LocalVirtualAdapter> a(
      new LocalVirtualAdapter(link, std::move(options)));
  LocalVirtualAdapter* raw = a.get();
  a->listener_id_ =
      link.AddStateListener([raw](bool connected) { raw->OnLinkChange(connected); });
  a->timer_ = std::thread([raw] { raw->TimerLoop(); });

  return a;
}

LocalVirtualAdapter::~LocalVirtualAdapter() {
  link_.RemoveStateListener(listener_id_);
  Callbacks cb;
  {
    absl::MutexLock l(&mu_);
    shutting_down_ = true;
    FailAllLocked(&cb);
    for (Stream* s : live_streams_) s->Cancel();
  }
  for (auto& c : cb) std::move(c)();
  stop_timer_.Notify();
  timer_.join();
  absl::MutexLock l(&mu_);
  auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return live_streams_.empty();
  };
  mu_.Await(absl::Condition(&all_done));
}

bool LocalVirtualAdapter::PartnerReachable() const { return link_.connected(); }

void LocalVirtualAdapter::Forward(std::unique_ptr<scsi::Task> task,
                                  scsi::TaskCompletion done) {
  interconnect::Envelope envelope;
  if (!EncodeScsiCommand(*task, options_.limits,
                         envelope.mutable_scsi_command())
           .ok()) {
    std::move(done)(InvalidFieldInCdbResponse());
    return;
  }
  Callbacks cb;
  std::optional<scsi::TaskResponse> answer_now;
  {
    absl::MutexLock l(&mu_);
    // Checked under mu_: OnLinkChange(false) fails what is pending under mu_
    // after connected() turned false, so nothing slips in between.
    if (shutting_down_ || !link_.connected()) {
      stats_.unavailable++;
      answer_now = UnavailableResponse();
    } else if (queued_ >= options_.max_queued_requests) {
      stats_.task_set_full++;
      answer_now = TaskSetFullResponse();
    } else {
      const uint64_t id = next_request_id_++;
      envelope.set_request_id(id);
      Pending p;
      p.task_done = std::move(done);
      p.nexus = task->nexus;
      p.lun = task->lun;
      p.tag = task->tag;
      p.expected_data_in_length = task->expected_data_in_length;
      p.bytes = task->data_out.size() + task->expected_data_in_length;
      p.data_out = std::move(task->data_out);
      p.deadline = absl::Now() + options_.command_timeout;
      p.envelope = std::move(envelope);
      deadlines_.emplace(p.deadline, id);
      pending_.emplace(id, std::move(p));
      fifo_.push_back(id);
      queued_++;
      stats_.forwarded++;
      DispatchLocked(&cb);
    }
  }
  if (answer_now.has_value()) {
    std::move(done)(std::move(*answer_now));
    return;
  }
  for (auto& c : cb) std::move(c)();
}

void LocalVirtualAdapter::ForwardTaskManagement(scsi::TmfRequest request,
                                                scsi::TmfCompletion done) {
  interconnect::Envelope envelope;
  if (!EncodeTaskManagement(request, options_.limits,
                            envelope.mutable_task_management())
           .ok()) {
    std::move(done)(scsi::TmfResult::kRejected);
    return;
  }
  const bool abort_task = request.function == scsi::TmfFunction::kAbortTask;
  Callbacks cb;
  std::optional<scsi::TmfResult> answer_now;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_ || !link_.connected()) {
      answer_now = abort_task ? scsi::TmfResult::kTaskDoesNotExist
                              : scsi::TmfResult::kComplete;
    } else {
      std::vector<uint64_t> queued, sent;
      for (auto& [id, p] : pending_) {
        if (p.is_tmf || !InScope(request, *p.nexus, p.lun, p.tag)) continue;
        (p.stream == nullptr ? queued : sent).push_back(id);
      }
      // Not sent yet: abort here; the owner never sees them.
      for (uint64_t id : queued) {
        Pending p = TakeLocked(id);
        cb.push_back([d = std::move(p.task_done)]() mutable {
          std::move(d)(AbortedResponse());
        });
      }
      Stream* main = nullptr;
      if (!sent.empty()) {
        std::sort(sent.begin(), sent.end());
        main = pending_[sent.front()].stream;
      } else if (abort_task) {
        answer_now = queued.empty() ? scsi::TmfResult::kTaskDoesNotExist
                                    : scsi::TmfResult::kComplete;
      } else {
        main = AnyStreamLocked();
      }
      if (!answer_now.has_value()) {
        // Commands in scope on other streams may reach the owner after the
        // TMF: abort each on its own stream, behind it.
        for (uint64_t id : sent) {
          Pending& p = pending_[id];
          if (p.stream != main) SendAbortTaskLocked(p.stream, p.nexus, p.lun, p.tag);
        }
        const uint64_t id = next_request_id_++;
        envelope.set_request_id(id);
        Pending p;
        p.is_tmf = true;
        p.tmf_done = std::move(done);
        p.nexus = request.nexus;
        p.lun = request.lun;
        p.deadline = absl::Now() + options_.command_timeout;
        p.envelope = std::move(envelope);
        deadlines_.emplace(p.deadline, id);
        auto it = pending_.emplace(id, std::move(p)).first;
        SendLocked(main, id, it->second);
      }
      DispatchLocked(&cb);
    }
  }
  for (auto& c : cb) std::move(c)();
  if (answer_now.has_value()) std::move(done)(*answer_now);
}

LocalVirtualAdapter::Stats LocalVirtualAdapter::stats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.queued = queued_;
  s.outstanding = 0;
  for (Stream* st : slots_) {
    if (st != nullptr) s.outstanding += st->outstanding_requests;
  }
  return s;
}

// ---------------------------------------------------------------------------
// Under mu_

bool LocalVirtualAdapter::HoldWritesLocked() {
  if (!common::DeferScope::IsOpen()) return false;
  if (!flush_deferred_) {
    flush_deferred_ = true;
    common::DeferScope::Defer([this] { FlushHeldWrites(); });
  }
  return true;
}

void LocalVirtualAdapter::DispatchLocked(Callbacks* cb) {
  while (!fifo_.empty()) {
    const uint64_t id = fifo_.front();
    auto it = pending_.find(id);
    if (it == pending_.end() || it->second.stream != nullptr) {
      fifo_.pop_front();  // completed or failed while waiting
      continue;
    }
    Stream* s = PickStreamLocked(it->second.bytes);
    if (s == nullptr) return;
    fifo_.pop_front();
    queued_--;
    SendLocked(s, id, it->second);
  }
}

LocalVirtualAdapter::Stream* LocalVirtualAdapter::OpenStreamLocked(int slot) {
  auto* s = new Stream(*this, slot);
  live_streams_.insert(s);
  slots_[slot] = s;
  stats_.streams_opened++;
  s->Begin();
  return s;
}

LocalVirtualAdapter::Stream* LocalVirtualAdapter::PickStreamLocked(size_t bytes) {
  if (shutting_down_ || !link_.connected()) return nullptr;
  Stream* best = nullptr;
  for (int slot = 0; slot < static_cast<int>(slots_.size()); ++slot) {
    Stream* s = slots_[slot];
    // Opened only when the streams before it are past the fill bound.
    if (s == nullptr || !s->usable) s = OpenStreamLocked(slot);
    if (s->outstanding_requests >= options_.max_outstanding_requests_per_stream) {
      continue;
    }
    if (s->outstanding_requests > 0 &&
        s->outstanding_bytes + bytes > options_.max_outstanding_bytes_per_stream) {
      continue;
    }
    // The first stream with room under the fill bound takes it.
    if (s->outstanding_bytes + bytes <= options_.fill_stream_bytes) return s;
    if (best == nullptr || s->outstanding_bytes < best->outstanding_bytes ||
        (s->outstanding_bytes == best->outstanding_bytes &&
         s->outstanding_requests < best->outstanding_requests)) {
      best = s;
    }
  }
  return best;
}

LocalVirtualAdapter::Stream* LocalVirtualAdapter::AnyStreamLocked() {
  for (Stream* s : slots_) {
    if (s != nullptr && s->usable) return s;
  }
  return OpenStreamLocked(0);
}

void LocalVirtualAdapter::SendLocked(Stream* s, uint64_t id, Pending& p) {
  p.stream = s;
  s->ids.insert(id);
  if (!p.is_tmf) {
    s->outstanding_requests++;
    s->outstanding_bytes += p.bytes;
  }
  s->Write(p.envelope, std::move(p.data_out));
  p.envelope = interconnect::Envelope();
  p.data_out = std::vector<uint8_t>();
}

void LocalVirtualAdapter::SendAbortTaskLocked(
    Stream* s, const std::shared_ptr<const scsi::ItNexus>& nexus, uint64_t lun,
    uint64_t tag) {
  // Fire and forget: its completion matches no pending entry and is ignored.
  interconnect::Envelope e;
  e.set_request_id(next_request_id_++);
  scsi::TmfRequest r;
  r.nexus = nexus;
  r.function = scsi::TmfFunction::kAbortTask;
  r.lun = lun;
  r.referenced_tag = tag;
  if (EncodeTaskManagement(r, options_.limits, e.mutable_task_management()).ok()) {
    s->Write(e);
  }
}

LocalVirtualAdapter::Pending LocalVirtualAdapter::TakeLocked(uint64_t id) {
  auto it = pending_.find(id);
  Pending p = std::move(it->second);
  pending_.erase(it);
  deadlines_.erase({p.deadline, id});
  if (p.stream != nullptr) {
    p.stream->ids.erase(id);
    if (!p.is_tmf) {
      p.stream->outstanding_requests--;
      p.stream->outstanding_bytes -= p.bytes;
    }
  } else if (!p.is_tmf) {
    queued_--;  // its fifo_ entry goes stale
  }
  return p;
}

void LocalVirtualAdapter::FailLocked(uint64_t id, Callbacks* cb,
                                     scsi::TmfResult tmf_result) {
  Pending p = TakeLocked(id);
  if (p.is_tmf) {
    cb->push_back([d = std::move(p.tmf_done), tmf_result]() mutable {
      std::move(d)(tmf_result);
    });
    return;
  }
  stats_.unavailable++;
  cb->push_back([d = std::move(p.task_done)]() mutable {
    std::move(d)(UnavailableResponse());
  });
}

void LocalVirtualAdapter::FailAllLocked(Callbacks* cb) {
  std::vector<uint64_t> ids;
  ids.reserve(pending_.size());
  for (auto& [id, p] : pending_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) FailLocked(id, cb, scsi::TmfResult::kComplete);
  fifo_.clear();
  queued_ = 0;
}

// ---------------------------------------------------------------------------
// Stream reactions and the link

void LocalVirtualAdapter::OnCompletions(
    Stream* s, std::vector<DecodedItem<interconnect::Completion>>* batch) {
  Callbacks cb;
  {
    absl::MutexLock l(&mu_);
    for (DecodedItem<interconnect::Completion>& c : *batch) {
      CompleteLocked(s, &c, &cb);
    }
    DispatchLocked(&cb);
  }
  for (auto& f : cb) std::move(f)();
}

void LocalVirtualAdapter::CompleteLocked(
    Stream* s, DecodedItem<interconnect::Completion>* item, Callbacks* cb) {
  const interconnect::Completion* c = &item->message;
  auto it = pending_.find(c->request_id());
  // Unknown ids: a timed-out command, or a fire-and-forget ABORT TASK.
  if (it == pending_.end() || it->second.stream != s) return;
  Pending p = TakeLocked(c->request_id());
  if (p.is_tmf) {
    const scsi::TmfResult result =
        c->has_tmf() ? DecodeTmfCompletion(c->tmf()) : scsi::TmfResult::kRejected;
    cb->push_back([d = std::move(p.tmf_done), result]() mutable {
      std::move(d)(result);
    });
    return;
  }
  stats_.completed++;
  scsi::TaskResponse r =
      c->has_scsi() ? DecodeScsiCompletion(c->scsi(), std::move(item->payload),
                                           p.expected_data_in_length,
                                           options_.limits)
                    : InternalTargetFailureResponse();
  cb->push_back([d = std::move(p.task_done), r = std::move(r)]() mutable {
    std::move(d)(std::move(r));
  });
}

void LocalVirtualAdapter::FlushHeldWrites() {
  absl::MutexLock l(&mu_);
  flush_deferred_ = false;
  for (Stream* s : live_streams_) s->Flush();
}

void LocalVirtualAdapter::OnStreamBroken(Stream* s) {
  Callbacks cb;
  {
    absl::MutexLock l(&mu_);
    s->usable = false;
    if (slots_[s->slot] == s) slots_[s->slot] = nullptr;
    std::vector<uint64_t> ids(s->ids.begin(), s->ids.end());
    std::sort(ids.begin(), ids.end());
    // The owner aborts this stream's commands when it sees the stream end.
    for (uint64_t id : ids) FailLocked(id, &cb, scsi::TmfResult::kComplete);
    // Waiting commands go on a fresh stream (or fail if the link is down).
    DispatchLocked(&cb);
    s->EndReads();  // s may be deleted (on this thread) once mu_ is released
  }
  for (auto& f : cb) std::move(f)();
}

void LocalVirtualAdapter::OnStreamDone(Stream* s) {
  absl::MutexLock l(&mu_);
  live_streams_.erase(s);
  if (slots_[s->slot] == s) slots_[s->slot] = nullptr;
  delete s;
}

void LocalVirtualAdapter::OnLinkChange(bool connected) {
  if (connected) return;  // streams reopen on demand
  Callbacks cb;
  {
    absl::MutexLock l(&mu_);
    FailAllLocked(&cb);
    for (Stream* s : live_streams_) s->Cancel();
  }
  for (auto& f : cb) std::move(f)();
}

void LocalVirtualAdapter::TimerLoop() {
  common::SetThreadName("proxy-timer");
  // A periodic sweep, off mu_: waiting on mu_ with a condition would put a
  // waiter on the lock every command takes (and wake this thread whenever the
  // earliest deadline changed, i.e. on every command at queue depth 1).
  const absl::Duration tick =
      std::clamp(options_.command_timeout / 10, absl::Milliseconds(1),
                 absl::Milliseconds(100));
  while (!stop_timer_.WaitForNotificationWithTimeout(tick)) {
    Callbacks cb;
    {
      absl::MutexLock l(&mu_);
      const absl::Time now = absl::Now();
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const uint64_t id = deadlines_.begin()->second;
        Pending& p = pending_[id];
        if (!p.is_tmf) {
          stats_.timed_out++;
          if (p.stream != nullptr && p.stream->usable) {
            SendAbortTaskLocked(p.stream, p.nexus, p.lun, p.tag);
          }
        }
        FailLocked(id, &cb, scsi::TmfResult::kRejected);
      }
      DispatchLocked(&cb);
    }
    for (auto& f : cb) std::move(f)();
  }
}

}  // namespace vadapter
