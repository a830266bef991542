#include "appliance/nvlog/nvlog.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/thread_name.h"

namespace nvlog {

Nvlog::Nvlog(MirrorTransport& transport, Options options)
    : transport_(transport), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Nvlog>> Nvlog::Create(MirrorTransport& transport,
                                                     Options options) {
  if (options.max_bytes == 0) {
    return absl::InvalidArgumentError("max_bytes must be positive");
  }
  if (options.max_batch_entries == 0 || options.max_batch_bytes == 0) {
    return absl::InvalidArgumentError("batch limits must be positive");
  }
  if (options.max_batches_in_flight < 1) {
    return absl::InvalidArgumentError("max_batches_in_flight must be >= 1");
  }
  if (options.ack_timeout <= absl::ZeroDuration() ||
      options.reconnect_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  std::unique_ptr<Nvlog> log(new Nvlog(transport, std::move(options)));
  {
    absl::MutexLock l(&log->mu_);
    log->next_session_id_ =
        log->options_.first_session != 0
            ? log->options_.first_session
            : static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  }
  Nvlog* raw = log.get();
  log->worker_ = std::thread([raw] { raw->WorkerLoop(); });
  return log;
}

Nvlog::~Nvlog() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

void Nvlog::Run(Completions& completions) {
  for (auto& [done, result] : completions) std::move(done)(std::move(result));
  completions.clear();
}

absl::StatusOr<uint64_t> Nvlog::Append(uint64_t lun, uint64_t lba,
                                       uint32_t block_count,
                                       absl::Span<const uint8_t> data,
                                       AppendCallback done, bool fua) {
  absl::Status shape =
      ValidateShape(lba, block_count, data.size(), options_.limits);
  if (!shape.ok()) return shape;
  if (data.size() > options_.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry of ", data.size(), " bytes exceeds the log (",
                     options_.max_bytes, ")"));
  }
  uint64_t seq = 0;
  bool complete_now = false;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return absl::UnavailableError("NVLOG is shutting down");
    // Never blocks (the caller may be the iSCSI loop or the interconnect's
    // polling thread): an entry beyond the mirror window waits in the log,
    // unsent, and its write waits for the mirror like any other.
    if (mode_ != Mode::kUnmirrored && bytes_ + data.size() > options_.max_bytes) {
      stats_.append_waits++;
    }
    seq = next_seq_++;
    Logged& logged = log_.emplace_back();
    NvlogEntry& e = logged.entry;
    e.sequence = seq;
    e.lun = lun;
    e.lba = lba;
    e.block_count = block_count;
    e.fua = fua;
    logged.data = std::make_shared<const std::string>(
        reinterpret_cast<const char*>(data.data()), data.size());
    bytes_ += data.size();
    stats_.appends++;
    if (mode_ == Mode::kUnmirrored) {
      // Nobody to mirror to: this node alone promises it to the host.
      commit_through_ = seq;
      unmirrored_through_ = seq;
      stats_.unmirrored_appends++;
      complete_now = true;
    } else {
      waiting_.emplace(seq, std::move(done));
    }
  }
  if (complete_now) std::move(done)(AppendResult{seq, false});
  return seq;
}

absl::Status Nvlog::Retire(uint64_t sequence) {
  absl::MutexLock l(&mu_);
  if (sequence <= retired_through_ || sequence >= next_seq_) {
    return absl::NotFoundError(
        absl::StrCat("NVLOG sequence ", sequence, " is not held"));
  }
  NvlogEntry& e = log_[sequence - retired_through_ - 1].entry;
  if (e.retired) {
    return absl::NotFoundError(
        absl::StrCat("NVLOG sequence ", sequence, " already retired"));
  }
  e.retired = true;
  stats_.retired++;
  // Memory is released in sequence order, as on the partner (which drops a
  // contiguous prefix), so both ends hold the same bytes.
  while (!log_.empty() && log_.front().entry.retired) {
    bytes_ -= log_.front().data->size();
    if (log_.front().entry.sequence < send_next_) {
      window_bytes_ -= log_.front().data->size();
    }
    log_.pop_front();
    retired_through_++;
  }
  return absl::OkStatus();
}

