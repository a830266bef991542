// The self-describing block format of verifyload, the verifying load
// generator.
//
// Every block verifyload writes starts with a 48-byte header (magic, the LBA
// the block was written to, the generation of the write command, the block's
// index in that command, the command's block count, the block size and a
// CRC32C over the whole block); the rest of the block is a pseudo-random fill
// derived from (generation, lba). A block read back can therefore say on its
// own which write put it there and whether it is intact, so verification
// needs no copy of the data, only the ledger of generations (ledger.h).
//
// A generation is 64 bits: a 24-bit run id (random per load run) above a
// 40-bit sequence number that increases with every write command of the run,
// so generations of one run are ordered and two runs never collide.
#ifndef TOOLS_VERIFYLOAD_BLOCK_FORMAT_H_
#define TOOLS_VERIFYLOAD_BLOCK_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/types/span.h"

namespace verifyload {

inline constexpr uint64_t kBlockMagic = 0x314b4c4244524c56ULL;  // "VLRDBLK1"
inline constexpr size_t kHeaderSize = 48;
// Smallest block the format fits in (the header plus some fill).
inline constexpr uint32_t kMinBlockSize = 64;

inline constexpr int kRunIdBits = 24;
inline constexpr int kSequenceBits = 40;
inline constexpr uint64_t kRunIdMask = (uint64_t{1} << kRunIdBits) - 1;
inline constexpr uint64_t kSequenceMask = (uint64_t{1} << kSequenceBits) - 1;

// run_id is taken modulo 2^24, sequence modulo 2^40.
inline uint64_t MakeGeneration(uint64_t run_id, uint64_t sequence) {
  return ((run_id & kRunIdMask) << kSequenceBits) | (sequence & kSequenceMask);
}
inline uint64_t RunIdOf(uint64_t generation) {
  return generation >> kSequenceBits;
}
inline uint64_t SequenceOf(uint64_t generation) {
  return generation & kSequenceMask;
}

struct BlockHeader {
  uint64_t lba = 0;
  uint64_t generation = 0;
  uint32_t index = 0;  // position of this block in its write command
  uint32_t count = 0;  // blocks in that write command
};

// Fills block (its whole size is the block size, >= kMinBlockSize) with the
// header and the fill for (header.generation, header.lba).
void EncodeBlock(const BlockHeader& header, absl::Span<uint8_t> block);

enum class BlockKind {
  kZero,        // every byte is zero (never written, or zeroed)
  kForeign,     // no verifyload magic, or a header that cannot be ours
  kBadCrc,      // verifyload magic, but the CRC does not match
  kBadPayload,  // CRC matches but the fill is not the one of (gen, lba)
  kValid,       // intact; header says which write put it there
};

struct DecodedBlock {
  BlockKind kind = BlockKind::kForeign;
  // Parsed from the block whenever it carries the magic (also for kBadCrc and
  // kBadPayload, where it is untrusted).
  BlockHeader header;
};

DecodedBlock DecodeBlock(absl::Span<const uint8_t> block);

const char* BlockKindName(BlockKind kind);

// "0x<run>:<sequence>", how generations appear in messages.
std::string GenerationString(uint64_t generation);

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_BLOCK_FORMAT_H_
