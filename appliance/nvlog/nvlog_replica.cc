#include "appliance/nvlog/nvlog_replica.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace nvlog {
namespace {

// Sanity bound on sequence numbers from a peer (far beyond any real log; keeps
// arithmetic on them from overflowing).
constexpr uint64_t kMaxSequence = uint64_t{1} << 62;
constexpr size_t kMaxOwnerNameBytes = 256;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

bool SameWrite(const interconnect::NvlogRecord& r, const NvlogEntry& e) {
  return r.lun() == e.lun && r.lba() == e.lba &&
         r.block_count() == e.block_count && r.data() == e.data &&
         ((r.flags() & interconnect::NVLOG_RECORD_FUA) != 0) == e.fua;
}

bool SameWrite(const interconnect::NvlogRecord& a,
               const interconnect::NvlogRecord& b) {
  return a.lun() == b.lun() && a.lba() == b.lba() &&
         a.block_count() == b.block_count() && a.data() == b.data() &&
         (a.flags() & interconnect::NVLOG_RECORD_FUA) ==
             (b.flags() & interconnect::NVLOG_RECORD_FUA);
}

}  // namespace

NvlogReplica::NvlogReplica() : NvlogReplica(Options()) {}
NvlogReplica::NvlogReplica(Options options) : options_(std::move(options)) {}

absl::StatusOr<interconnect::NvlogSnapshot> NvlogReplica::ApplyResync(
    const interconnect::NvlogResyncRequest& request) {
  absl::MutexLock l(&mu_);
  auto refuse = [this](absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.rejected++;
    return s;
  };
  if (frozen_) return refuse(absl::FailedPreconditionError("NVLOG replica is frozen"));
  if (request.session() <= session_) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "stale NVLOG session ", request.session(), " (current ", session_, ")")));
  }
  if (request.owner_node().size() > kMaxOwnerNameBytes) {
    return refuse(absl::InvalidArgumentError("owner_node too long"));
  }
  const uint64_t first = request.first_sequence();
  const uint64_t through = request.resync_through();
  if (first == 0 || first > kMaxSequence || through > kMaxSequence ||
      through + 1 < first) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("bad resync range ", first, "..", through)));
  }
  if (request.commit_through() > through) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("commit mark ", request.commit_through(),
                     " beyond resync_through ", through)));
  }
  if (through - (first - 1) > options_.max_records) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("resync of ", through - (first - 1),
                     " records exceeds max_records ", options_.max_records)));
  }
  entries_.clear();
  bytes_ = 0;
  owner_node_ = request.owner_node();
  session_ = request.session();
  resync_through_ = through;
  retired_through_ = first - 1;
  held_through_ = first - 1;
  commit_mark_ = request.commit_through();
  stats_.resyncs++;
  return SnapshotLocked();
}

absl::StatusOr<interconnect::NvlogAck> NvlogReplica::ApplyBatch(
    interconnect::NvlogBatch batch) {
  absl::MutexLock l(&mu_);
  auto refuse = [this](absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.rejected++;
    return s;
  };
  if (frozen_) return refuse(absl::FailedPreconditionError("NVLOG replica is frozen"));
  if (session_ == 0 || batch.session() != session_) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "batch of session ", batch.session(), ", current is ", session_)));
  }
  if (static_cast<size_t>(batch.records_size()) > options_.max_batch_records) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("batch of ", batch.records_size(), " records")));
  }
  const uint64_t retire =
      batch.has_retire() ? batch.retire().through() : retired_through_;
  if (retire < retired_through_) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "retire mark ", retire, " below ", retired_through_)));
  }
  if (retire > held_through_ + options_.max_retire_ahead) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "retire mark ", retire, " too far beyond ", held_through_)));
  }

  // Validate every record before changing anything.
  uint64_t expected = std::max(held_through_, retire) + 1;
  size_t add_bytes = 0;
  std::vector<interconnect::NvlogRecord*> add;
  absl::flat_hash_map<uint64_t, const interconnect::NvlogRecord*> in_batch;
  for (interconnect::NvlogRecord& r : *batch.mutable_records()) {
    absl::Status valid = ValidateRecord(r, options_.limits);
    if (!valid.ok()) return refuse(valid);
    const uint64_t seq = r.sequence();
    if (seq <= retire) continue;  // already on stable storage
    if (seq < expected) {
      // A resend: fine if it is the same write.
      auto held = entries_.find(seq);
      const bool same = held != entries_.end()
                            ? SameWrite(r, held->second)
                            : (in_batch.count(seq) > 0 &&
                               SameWrite(r, *in_batch[seq]));
      if (!same) {
        return refuse(absl::InvalidArgumentError(
            absl::StrCat("record ", seq, " conflicts with the one held")));
      }
      continue;
    }
    if (seq != expected) {
      return refuse(absl::InvalidArgumentError(absl::StrCat(
          "gap: record ", seq, " where ", expected, " was expected")));
    }
    add.push_back(&r);
    in_batch[seq] = &r;
    add_bytes += r.data().size();
    expected++;
  }
  const uint64_t top = expected - 1;  // held_through after the batch

  size_t drop_bytes = 0, drop_records = 0;
  for (auto it = entries_.begin(); it != entries_.end() && it->first <= retire;
       ++it) {
    drop_bytes += it->second.data.size();
    drop_records++;
  }
  if (bytes_ - drop_bytes + add_bytes > options_.max_bytes ||
      entries_.size() - drop_records + add.size() > options_.max_records) {
    return refuse(absl::ResourceExhaustedError(absl::StrCat(
        "NVLOG replica full: ", bytes_ - drop_bytes + add_bytes, " bytes, ",
        entries_.size() - drop_records + add.size(), " records")));
  }
  const uint64_t commit =
      batch.has_commit() ? batch.commit().through() : commit_mark_;
  if (commit < commit_mark_) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("commit mark ", commit, " below ", commit_mark_)));
  }
  if (commit > std::max(top, resync_through_)) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "commit mark ", commit, " beyond every record sent (", top, ")")));
  }

  // Apply.
  while (!entries_.empty() && entries_.begin()->first <= retire) {
    bytes_ -= entries_.begin()->second.data.size();
    entries_.erase(entries_.begin());
  }
  retired_through_ = retire;
  for (interconnect::NvlogRecord* r : add) {
    NvlogEntry e;
    e.sequence = r->sequence();
    e.lun = r->lun();
    e.lba = r->lba();
    e.block_count = r->block_count();
    e.data = std::move(*r->mutable_data());
    e.fua = (r->flags() & interconnect::NVLOG_RECORD_FUA) != 0;
    e.committed = (r->flags() & interconnect::NVLOG_RECORD_COMMITTED) != 0;
    bytes_ += e.data.size();
    entries_.emplace(e.sequence, std::move(e));
  }
  held_through_ = top;
  commit_mark_ = commit;
  stats_.batches++;
  stats_.records += batch.records_size();
  return AckLocked();
}