bool Nvlog::mirrored() const {
  absl::MutexLock l(&mu_);
  return mode_ == Mode::kMirrored;
}

uint64_t Nvlog::unmirrored_writes() const {
  absl::MutexLock l(&mu_);
  return stats_.unmirrored_appends;
}

Nvlog::Stats Nvlog::stats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.entries = log_.size();
  s.bytes = bytes_;
  s.next_sequence = next_seq_;
  s.committed_through = commit_through_;
  s.retired_through = retired_through_;
  return s;
}

std::vector<NvlogEntry> Nvlog::Entries() const {
  absl::MutexLock l(&mu_);
  std::vector<NvlogEntry> out;
  out.reserve(log_.size());
  for (const Logged& logged : log_) {
    NvlogEntry& e = out.emplace_back(logged.entry);
    e.data = *logged.data;
    e.committed = e.sequence <= commit_through_;
  }
  return out;
}

bool Nvlog::WaitUntilMirrored(bool want, absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto reached = [this, want]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (mode_ == Mode::kMirrored) == want;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

// ---------------------------------------------------------------------------
// Worker: opens sessions, sends batches, enforces ack_timeout, reaps sessions.

bool Nvlog::CanSendLocked() const {
  if (session_ == nullptr || closing_ || stopping_) return false;
  if (in_flight_.size() >= static_cast<size_t>(options_.max_batches_in_flight)) {
    return false;
  }
  const uint64_t next = std::max(send_next_, retired_through_ + 1);
  return (next < next_seq_ && FitsWindowLocked(next)) ||
         std::min(commit_through_, send_next_ - 1) > sent_commit_ ||
         retired_through_ > sent_retire_;
}

bool Nvlog::FitsWindowLocked(uint64_t sequence) const {
  const size_t size = log_[sequence - retired_through_ - 1].data->size();
  return window_bytes_ == 0 || window_bytes_ + size <= options_.max_bytes;
}

void Nvlog::WorkerLoop() {
  common::SetThreadName("nvlog-send");
  absl::MutexLock l(&mu_);
  auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // While another thread sends, nothing here may run: sessions are
    // destroyed only while no thread is inside a session's Send.
    return !sending_ && (stopping_ || !dead_.empty() || CanSendLocked());
  };
  while (true) {
    absl::Time deadline = absl::InfiniteFuture();
    if (current_session_ == 0) {
      deadline = next_attempt_;
    } else if (session_ != nullptr && !closing_ && !in_flight_.empty()) {
      deadline = in_flight_.front() + options_.ack_timeout;
    }
    mu_.AwaitWithDeadline(absl::Condition(&work), deadline);
    if (stopping_ && !sending_) break;
    if (!dead_.empty() && !sending_) {
      auto dead = std::move(dead_);
      dead_.clear();
      mu_.Unlock();
      dead.clear();  // waits for their last callbacks
      mu_.Lock();
      continue;
    }
    const absl::Time now = absl::Now();
    if (current_session_ == 0) {
      if (now >= next_attempt_) OpenSessionLocked();
      continue;
    }
    if (session_ != nullptr && !closing_ && !in_flight_.empty() &&
        now >= in_flight_.front() + options_.ack_timeout) {
      closing_ = true;  // OnClosed breaks the session
      MirrorTransport::Session* s = session_.get();
      mu_.Unlock();
      s->Close();
      mu_.Lock();
      continue;
    }
    SendBatchesLocked(current_session_);
  }

  // Shutting down: forget the session, fail what still waits for it.
  current_session_ = 0;
  mode_ = Mode::kUnmirrored;
  std::vector<std::unique_ptr<MirrorTransport::Session>> dead = std::move(dead_);
  dead_.clear();
  std::unique_ptr<MirrorTransport::Session> session = std::move(session_);
  Completions completions;
  for (auto& [seq, done] : waiting_) {
    completions.emplace_back(std::move(done),
                             absl::UnavailableError("NVLOG is shutting down"));
  }
  waiting_.clear();
  mu_.Unlock();
  if (session != nullptr) session->Close();
  session.reset();
  dead.clear();
  Run(completions);
  mu_.Lock();
}

