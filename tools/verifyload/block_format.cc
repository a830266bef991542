#include "tools/verifyload/block_format.h"

#include <isa-l.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"

namespace verifyload {
namespace {

// Header layout (little-endian):
//   0 magic u64 | 8 lba u64 | 16 generation u64 | 24 index u32 | 28 count u32
//   32 block size u32 | 36 crc32c u32 | 40 reserved u64 (zero) | 48 fill
constexpr size_t kMagicOffset = 0;
constexpr size_t kLbaOffset = 8;
constexpr size_t kGenerationOffset = 16;
constexpr size_t kIndexOffset = 24;
constexpr size_t kCountOffset = 28;
constexpr size_t kBlockSizeOffset = 32;
constexpr size_t kCrcOffset = 36;
constexpr size_t kReservedOffset = 40;
static_assert(kReservedOffset + 8 == kHeaderSize, "header layout");

void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t Crc32cUpdate(uint32_t crc, const uint8_t* data, size_t size) {
  if (size == 0) return crc;
  return crc32_iscsi(const_cast<uint8_t*>(data), static_cast<int>(size), crc);
}

// CRC32C of the block with the CRC field taken as zero.
uint32_t BlockCrc(absl::Span<const uint8_t> block) {
  static constexpr uint8_t kZeros[4] = {0, 0, 0, 0};
  uint32_t crc = 0xffffffffu;
  crc = Crc32cUpdate(crc, block.data(), kCrcOffset);
  crc = Crc32cUpdate(crc, kZeros, sizeof(kZeros));
  crc = Crc32cUpdate(crc, block.data() + kCrcOffset + 4,
                     block.size() - kCrcOffset - 4);
  return ~crc;
}

// SplitMix64: a fast generator whose whole state is one word, so the fill is
// a pure function of its seed.
uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void Fill(uint64_t generation, uint64_t lba, absl::Span<uint8_t> out) {
  uint64_t state = generation ^ (lba * 0xd6e8feb86659fd93ULL) ^ kBlockMagic;
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) Put64(out.data() + i, SplitMix64(state));
  if (i < out.size()) {
    uint8_t last[8];
    Put64(last, SplitMix64(state));
    std::copy(last, last + (out.size() - i), out.data() + i);
  }
}

}  // namespace

void EncodeBlock(const BlockHeader& header, absl::Span<uint8_t> block) {
  uint8_t* p = block.data();
  Put64(p + kMagicOffset, kBlockMagic);
  Put64(p + kLbaOffset, header.lba);
  Put64(p + kGenerationOffset, header.generation);
  Put32(p + kIndexOffset, header.index);
  Put32(p + kCountOffset, header.count);
  Put32(p + kBlockSizeOffset, static_cast<uint32_t>(block.size()));
  Put32(p + kCrcOffset, 0);
  Put64(p + kReservedOffset, 0);
  Fill(header.generation, header.lba, block.subspan(kHeaderSize));
  Put32(p + kCrcOffset, BlockCrc(block));
}

DecodedBlock DecodeBlock(absl::Span<const uint8_t> block) {
  DecodedBlock out;
  if (std::all_of(block.begin(), block.end(),
                  [](uint8_t b) { return b == 0; })) {
    out.kind = BlockKind::kZero;
    return out;
  }
  if (block.size() < kMinBlockSize) return out;  // kForeign
  const uint8_t* p = block.data();
  if (Get64(p + kMagicOffset) != kBlockMagic) return out;
  out.header.lba = Get64(p + kLbaOffset);
  out.header.generation = Get64(p + kGenerationOffset);
  out.header.index = Get32(p + kIndexOffset);
  out.header.count = Get32(p + kCountOffset);
  if (Get32(p + kCrcOffset) != BlockCrc(block)) {
    out.kind = BlockKind::kBadCrc;
    return out;
  }
  // An intact header written for another block size (the LUN was recreated)
  // or with impossible fields is not one of ours.
  if (Get32(p + kBlockSizeOffset) != block.size() ||
      Get64(p + kReservedOffset) != 0 || out.header.count == 0 ||
      out.header.index >= out.header.count) {
    out.kind = BlockKind::kForeign;
    return out;
  }
  std::vector<uint8_t> expected(block.size() - kHeaderSize);
  Fill(out.header.generation, out.header.lba, absl::MakeSpan(expected));
  out.kind = std::equal(expected.begin(), expected.end(), p + kHeaderSize)
                 ? BlockKind::kValid
                 : BlockKind::kBadPayload;
  return out;
}

const char* BlockKindName(BlockKind kind) {
  switch (kind) {
    case BlockKind::kZero:
      return "zeros";
    case BlockKind::kForeign:
      return "not a verifyload block";
    case BlockKind::kBadCrc:
      return "bad CRC";
    case BlockKind::kBadPayload:
      return "fill does not match its header";
    case BlockKind::kValid:
      return "valid";
  }
  return "?";
}

std::string GenerationString(uint64_t generation) {
  return absl::StrFormat("%06x:%d", RunIdOf(generation),
                         SequenceOf(generation));
}

}  // namespace verifyload