interconnect::NvlogAck NvlogReplica::AckLocked() const {
  interconnect::NvlogAck ack;
  ack.set_session(session_);
  ack.set_held_through(held_through_);
  ack.set_committed_through(std::min(commit_mark_, held_through_));
  ack.set_retired_through(retired_through_);
  return ack;
}

bool NvlogReplica::CommittedLocked(const NvlogEntry& e) const {
  return e.committed || e.sequence <= commit_mark_;
}

uint64_t NvlogReplica::MissingLocked() const {
  if (entries_.empty()) return 0;
  const uint64_t span = entries_.rbegin()->first - retired_through_;
  return span - entries_.size();
}

interconnect::NvlogSnapshot NvlogReplica::SnapshotLocked() const {
  interconnect::NvlogSnapshot s;
  s.set_owner_node(owner_node_);
  s.set_session(session_);
  s.set_held_through(held_through_);
  s.set_committed_through(std::min(commit_mark_, held_through_));
  s.set_retired_through(retired_through_);
  s.set_resync_through(resync_through_);
  s.set_records(entries_.size());
  s.set_bytes(bytes_);
  const uint64_t missing = MissingLocked();
  s.set_missing(missing);
  s.set_synced(session_ != 0 && missing == 0 &&
               held_through_ >= resync_through_);
  return s;
}

interconnect::NvlogSnapshot NvlogReplica::Snapshot() const {
  absl::MutexLock l(&mu_);
  return SnapshotLocked();
}

std::vector<NvlogEntry> NvlogReplica::Held() const {
  absl::MutexLock l(&mu_);
  std::vector<NvlogEntry> out;
  out.reserve(entries_.size());
  for (const auto& [seq, e] : entries_) {
    out.push_back(e);
    out.back().committed = CommittedLocked(e);
  }
  return out;
}

std::vector<NvlogEntry> NvlogReplica::CommittedUnretired() const {
  absl::MutexLock l(&mu_);
  std::vector<NvlogEntry> out;
  for (const auto& [seq, e] : entries_) {
    if (!CommittedLocked(e)) continue;
    out.push_back(e);
    out.back().committed = true;
  }
  return out;
}

absl::Status NvlogReplica::CheckConsistency() const {
  std::vector<NvlogEntry> held;
  uint64_t first = 0, held_through = 0, resync_through = 0;
  {
    absl::MutexLock l(&mu_);
    if (session_ == 0) {
      return absl::FailedPreconditionError(
          "no NVLOG session from the partner was ever synchronised");
    }
    first = retired_through_ + 1;
    held_through = held_through_;
    resync_through = resync_through_;
    for (const auto& [seq, e] : entries_) held.push_back(e);
  }
  absl::Status gap = CheckNoGap(held, first);
  if (!gap.ok()) return gap;
  if (held_through < resync_through) {
    return absl::FailedPreconditionError(absl::StrCat(
        "NVLOG gap: resync incomplete, sequences ", held_through + 1, "..",
        resync_through, " missing"));
  }
  return absl::OkStatus();
}

void NvlogReplica::Freeze() {
  absl::MutexLock l(&mu_);
  frozen_ = true;
}