void Nvlog::OpenSessionLocked() {
  if (!transport_.LinkUp()) {
    next_attempt_ = absl::Now() + options_.reconnect_interval;
    return;
  }
  const uint64_t id = next_session_id_++;
  current_session_ = id;
  mode_ = Mode::kResyncing;  // appends from now on wait for the mirror
  closing_ = false;
  in_flight_.clear();
  send_next_ = retired_through_ + 1;
  window_bytes_ = 0;
  sent_retire_ = retired_through_;
  sent_commit_ = commit_through_;
  acked_held_ = retired_through_;

  interconnect::NvlogResyncRequest request;
  request.set_owner_node(options_.node_name);
  request.set_session(id);
  request.set_first_sequence(retired_through_ + 1);
  request.set_resync_through(next_seq_ - 1);
  request.set_commit_through(commit_through_);
  MirrorTransport::SessionCallbacks callbacks;
  callbacks.on_ack = [this, id](const interconnect::NvlogAck& ack) {
    OnAck(id, ack);
  };
  callbacks.on_closed = [this, id](const absl::Status& status) {
    OnClosed(id, status);
  };
  mu_.Unlock();
  absl::StatusOr<std::unique_ptr<MirrorTransport::Session>> opened =
      transport_.Open(request, std::move(callbacks));
  mu_.Lock();
  if (!opened.ok()) {
    if (current_session_ == id) {
      Completions completions;
      BreakSessionLocked(&completions);
      mu_.Unlock();
      Run(completions);
      mu_.Lock();
    }
    return;
  }
  if (current_session_ != id) {  // it closed while opening
    dead_.push_back(std::move(*opened));
    return;
  }
  session_ = std::move(*opened);
  stats_.sessions_opened++;
  // The partner now holds everything below first_sequence (as retired).
  if (unmirrored_through_ <= request.first_sequence() - 1) {
    mode_ = Mode::kMirrored;
    stats_.resyncs_completed++;
  }
}

OutgoingBatch Nvlog::BuildBatchLocked() {
  OutgoingBatch out;
  interconnect::NvlogBatch& batch = out.batch;
  batch.set_session(current_session_);
  if (retired_through_ > sent_retire_) {
    batch.mutable_retire()->set_through(retired_through_);
    sent_retire_ = retired_through_;
  }
  send_next_ = std::max(send_next_, retired_through_ + 1);
  size_t bytes = 0;
  while (send_next_ < next_seq_ &&
         static_cast<size_t>(batch.records_size()) < options_.max_batch_entries) {
    const Logged& logged = log_[send_next_ - retired_through_ - 1];
    const NvlogEntry& e = logged.entry;
    if (batch.records_size() > 0 &&
        bytes + logged.data->size() > options_.max_batch_bytes) {
      break;
    }
    // The partner holds at most max_bytes: the rest waits for retirement.
    if (!FitsWindowLocked(send_next_)) break;
    interconnect::NvlogRecord* r = batch.add_records();
    r->set_sequence(e.sequence);
    r->set_lun(e.lun);
    r->set_lba(e.lba);
    r->set_block_count(e.block_count);
    out.data.push_back(logged.data);
    uint32_t flags = 0;
    if (e.sequence <= commit_through_) flags |= interconnect::NVLOG_RECORD_COMMITTED;
    if (e.fua) flags |= interconnect::NVLOG_RECORD_FUA;
    r->set_flags(flags);
    bytes += logged.data->size();
    window_bytes_ += logged.data->size();
    send_next_++;
  }
  // Commit marks never run ahead of what the partner was sent.
  const uint64_t commit = std::min(commit_through_, send_next_ - 1);
  if (commit > sent_commit_) {
    batch.mutable_commit()->set_through(commit);
    sent_commit_ = commit;
  }
  return out;
}

