// EXTENDED COPY (LID1) parameter list parser: byte vectors in, one precise
// sense out for each malformed list; and the copy manager in the engine:
// copies between LUs, RECEIVE COPY RESULTS, errors.
#include "target/scsi/extended_copy.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/bytes.h"
#include "target/scsi/engine.h"
#include "tests/fakes/memory_block_store.h"
#include "tests/scsi/engine_harness.h"

namespace scsi {
namespace {

using fakes::MemoryBlockStore;
using testing::ExpectInvalidField;
using testing::Harness;

constexpr char kNaaA[] = "600a0980383133324c5d4a2f4f4f4f41";
constexpr char kNaaB[] = "600a0980383133324c5d4a2f4f4f4f42";

// Builders for LID1 parameter lists (SPC-4 6.4).
std::vector<uint8_t> TargetDescriptor(const char* naa_hex, uint32_t block_size = 512,
                                      uint8_t type = 0xE4) {
  std::vector<uint8_t> d(32, 0);
  d[0] = type;
  d[4] = 0x01;  // binary
  d[5] = 0x03;  // association LU, NAA
  const auto naa = HexToBytes(naa_hex);
  d[7] = static_cast<uint8_t>(naa.size());
  std::copy(naa.begin(), naa.end(), d.begin() + 8);
  PutBe24(&d[29], block_size);
  return d;
}

std::vector<uint8_t> BlockSegment(uint16_t src, uint16_t dst, uint16_t blocks,
                                  uint64_t src_lba, uint64_t dst_lba) {
  std::vector<uint8_t> d(28, 0);
  d[0] = 0x02;
  PutBe16(&d[2], 24);
  PutBe16(&d[4], src);
  PutBe16(&d[6], dst);
  PutBe16(&d[10], blocks);
  PutBe64(&d[12], src_lba);
  PutBe64(&d[20], dst_lba);
  return d;
}

std::vector<uint8_t> ParameterList(uint8_t list_id, uint8_t usage,
                                   const std::vector<std::vector<uint8_t>>& targets,
                                   const std::vector<std::vector<uint8_t>>& segments) {
  std::vector<uint8_t> p(16, 0);
  p[0] = list_id;
  p[1] = static_cast<uint8_t>(usage << 3);
  size_t tl = 0, sl = 0;
  for (const auto& t : targets) {
    p.insert(p.end(), t.begin(), t.end());
    tl += t.size();
  }
  for (const auto& s : segments) {
    p.insert(p.end(), s.begin(), s.end());
    sl += s.size();
  }
  PutBe16(&p[2], static_cast<uint16_t>(tl));
  PutBe32(&p[8], static_cast<uint32_t>(sl));
  return p;
}

SenseData ParseError(const std::vector<uint8_t>& p, CopyLimits limits = {}) {
  auto r = ParseExtendedCopyLid1(p, limits);
  EXPECT_TRUE(r.error.has_value());
  return r.error.value_or(SenseData{});
}

TEST(ExtendedCopyParserTest, ParsesTargetsAndSegments) {
  auto p = ParameterList(7, 0, {TargetDescriptor(kNaaA), TargetDescriptor(kNaaB, 4096)},
                         {BlockSegment(0, 1, 16, 100, 200)});
  auto r = ParseExtendedCopyLid1(p, {});
  ASSERT_FALSE(r.error.has_value()) << r.error->ToString();
  EXPECT_EQ(r.list.list_id, 7);
  EXPECT_EQ(r.list.usage, ListIdUsage::kHold);
  ASSERT_EQ(r.list.targets.size(), 2u);
  EXPECT_EQ(r.list.targets[0].designator, HexToBytes(kNaaA));
  EXPECT_EQ(r.list.targets[0].designator_type, 3);
  EXPECT_EQ(r.list.targets[1].block_size, 4096u);
  EXPECT_EQ(r.list.targets[1].offset, 48);
  ASSERT_EQ(r.list.segments.size(), 1u);
  const auto& s = r.list.segments[0];
  EXPECT_EQ(s.source, 0);
  EXPECT_EQ(s.destination, 1);
  EXPECT_EQ(s.blocks, 16u);
  EXPECT_EQ(s.source_lba, 100u);
  EXPECT_EQ(s.destination_lba, 200u);
  EXPECT_EQ(s.offset, 80);
}

TEST(ExtendedCopyParserTest, LengthErrors) {
  auto p = ParameterList(1, 0, {TargetDescriptor(kNaaA)}, {BlockSegment(0, 0, 1, 0, 1)});
  // Shorter than the header; header lengths beyond the list (truncated target
  // or segment descriptor).
  EXPECT_EQ(ParseError({p.begin(), p.begin() + 15}).code, asc::kParameterListLengthError);
  EXPECT_EQ(ParseError({p.begin(), p.begin() + 47}).code, asc::kParameterListLengthError);
  EXPECT_EQ(ParseError({p.begin(), p.end() - 1}).code, asc::kParameterListLengthError);
  // Descriptor lists beyond MAXIMUM DESCRIPTOR LIST LENGTH.
  CopyLimits small;
  small.max_descriptor_list_length = 59;
  EXPECT_EQ(ParseError(p, small).code, asc::kParameterListLengthError);
  // Inline data is not supported.
  auto inline_data = p;
  PutBe32(&inline_data[12], 4);
  inline_data.resize(inline_data.size() + 4);
  auto s = ParseError(inline_data);
  EXPECT_EQ(s.code, asc::kInlineDataLengthExceeded);
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 12, {}}));
}

