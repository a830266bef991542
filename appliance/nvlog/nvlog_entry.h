// NVLOG entries and the checks both ends of the mirror apply to them.
//
// An NvlogEntry is one write the owner of a LUN logged before acknowledging
// it: where it goes (LUN, LBA, block count), its data, and two states:
//   committed  the owner promised it to the host (it must survive a takeover)
//   retired    its data reached stable storage on the owner (no longer needed)
// Sequence numbers are assigned by the owner, start at 1 and have no gaps.
#ifndef APPLIANCE_NVLOG_NVLOG_ENTRY_H_
#define APPLIANCE_NVLOG_NVLOG_ENTRY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "interconnect/nvlog.pb.h"

namespace nvlog {

struct NvlogEntry {
  uint64_t sequence = 0;
  uint64_t lun = 0;
  uint64_t lba = 0;
  uint32_t block_count = 0;
  std::string data;  // block_count * block size bytes
  bool fua = false;
  bool committed = false;
  bool retired = false;
};

// Limits on what one entry may look like (both ends check them).
struct EntryLimits {
  // Largest data of one entry (a SCSI write never moves more than the
  // interconnect's data-transfer limit, 16 MiB).
  size_t max_entry_bytes = 16u * 1024 * 1024;
  // Largest LBA + block_count accepted (LUNs are at most 2^48 blocks).
  uint64_t max_lba_end = uint64_t{1} << 48;
};

// Whether (block_count, data size) describe whole blocks of 512 or 4096 bytes
// within limits, and lba + block_count stays below limits.max_lba_end.
absl::Status ValidateShape(uint64_t lba, uint32_t block_count,
                           size_t data_bytes, const EntryLimits& limits);

// Validates every field of a record received from a peer (shape, sequence
// > 0, known flag bits).
absl::Status ValidateRecord(const interconnect::NvlogRecord& record,
                            const EntryLimits& limits);

// Checks that entries (any order) hold every sequence between their lowest
// and highest, and, when expect_first != 0, that the lowest is expect_first.
// FailedPrecondition names the first missing range. Duplicates are an error.
absl::Status CheckNoGap(absl::Span<const NvlogEntry> entries,
                        uint64_t expect_first = 0);

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_NVLOG_ENTRY_H_