void Nvlog::SendBatchesLocked(uint64_t session) {
  if (sending_) return;  // that thread sends what is ready now too
  sending_ = true;
  while (current_session_ == session && CanSendLocked()) {
    OutgoingBatch batch = BuildBatchLocked();
    in_flight_.push_back(absl::Now());
    stats_.batches_sent++;
    stats_.entries_sent += batch.batch.records_size();
    // s outlives the call: only the worker destroys sessions, and not while
    // sending_.
    MirrorTransport::Session* s = session_.get();
    mu_.Unlock();
    s->Send(std::move(batch));
    mu_.Lock();
  }
  sending_ = false;
}

// ---------------------------------------------------------------------------
// Transport callbacks

void Nvlog::OnAck(uint64_t session, const interconnect::NvlogAck& ack) {
  Completions completions;
  MirrorTransport::Session* to_close = nullptr;
  {
    absl::MutexLock l(&mu_);
    if (session != current_session_ || session_ == nullptr || closing_) return;
    const uint64_t highest_sent = std::max(send_next_ - 1, sent_retire_);
    if (in_flight_.empty() || ack.session() != session ||
        ack.held_through() < acked_held_ || ack.held_through() > highest_sent ||
        ack.committed_through() > ack.held_through()) {
      // A partner that acknowledges what it was never sent is broken: start
      // over with a new session rather than trust it.
      closing_ = true;
      to_close = session_.get();
    } else {
      in_flight_.pop_front();
      acked_held_ = ack.held_through();
      // The partner holds these: this node commits them (the commit mark
      // follows in the next batch; the host is acknowledged when the partner
      // confirms it holds the mark too).
      commit_through_ = std::max(commit_through_, acked_held_);
      while (!waiting_.empty() &&
             waiting_.begin()->first <= ack.committed_through()) {
        completions.emplace_back(std::move(waiting_.begin()->second),
                                 AppendResult{waiting_.begin()->first, true});
        waiting_.erase(waiting_.begin());
        stats_.mirrored_appends++;
      }
      if (mode_ == Mode::kResyncing &&
          ack.committed_through() >= unmirrored_through_) {
        mode_ = Mode::kMirrored;
        stats_.resyncs_completed++;
      }
      // The commit marks this ack made due, and what was appended while the
      // batch was in flight, leave from here: no hand-off to the worker.
      SendBatchesLocked(session);
    }
  }
  // Safe outside mu_: the session cannot be destroyed while one of its
  // callbacks runs.
  if (to_close != nullptr) to_close->Close();
  Run(completions);
}

void Nvlog::OnClosed(uint64_t session, const absl::Status& status) {
  Completions completions;
  {
    absl::MutexLock l(&mu_);
    if (session != current_session_) return;
    stats_.sessions_lost++;
    BreakSessionLocked(&completions);
  }
  Run(completions);
}

void Nvlog::BreakSessionLocked(Completions* out) {
  if (session_ != nullptr) dead_.push_back(std::move(session_));
  current_session_ = 0;
  closing_ = false;
  in_flight_.clear();
  mode_ = Mode::kUnmirrored;
  next_attempt_ = absl::Now() + options_.reconnect_interval;
  if (waiting_.empty()) return;
  // Every write still waiting is completed unmirrored: this node alone
  // promises it to the host, and the next session resends it committed.
  commit_through_ = next_seq_ - 1;
  unmirrored_through_ = next_seq_ - 1;
  for (auto& [seq, done] : waiting_) {
    out->emplace_back(std::move(done), AppendResult{seq, false});
    stats_.unmirrored_appends++;
  }
  waiting_.clear();
}

}  // namespace nvlog