TEST(ExtendedCopyParserTest, DescriptorErrorsPointAtTheField) {
  auto s = ParseError(ParameterList(1, 0, {TargetDescriptor(kNaaA, 512, 0xE0)},
                                    {BlockSegment(0, 0, 1, 0, 1)}));
  EXPECT_EQ(s.code, asc::kUnsupportedTargetDescriptorTypeCode);
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 16, {}}));
  auto stream = BlockSegment(0, 0, 1, 0, 1);
  stream[0] = 0x03;
  s = ParseError(ParameterList(1, 0, {TargetDescriptor(kNaaA)}, {stream}));
  EXPECT_EQ(s.code, asc::kUnsupportedSegmentDescriptorTypeCode);
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 48, {}}));
  // Too many descriptors of either kind.
  CopyLimits limits;
  limits.max_target_descriptors = 1;
  limits.max_segment_descriptors = 1;
  EXPECT_EQ(ParseError(ParameterList(1, 0, {TargetDescriptor(kNaaA), TargetDescriptor(kNaaB)},
                                     {BlockSegment(0, 1, 1, 0, 1)}),
                       limits)
                .code,
            asc::kTooManyTargetDescriptors);
  EXPECT_EQ(ParseError(ParameterList(1, 0, {TargetDescriptor(kNaaA)},
                                     {BlockSegment(0, 0, 1, 0, 1), BlockSegment(0, 0, 1, 0, 1)}),
                       limits)
                .code,
            asc::kTooManySegmentDescriptors);
  // LIST ID USAGE 01b is reserved; 11b needs LIST IDENTIFIER 0.
  s = ParseError(ParameterList(1, 1, {TargetDescriptor(kNaaA)}, {}));
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 1, 4}));
  s = ParseError(ParameterList(1, 3, {TargetDescriptor(kNaaA)}, {}));
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 0, {}}));
  // Non-block copy targets.
  auto tape = TargetDescriptor(kNaaA);
  tape[1] = 0x01;
  s = ParseError(ParameterList(1, 0, {tape}, {}));
  EXPECT_EQ(s.field_pointer, (FieldPointer{false, 17, 4}));
}

// --- The copy manager in the engine ------------------------------------------

class CopyManagerTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override {
    MemoryBlockStore::Options o;
    o.num_blocks = 4096;
    o.identity = {kNaaA, "SER-A", "uuid-a"};
    a_store_ = std::make_shared<MemoryBlockStore>(o);
    o.identity = {kNaaB, "SER-B", "uuid-b"};
    b_store_ = std::make_shared<MemoryBlockStore>(o);
    engine_ = std::move(*Engine::Create());
    ASSERT_TRUE(engine_->AddLogicalUnit(0, a_store_).ok());
    ASSERT_TRUE(engine_->AddLogicalUnit(1, b_store_).ok());
    ClearUas(*engine_, a_, 0);
    ClearUas(*engine_, a_, 1);
  }
  TaskResponse Xcopy(const std::vector<uint8_t>& params) {
    std::vector<uint8_t> cdb(16, 0);
    cdb[0] = 0x83;
    PutBe32(&cdb[10], static_cast<uint32_t>(params.size()));
    return Exec(*engine_, cdb, params, a_, 0);
  }
  TaskResponse ReceiveCopyResults(uint8_t service_action, uint8_t list_id) {
    std::vector<uint8_t> cdb(16, 0);
    cdb[0] = 0x84;
    cdb[1] = service_action;
    cdb[2] = list_id;
    PutBe32(&cdb[10], 1024);
    return Exec(*engine_, cdb, {}, a_, 0);
  }
  static std::vector<uint8_t> Pattern(size_t bytes, uint8_t seed) {
    std::vector<uint8_t> v(bytes);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(seed + i * 13);
    return v;
  }

  std::shared_ptr<MemoryBlockStore> a_store_, b_store_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(CopyManagerTest, CopiesBetweenLogicalUnitsAndReportsStatusOnce) {
  const auto data = Pattern(3000 * 512, 5);  // more than one 1 MiB chunk
  a_store_->Poke(10, data);
  EXPECT_GOOD(Xcopy(ParameterList(
      4, 0, {TargetDescriptor(kNaaA), TargetDescriptor(kNaaB)},
      {BlockSegment(0, 1, 3000, 10, 20), BlockSegment(1, 0, 8, 20, 4000)})));
  EXPECT_EQ(b_store_->Peek(20, 3000), data);
  EXPECT_EQ(a_store_->Peek(4000, 8), std::vector<uint8_t>(data.begin(), data.begin() + 8 * 512));

  auto r = ReceiveCopyResults(0x00, 4);
  EXPECT_GOOD(r);
  std::vector<uint8_t> e = {0, 0, 0, 8, 0x01, 0, 2, 0, 0, 0, 0, 0};
  PutBe32(&e[8], 3008 * 512);
  EXPECT_EQ(r.data_in, e);
  // Reported once; other list identifiers were never used.
  ExpectInvalidField(ReceiveCopyResults(0x00, 4), 2);
  ExpectInvalidField(ReceiveCopyResults(0x00, 5), 2);
  // LIST ID USAGE 10b: nothing is held.
  EXPECT_GOOD(Xcopy(ParameterList(6, 2, {TargetDescriptor(kNaaA)}, {BlockSegment(0, 0, 1, 0, 1)})));
  ExpectInvalidField(ReceiveCopyResults(0x00, 6), 2);
  // An empty parameter list copies nothing.
  EXPECT_GOOD(Xcopy({}));
}

