#include "appliance/nvlog/nvlog_entry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace nvlog {

absl::Status ValidateShape(uint64_t lba, uint32_t block_count,
                           size_t data_bytes, const EntryLimits& limits) {
  if (block_count == 0) return absl::InvalidArgumentError("block_count is 0");
  if (data_bytes == 0 || data_bytes > limits.max_entry_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry of ", data_bytes, " bytes (limit ",
                     limits.max_entry_bytes, ")"));
  }
  if (data_bytes % block_count != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        data_bytes, " bytes are not ", block_count, " whole blocks"));
  }
  const size_t block_size = data_bytes / block_count;
  if (block_size != 512 && block_size != 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", block_size, " is neither 512 nor 4096"));
  }
  if (lba >= limits.max_lba_end || block_count > limits.max_lba_end - lba) {
    return absl::InvalidArgumentError(
        absl::StrCat("LBA range ", lba, "+", block_count, " out of range"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRecord(const interconnect::NvlogRecord& record,
                            const EntryLimits& limits) {
  if (record.sequence() == 0) {
    return absl::InvalidArgumentError("record sequence 0");
  }
  constexpr uint32_t kKnownFlags =
      interconnect::NVLOG_RECORD_COMMITTED | interconnect::NVLOG_RECORD_FUA;
  if ((record.flags() & ~kKnownFlags) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("record ", record.sequence(), ": unknown flags ",
                     record.flags()));
  }
  absl::Status s = ValidateShape(record.lba(), record.block_count(),
                                 record.data().size(), limits);
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("record ", record.sequence(), ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckNoGap(absl::Span<const NvlogEntry> entries,
                        uint64_t expect_first) {
  std::vector<uint64_t> seqs;
  seqs.reserve(entries.size());
  for (const NvlogEntry& e : entries) seqs.push_back(e.sequence);
  std::sort(seqs.begin(), seqs.end());
  if (seqs.empty()) return absl::OkStatus();
  if (expect_first != 0 && seqs.front() != expect_first) {
    return absl::FailedPreconditionError(
        absl::StrCat("NVLOG gap: sequences ", expect_first, "..",
                     seqs.front() - 1, " missing"));
  }
  for (size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] == seqs[i - 1]) {
      return absl::FailedPreconditionError(
          absl::StrCat("NVLOG sequence ", seqs[i], " appears twice"));
    }
    if (seqs[i] != seqs[i - 1] + 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("NVLOG gap: sequences ", seqs[i - 1] + 1, "..",
                       seqs[i] - 1, " missing"));
    }
  }
  return absl::OkStatus();
}

}  // namespace nvlog
