// The self-describing block: what is written decodes to the same header, and
// zeros, damage and foreign data are told apart.
#include "tools/verifyload/block_format.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace verifyload {
namespace {

std::vector<uint8_t> Block(uint32_t size, uint64_t lba, uint64_t generation,
                           uint32_t index = 0, uint32_t count = 1) {
  std::vector<uint8_t> block(size);
  BlockHeader h;
  h.lba = lba;
  h.generation = generation;
  h.index = index;
  h.count = count;
  EncodeBlock(h, absl::MakeSpan(block));
  return block;
}

TEST(GenerationTest, PacksRunIdAboveSequence) {
  const uint64_t g = MakeGeneration(0xabcdef, 12345);
  EXPECT_EQ(RunIdOf(g), 0xabcdefu);
  EXPECT_EQ(SequenceOf(g), 12345u);
  EXPECT_LT(MakeGeneration(0xabcdef, 1), MakeGeneration(0xabcdef, 2));
  EXPECT_NE(MakeGeneration(1, 7), MakeGeneration(2, 7));
  EXPECT_EQ(GenerationString(g), "abcdef:12345");
}

class BlockFormatTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(BlockFormatTest, EncodedBlockDecodesToItsHeader) {
  const uint32_t size = GetParam();
  const uint64_t gen = MakeGeneration(0x123456, 99);
  std::vector<uint8_t> block = Block(size, 4242, gen, 3, 8);
  DecodedBlock d = DecodeBlock(block);
  EXPECT_EQ(d.kind, BlockKind::kValid);
  EXPECT_EQ(d.header.lba, 4242u);
  EXPECT_EQ(d.header.generation, gen);
  EXPECT_EQ(d.header.index, 3u);
  EXPECT_EQ(d.header.count, 8u);
}

TEST_P(BlockFormatTest, FillDependsOnGenerationAndLba) {
  const uint32_t size = GetParam();
  const uint64_t gen = MakeGeneration(1, 1);
  EXPECT_EQ(Block(size, 10, gen), Block(size, 10, gen));  // deterministic
  std::vector<uint8_t> a = Block(size, 10, gen);
  std::vector<uint8_t> b = Block(size, 11, gen);
  std::vector<uint8_t> c = Block(size, 10, MakeGeneration(1, 2));
  // Compare the fill only (past the 48-byte header).
  EXPECT_NE(std::vector<uint8_t>(a.begin() + kHeaderSize, a.end()),
            std::vector<uint8_t>(b.begin() + kHeaderSize, b.end()));
  EXPECT_NE(std::vector<uint8_t>(a.begin() + kHeaderSize, a.end()),
            std::vector<uint8_t>(c.begin() + kHeaderSize, c.end()));
}

TEST_P(BlockFormatTest, ZerosAreZeros) {
  std::vector<uint8_t> block(GetParam(), 0);
  EXPECT_EQ(DecodeBlock(block).kind, BlockKind::kZero);
}

TEST_P(BlockFormatTest, AnyFlippedBitBreaksTheCrc) {
  const uint32_t size = GetParam();
  const std::vector<uint8_t> good = Block(size, 7, MakeGeneration(5, 5));
  // A bit in the LBA field, the generation, the fill, and the last byte.
  for (size_t offset : {size_t{8}, size_t{20}, size_t{100}, size_t{size - 1}}) {
    std::vector<uint8_t> bad = good;
    bad[offset] ^= 0x10;
    EXPECT_EQ(DecodeBlock(bad).kind, BlockKind::kBadCrc) << offset;
  }
}

TEST_P(BlockFormatTest, OtherDataIsForeign) {
  std::vector<uint8_t> block(GetParam());
  for (size_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<uint8_t>(i * 7 + 1);
  EXPECT_EQ(DecodeBlock(block).kind, BlockKind::kForeign);
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, BlockFormatTest,
                         ::testing::Values(512u, 4096u));

TEST(BlockFormatTest, BlockOfAnotherSizeIsForeign) {
  // A 512-byte block written when the LUN had 512-byte blocks, read as the
  // first half of a 1024-byte block: not a valid block of this size.
  std::vector<uint8_t> small = Block(512, 1, MakeGeneration(1, 1));
  std::vector<uint8_t> big(1024, 0);
  std::copy(small.begin(), small.end(), big.begin());
  EXPECT_NE(DecodeBlock(big).kind, BlockKind::kValid);
}

}  // namespace
}  // namespace verifyload