TEST_F(CopyManagerTest, HeldStatusIsDroppedOnNexusLoss) {
  EXPECT_GOOD(Xcopy(ParameterList(9, 0, {TargetDescriptor(kNaaA)}, {BlockSegment(0, 0, 1, 0, 1)})));
  TmfRequest loss;
  loss.nexus = a_;
  loss.function = TmfFunction::kItNexusLoss;
  engine_->ManageTasks(loss, [](TmfResult) {});
  ClearUas(*engine_, a_, 0);
  ExpectInvalidField(ReceiveCopyResults(0x00, 9), 2);
}

TEST_F(CopyManagerTest, CopyErrors) {
  // A designator no LU of this engine has: the copy target is unreachable.
  auto r = Xcopy(ParameterList(1, 0, {TargetDescriptor("600a0980383133324c5d4a2f4f4f4fff")},
                               {BlockSegment(0, 0, 1, 0, 1)}));
  EXPECT_SENSE(r, SenseKey::kCopyAborted, asc::kUnreachableCopyTarget);
  EXPECT_EQ(r.sense[15], 0x80);  // SKSV, SD=0: offset into the parameter list
  EXPECT_EQ(GetBe16(&r.sense[16]), 16);
  // A segment naming a target descriptor that is not there.
  r = Xcopy(ParameterList(1, 0, {TargetDescriptor(kNaaA)}, {BlockSegment(0, 1, 1, 0, 1)}));
  EXPECT_SENSE(r, SenseKey::kCopyAborted, asc::kUnreachableCopyTarget);
  EXPECT_EQ(GetBe16(&r.sense[16]), 48 + 6);
  // Beyond the destination's capacity: nothing is written.
  a_store_->Poke(0, Pattern(512, 1));
  r = Xcopy(ParameterList(1, 0, {TargetDescriptor(kNaaA), TargetDescriptor(kNaaB)},
                          {BlockSegment(0, 1, 2, 0, 4095)}));
  EXPECT_SENSE(r, SenseKey::kCopyAborted, asc::kNoAdditionalSenseInformation);
  EXPECT_EQ(GetBe16(&r.sense[16]), 80 + 20);
  EXPECT_FALSE(b_store_->IsMapped(4095));
  // DISK BLOCK LENGTH must be the LU's.
  ExpectInvalidField(Xcopy(ParameterList(1, 0, {TargetDescriptor(kNaaA, 4096)}, {})), 16 + 29,
                     std::nullopt, /*in_cdb=*/false);
  // Data-out shorter than PARAMETER LIST LENGTH.
  std::vector<uint8_t> cdb(16, 0);
  cdb[0] = 0x83;
  PutBe32(&cdb[10], 100);
  EXPECT_EQ(Exec(*engine_, cdb, std::vector<uint8_t>(50, 0), a_, 0).status,
            ScsiStatus::kCheckCondition);
}

TEST_F(CopyManagerTest, OperatingParametersAndInquiry) {
  auto r = ReceiveCopyResults(0x03, 0);
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 46u);
  EXPECT_EQ(GetBe32(&r.data_in[0]), 42u);
  EXPECT_EQ(r.data_in[4], 0x01);                    // SNLID
  EXPECT_EQ(GetBe16(&r.data_in[8]), 8);             // max target descriptors
  EXPECT_EQ(GetBe16(&r.data_in[10]), 16);           // max segment descriptors
  EXPECT_EQ(GetBe32(&r.data_in[12]), 1024u);        // max descriptor list length
  EXPECT_EQ(GetBe32(&r.data_in[16]), 0xFFFFu * 512);  // max segment length
  EXPECT_EQ(r.data_in[37], 9);                      // data segment granularity 2^9
  EXPECT_EQ(r.data_in[43], 2);
  EXPECT_EQ(r.data_in[44], 0x02);
  EXPECT_EQ(r.data_in[45], 0xE4);
  // INQUIRY says 3PC.
  r = Exec(*engine_, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 0);
  EXPECT_EQ(r.data_in[5] & 0x08, 0x08);
}

}  // namespace
}  // namespace scsi