void NvlogReplica::Thaw() {
  absl::MutexLock l(&mu_);
  frozen_ = false;
}

bool NvlogReplica::frozen() const {
  absl::MutexLock l(&mu_);
  return frozen_;
}

void NvlogReplica::Clear() {
  absl::MutexLock l(&mu_);
  entries_.clear();
  bytes_ = 0;
  retired_through_ = held_through_;
  resync_through_ = held_through_;
}

NvlogReplica::Stats NvlogReplica::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

// ---------------------------------------------------------------------------
// gRPC

// One Mirror stream: applies each batch as it is read and writes its ack. A
// refused batch finishes the stream with the refusal. Its tags run on the
// server's polling thread; once the server has shut down (no operation can
// be started) it deletes itself when its last operation has come back.
class NvlogReplica::Stream {
 public:
  explicit Stream(NvlogReplica& replica)
      : replica_(replica),
        accepted_([this](bool ok) { OnAccepted(ok); }),
        read_([this](bool ok) { OnReadDone(ok); }),
        written_([this](bool ok) { OnWriteDone(ok); }),
        finished_tag_([this](bool) { OnFinished(); }) {}

  // Waits for the next call; deletes this once the server has shut down.
  void Accept() {
    if (!replica_.gate_.Post([this] {
          replica_.RequestMirror(&context_, &stream_, replica_.cq_,
                                 replica_.cq_, &accepted_);
        })) {
      delete this;
    }
  }

 private:
  void OnAccepted(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    (new Stream(replica_))->Accept();
    {
      absl::MutexLock l(&replica_.mu_);
      replica_.stats_.streams_opened++;
    }
    replica_.open_streams_++;
    accepted_call_ = true;
    StartRead();
  }

  void StartRead() {
    if (!replica_.gate_.Post([this] { stream_.Read(&batch_, &read_); })) {
      RequestFinish(grpc::Status::OK);
    }
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      RequestFinish(grpc::Status::OK);
      return;
    }
    absl::StatusOr<interconnect::NvlogAck> ack = replica_.ApplyBatch(std::move(batch_));
    batch_.Clear();
    if (!ack.ok()) {
      RequestFinish(ToGrpc(ack.status()));
      return;
    }
    {
      absl::MutexLock l(&mu_);
      writes_.push_back(std::move(*ack));
      if (!writing_) StartWriteLocked();
    }
    StartRead();
  }

  void OnWriteDone(bool ok) {
    bool gone = false;
    {
      absl::MutexLock l(&mu_);
      writes_.pop_front();
      writing_ = false;
      if (!ok) writes_.clear();  // the call is over; the read side ends it
      if (!writes_.empty()) {
        StartWriteLocked();
        if (writing_) return;
      }
      gone = FinishIfRequestedLocked();
    }
    if (gone) OnFinished();
  }

  void OnFinished() {
    if (accepted_call_) replica_.open_streams_--;
    delete this;
  }

  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = replica_.gate_.Post(
        [this] { stream_.Write(writes_.front(), &written_); });
    if (!writing_) writes_.clear();
  }

  void RequestFinish(grpc::Status status) {
    bool gone = false;
    {
      absl::MutexLock l(&mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      finish_status_ = std::move(status);
      gone = FinishIfRequestedLocked();
    }
    if (gone) OnFinished();
  }

  // Finishes once requested and no write is in flight. True: the server has
  // shut down and nothing is in flight; the caller deletes the stream once it
  // has released mu_.
  bool FinishIfRequestedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_requested_ || writing_ || finished_) return false;
    finished_ = true;
    return !replica_.gate_.Post(
        [this] { stream_.Finish(finish_status_, &finished_tag_); });
  }

  NvlogReplica& replica_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<interconnect::NvlogAck, interconnect::NvlogBatch>
      stream_{&context_};
  interconnect::NvlogBatch batch_;
  bool accepted_call_ = false;
  absl::Mutex mu_;
  std::deque<interconnect::NvlogAck> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  interconnect::QueueTag accepted_, read_, written_, finished_tag_;
};

void NvlogReplica::StartServing(grpc::ServerCompletionQueue* cq) {
  cq_ = cq;
  gate_.Open();
  using ResyncCall = interconnect::UnaryCall<interconnect::NvlogResyncRequest,
                                             interconnect::NvlogSnapshot>;
  ResyncCall::Serve(
      gate_,
      [this, cq](grpc::ServerContext* context,
                 interconnect::NvlogResyncRequest* request,
                 ResyncCall::Responder* responder, void* tag) {
        RequestResync(context, request, responder, cq, cq, tag);
      },
      [this](const interconnect::NvlogResyncRequest& request,
             interconnect::NvlogSnapshot* reply) {
        absl::StatusOr<interconnect::NvlogSnapshot> snapshot =
            ApplyResync(request);
        if (!snapshot.ok()) return ToGrpc(snapshot.status());
        *reply = *std::move(snapshot);
        return grpc::Status::OK;
      });
  (new Stream(*this))->Accept();
}

void NvlogReplica::StopServing() { gate_.Close(); }

}  // namespace nvlog
