// EXTENDED COPY (LID1) parameter list parsing (SPC-4 6.4): a pure function
// over the data-out bytes, so every malformed list maps to one precise sense
// value without touching storage. The engine resolves the parsed copy target
// descriptors to its logical units and runs the segments.
//
// Supported: identification descriptor CSCD descriptors (0xE4) naming block
// devices, and block-to-block segment descriptors (0x02). No inline or
// embedded data, no held data for RECEIVE DATA.
#ifndef TARGET_SCSI_EXTENDED_COPY_H_
#define TARGET_SCSI_EXTENDED_COPY_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"
#include "target/scsi/sense.h"

namespace scsi {

// What this copy manager accepts; reported by RECEIVE COPY RESULTS
// (OPERATING PARAMETERS).
struct CopyLimits {
  uint16_t max_target_descriptors = 8;
  uint16_t max_segment_descriptors = 16;
  uint32_t max_descriptor_list_length = 1024;
  uint32_t max_inline_data_length = 0;
};

inline constexpr uint8_t kIdentificationTargetDescriptor = 0xE4;
inline constexpr uint8_t kBlockToBlockSegmentDescriptor = 0x02;
inline constexpr size_t kCopyParameterHeaderLength = 16;
inline constexpr size_t kTargetDescriptorLength = 32;
inline constexpr size_t kBlockToBlockSegmentLength = 28;

// LIST ID USAGE (parameter list byte 1, bits 4:3).
enum class ListIdUsage : uint8_t {
  kHold = 0,     // keep the copy status until RECEIVE COPY RESULTS reads it
  kDiscard = 2,  // no status is kept after completion
  kNone = 3,     // no list identifier (LIST IDENTIFIER must be 0)
};

// A copy target named by a designation descriptor (VPD 0x83 format).
struct CopyTarget {
  uint8_t code_set = 0;
  uint8_t association = 0;
  uint8_t designator_type = 0;
  std::vector<uint8_t> designator;
  uint32_t block_size = 0;  // DISK BLOCK LENGTH
  uint16_t offset = 0;      // of the descriptor in the parameter list
};

struct BlockCopySegment {
  uint16_t source = 0;       // index into targets
  uint16_t destination = 0;  // index into targets
  bool destination_count = false;  // DC: blocks are destination blocks
  uint32_t blocks = 0;
  uint64_t source_lba = 0;
  uint64_t destination_lba = 0;
  uint16_t offset = 0;  // of the descriptor in the parameter list
};

struct CopyParameterList {
  uint8_t list_id = 0;
  ListIdUsage usage = ListIdUsage::kHold;
  std::vector<CopyTarget> targets;
  std::vector<BlockCopySegment> segments;
};

struct CopyParseResult {
  std::optional<SenseData> error;  // set: CHECK CONDITION with this sense
  CopyParameterList list;
};

// Parses an EXTENDED COPY(LID1) parameter list of data.size() bytes (the
// PARAMETER LIST LENGTH; callers handle length 0, which copies nothing).
CopyParseResult ParseExtendedCopyLid1(absl::Span<const uint8_t> data,
                                      const CopyLimits& limits);

// COPY ABORTED with a segment pointer (SD=0: byte offset into the parameter
// list).
SenseData CopyAborted(Asc code, std::optional<uint16_t> parameter_byte = {});

}  // namespace scsi

#endif  // TARGET_SCSI_EXTENDED_COPY_H_
