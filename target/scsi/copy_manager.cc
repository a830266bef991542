// The copy manager of scsi::Engine: EXTENDED COPY (LID1) between logical
// units of this engine, identified by their NAA designators, and RECEIVE COPY
// RESULTS (COPY STATUS, OPERATING PARAMETERS).
//
// A copy runs its segments in order, in chunks read from the source store and
// written to the destination store, on the store callbacks. Destination
// ranges on the receiving LU are held under its LBA range lock for the whole
// command (atomic against COMPARE AND WRITE there); ranges on other LUs are
// not locked.
#include <algorithm>
#include <utility>

#include "target/scsi/bytes.h"
#include "target/scsi/engine_impl.h"
#include "target/scsi/extended_copy.h"

namespace scsi {

using internal::CommandPtr;
using internal::CopyStatus;
using internal::LogicalUnit;

namespace {

constexpr CopyLimits kCopyLimits{};
constexpr uint64_t kCopyChunkBytes = 1 << 20;
constexpr uint8_t kDesignatorTypeNaa = 0x3;
constexpr uint8_t kAssociationLu = 0x0;

// COPY MANAGER STATUS values of COPY STATUS(LID1).
constexpr uint8_t kCopyInProgress = 0x00;
constexpr uint8_t kCopyCompleted = 0x01;
constexpr uint8_t kCopyFailed = 0x02;

}  // namespace

struct Engine::Impl::CopyJob {
  struct Segment {
    std::shared_ptr<LogicalUnit> source;
    std::shared_ptr<LogicalUnit> destination;
    uint64_t source_lba = 0;
    uint64_t destination_lba = 0;
    uint64_t bytes = 0;
  };
  CommandPtr cmd;
  std::vector<Segment> segments;
  std::optional<std::pair<std::string, uint8_t>> status_key;
  uint64_t bytes_done = 0;
};

void Engine::Impl::ExtendedCopy(const CommandPtr& cmd) {
  const uint32_t length = GetBe32(&cmd->cdb()[10]);
  if (auto e = CheckDataOut(cmd, length, false)) return CompleteSense(cmd, *e);
  if (length == 0) return CompleteGood(cmd);
  const CopyParseResult parsed = ParseExtendedCopyLid1(
      absl::MakeConstSpan(cmd->task->data_out.data(), length), kCopyLimits);
  if (parsed.error) return CompleteSense(cmd, *parsed.error);
  const CopyParameterList& list = parsed.list;

  // Resolve every copy target to a logical unit of this engine reachable
  // through the receiving port.
  std::vector<std::shared_ptr<LogicalUnit>> targets;
  const auto all = AllLus();
  for (const CopyTarget& t : list.targets) {
    std::shared_ptr<LogicalUnit> found;
    if (t.designator_type == kDesignatorTypeNaa && t.association == kAssociationLu) {
      for (const auto& lu : all) {
        if (HexToBytes(lu->identity.naa_id) == t.designator) found = lu;
      }
    }
    if (found) {
      const AluaState alua = AluaStateFor(found->lun, cmd->nexus());
      if (alua != AluaState::kActiveOptimized && alua != AluaState::kActiveNonOptimized) {
        found = nullptr;
      }
    }
    if (!found) return CompleteSense(cmd, CopyAborted(asc::kUnreachableCopyTarget, t.offset));
    if (t.block_size != found->block_size) {
      return CompleteSense(cmd, InvalidFieldInParameterList(static_cast<uint16_t>(t.offset + 29)));
    }
    targets.push_back(std::move(found));
  }

  auto job = std::make_shared<CopyJob>();
  job->cmd = cmd;
  uint64_t lock_lo = UINT64_MAX, lock_hi = 0;
  for (const BlockCopySegment& s : list.segments) {
    const auto at = [&s](int i) { return static_cast<uint16_t>(s.offset + i); };
    if (s.source >= targets.size()) {
      return CompleteSense(cmd, CopyAborted(asc::kUnreachableCopyTarget, at(4)));
    }
    if (s.destination >= targets.size()) {
      return CompleteSense(cmd, CopyAborted(asc::kUnreachableCopyTarget, at(6)));
    }
    CopyJob::Segment seg;
    seg.source = targets[s.source];
    seg.destination = targets[s.destination];
    const uint32_t src_bs = seg.source->block_size, dst_bs = seg.destination->block_size;
    seg.bytes = uint64_t{s.blocks} * (s.destination_count ? dst_bs : src_bs);
    if (seg.bytes % src_bs != 0 || seg.bytes % dst_bs != 0) {
      return CompleteSense(cmd, InvalidFieldInParameterList(at(10)));
    }
    seg.source_lba = s.source_lba;
    seg.destination_lba = s.destination_lba;
    const uint64_t src_blocks = seg.bytes / src_bs, dst_blocks = seg.bytes / dst_bs;
    const uint64_t src_capacity = seg.source->Capacity();
    const uint64_t dst_capacity = seg.destination->Capacity();
    // The copy target would refuse the LBA range: the copy is aborted at this
    // segment (segment pointer at the offending LBA field).
    if (s.source_lba > src_capacity || src_blocks > src_capacity - s.source_lba) {
      return CompleteSense(cmd, CopyAborted(asc::kNoAdditionalSenseInformation, at(12)));
    }
    if (s.destination_lba > dst_capacity || dst_blocks > dst_capacity - s.destination_lba) {
      return CompleteSense(cmd, CopyAborted(asc::kNoAdditionalSenseInformation, at(20)));
    }
    if (WriteProtected(*seg.destination)) {
      return CompleteSense(cmd, CopyAborted(asc::kWriteProtected, at(6)));
    }
    // Reservations of the other LUs bind the copy as they bind the initiator.
    for (const auto& [lu, access] : {std::pair{seg.source, ReservationAccess::kRead},
                                     std::pair{seg.destination, ReservationAccess::kWrite}}) {
      if (lu == cmd->lu) continue;
      bool conflict;
      {
        absl::MutexLock lock(&lu->mu);
        conflict = (lu->spc2_holder && *lu->spc2_holder != cmd->nexus_key) ||
                   PrConflicts(lu->pr, cmd->nexus(), access);
      }
      if (conflict) return CompleteConflict(cmd);
    }
    if (seg.destination == cmd->lu && dst_blocks > 0) {
      lock_lo = std::min(lock_lo, s.destination_lba);
      lock_hi = std::max(lock_hi, s.destination_lba + dst_blocks);
    }
    if (seg.bytes > 0) job->segments.push_back(std::move(seg));
  }

  if (list.usage != ListIdUsage::kNone) {
    LogicalUnit& lu = *cmd->lu;
    auto key = std::make_pair(cmd->nexus_key, list.list_id);
    bool busy = false;
    {
      absl::MutexLock lock(&lu.mu);
      auto it = lu.copies.find(key);
      busy = it != lu.copies.end() && it->second.in_progress;
      if (!busy) {
        CopyStatus status;
        status.hold = list.usage == ListIdUsage::kHold;
        lu.copies[key] = status;
      }
    }
    if (busy) return CompleteSense(cmd, IllegalRequest(asc::kOperationInProgress));
    job->status_key = std::move(key);
  }
  if (lock_hi == 0) return RunCopySegment(job, 0, 0);
  WithRangeLock(cmd, lock_lo, lock_hi - lock_lo, [this, job]() { RunCopySegment(job, 0, 0); });
}

void Engine::Impl::RunCopySegment(const std::shared_ptr<CopyJob>& job, size_t segment,
                                  uint64_t done_bytes) {
  const CommandPtr& cmd = job->cmd;
  if (Aborted(cmd)) return FinishCopy(job, std::nullopt);
  if (segment == job->segments.size()) return FinishCopy(job, std::nullopt);
  const CopyJob::Segment& seg = job->segments[segment];
  if (done_bytes == seg.bytes) {
    if (job->status_key) {
      absl::MutexLock lock(&cmd->lu->mu);
      auto it = cmd->lu->copies.find(*job->status_key);
      if (it != cmd->lu->copies.end()) {
        it->second.segments_processed = static_cast<uint16_t>(segment + 1);
        it->second.bytes_transferred = job->bytes_done;
      }
    }
    return RunCopySegment(job, segment + 1, 0);
  }
  const uint32_t src_bs = seg.source->block_size, dst_bs = seg.destination->block_size;
  const uint64_t unit = std::max(src_bs, dst_bs);
  const uint64_t chunk =
      std::min(seg.bytes - done_bytes, std::max(unit, kCopyChunkBytes / unit * unit));
  const uint64_t src_lba = seg.source_lba + done_bytes / src_bs;
  const uint64_t dst_lba = seg.destination_lba + done_bytes / dst_bs;
  cmd->buffer.resize(chunk);
  seg.source->store->Read(
      src_lba, static_cast<uint32_t>(chunk / src_bs), absl::MakeSpan(cmd->buffer),
      [this, job, segment, done_bytes, chunk, src_lba, dst_lba](absl::Status status) {
        if (!status.ok()) {
          SenseData s = StorageErrorSense(status, false, src_lba);
          return FinishCopy(job, CopyAborted(s.code));
        }
        const CopyJob::Segment& seg = job->segments[segment];
        const bool fua = !seg.destination->write_cache_enabled;
        seg.destination->store->Write(
            dst_lba, static_cast<uint32_t>(chunk / seg.destination->block_size),
            absl::MakeConstSpan(job->cmd->buffer), fua,
            [this, job, segment, done_bytes, chunk, dst_lba](absl::Status status) {
              if (!status.ok()) {
                SenseData s = StorageErrorSense(status, true, dst_lba);
                return FinishCopy(job, CopyAborted(s.code));
              }
              job->bytes_done += chunk;
              RunCopySegment(job, segment, done_bytes + chunk);
            });
      });
}

void Engine::Impl::FinishCopy(const std::shared_ptr<CopyJob>& job,
                              std::optional<SenseData> error) {
  const CommandPtr& cmd = job->cmd;
  if (job->status_key) {
    absl::MutexLock lock(&cmd->lu->mu);
    auto it = cmd->lu->copies.find(*job->status_key);
    if (it != cmd->lu->copies.end()) {
      if (cmd->aborted || !it->second.hold) {
        cmd->lu->copies.erase(it);
      } else {
        it->second.in_progress = false;
        it->second.failed = error.has_value();
        it->second.bytes_transferred = job->bytes_done;
      }
    }
  }
  if (error) return CompleteSense(cmd, *error);
  Complete(cmd, std::move(cmd->response));
}

void Engine::Impl::ReceiveCopyResults(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  const uint8_t service_action = cdb[1] & 0x1F;
  const uint32_t allocation = GetBe32(&cdb[10]);
  LogicalUnit& lu = *cmd->lu;
  std::vector<uint8_t> d;
  ByteWriter w(d);
  if (service_action == 0x00) {  // COPY STATUS(LID1)
    std::optional<CopyStatus> found;
    {
      absl::MutexLock lock(&lu.mu);
      auto it = lu.copies.find(std::make_pair(cmd->nexus_key, cdb[2]));
      if (it != lu.copies.end()) {
        found = it->second;
        // Status of a finished copy is reported once.
        if (!found->in_progress) lu.copies.erase(it);
      }
    }
    if (!found) return CompleteSense(cmd, InvalidFieldInCdb(2));
    const CopyStatus& status = *found;
    uint64_t count = status.bytes_transferred;
    uint8_t units = 0;  // bytes, KiB, MiB, ...
    while (count > 0xFFFFFFFFull) {
      count >>= 10;
      ++units;
    }
    w.U32(8);
    w.U8(status.in_progress ? kCopyInProgress : status.failed ? kCopyFailed : kCopyCompleted);
    w.U16(status.segments_processed);
    w.U8(units);
    w.U32(static_cast<uint32_t>(count));
  } else {  // OPERATING PARAMETERS
    const uint8_t granularity = static_cast<uint8_t>(__builtin_ctz(lu.block_size));
    const uint8_t implemented[] = {kBlockToBlockSegmentDescriptor,
                                   kIdentificationTargetDescriptor};
    w.U32(0);  // AVAILABLE DATA, patched
    w.U8(0x01);  // SNLID: LIST ID USAGE 11b supported
    w.Zeros(3);
    w.U16(kCopyLimits.max_target_descriptors);
    w.U16(kCopyLimits.max_segment_descriptors);
    w.U32(kCopyLimits.max_descriptor_list_length);
    w.U32(static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{0xFFFF} * lu.block_size, 0xFFFFFFFFull)));  // segment
    w.U32(kCopyLimits.max_inline_data_length);
    w.U32(0);  // HELD DATA LIMIT: no RECEIVE DATA
    w.U32(0);  // MAXIMUM STREAM DEVICE TRANSFER SIZE
    w.U16(0);
    w.U16(0);  // TOTAL CONCURRENT COPIES: not limited beyond the task set
    w.U8(0);   // MAXIMUM CONCURRENT COPIES
    w.U8(granularity);  // DATA SEGMENT GRANULARITY (log2 bytes)
    w.U8(0);            // INLINE DATA GRANULARITY
    w.U8(0);            // HELD DATA GRANULARITY
    w.Zeros(3);
    w.U8(sizeof(implemented));
    for (uint8_t code : implemented) w.U8(code);
    PutBe32(&d[0], static_cast<uint32_t>(d.size() - 4));
  }
  if (d.size() > allocation) d.resize(allocation);
  CompleteData(cmd, std::move(d));
}

}  // namespace scsi
