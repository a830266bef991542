// scsi::Engine through the TaskRouter interface: identification, unit
// attentions, data path, CDB validation and storage fault mapping.
#include "target/scsi/engine.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/fault_injecting_block_store.h"
#include "tests/fakes/manual_executor.h"
#include "tests/fakes/memory_block_store.h"
#include "tests/scsi/engine_harness.h"

namespace scsi {
namespace {

using fakes::BlockOp;
using fakes::FaultInjectingBlockStore;
using fakes::MemoryBlockStore;
using testing::ExpectInvalidField;
using testing::Harness;

constexpr uint64_t kBlocks = 8192;
constexpr uint32_t kBlockSize = 512;

class EngineTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override {
    MemoryBlockStore::Options o;
    o.block_size = kBlockSize;
    o.num_blocks = kBlocks;
    o.identity = {"600a0980383133324c5d4a2f4f4f4f41", "SER0001", "uuid"};
    memory_ = std::make_shared<MemoryBlockStore>(o);
    store_ = std::make_shared<FaultInjectingBlockStore>(memory_);
    auto engine = Engine::Create();
    ASSERT_TRUE(engine.ok());
    engine_ = std::move(*engine);
    // A 512-byte LU on 4 KiB media (LBPPBE 3), the case with the most to check.
    LogicalUnitOptions options;
    options.physical_block_bytes = 4096;
    ASSERT_TRUE(engine_->AddLogicalUnit(0, store_, options).ok());
  }

  TaskResponse Do(const std::vector<uint8_t>& cdb, std::vector<uint8_t> out = {},
                  uint32_t alloc = 1 << 20) {
    return Exec(*engine_, cdb, std::move(out), a_, 0, alloc);
  }
  // Runs after draining the power-on unit attention.
  TaskResponse DoClean(const std::vector<uint8_t>& cdb, std::vector<uint8_t> out = {},
                       uint32_t alloc = 1 << 20) {
    ClearUas(*engine_, a_);
    return Do(cdb, std::move(out), alloc);
  }
  static std::vector<uint8_t> Pattern(size_t blocks, uint8_t seed) {
    std::vector<uint8_t> v(blocks * kBlockSize);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
    return v;
  }

  std::shared_ptr<MemoryBlockStore> memory_;
  std::shared_ptr<FaultInjectingBlockStore> store_;
  std::unique_ptr<Engine> engine_;
};

// --- Unit attentions -------------------------------------------------------

TEST_F(EngineTest, FirstCommandAfterPowerOnGetsUnitAttentionOnce) {
  EXPECT_SENSE(Do(Cdb({0x00, 0, 0, 0, 0, 0})), SenseKey::kUnitAttention,
               asc::kPowerOnResetOrBusDeviceResetOccurred);
  EXPECT_GOOD(Do(Cdb({0x00, 0, 0, 0, 0, 0})));
}

TEST_F(EngineTest, InquiryAndReportLunsDoNotConsumeUnitAttention) {
  EXPECT_GOOD(Do(Cdb({0x12, 0, 0, 0, 96, 0})));
  EXPECT_GOOD(Do(Cdb({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0})));
  EXPECT_SENSE(Do(Cdb({0x00, 0, 0, 0, 0, 0})), SenseKey::kUnitAttention,
               asc::kPowerOnResetOrBusDeviceResetOccurred);
}

TEST_F(EngineTest, RequestSenseReportsAndClearsUnitAttention) {
  auto r = Do(Cdb({0x03, 0, 0, 0, 252, 0}));
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 18u);
  EXPECT_EQ(r.data_in[2], 0x06);
  EXPECT_EQ(r.data_in[12], 0x29);
  EXPECT_GOOD(Do(Cdb({0x00, 0, 0, 0, 0, 0})));
  // Nothing pending: NO SENSE, in descriptor format when DESC is set.
  r = Do(Cdb({0x03, 0x01, 0, 0, 252, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0x72, 0, 0, 0, 0, 0, 0, 0}));
}

TEST_F(EngineTest, UnitAttentionsArePerNexus) {
  ClearUas(*engine_, a_);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kPowerOnResetOrBusDeviceResetOccurred);
}

TEST_F(EngineTest, AddingLunReportsLunsChangedUntilReportLuns) {
  ClearUas(*engine_, a_);
  ClearUas(*engine_, b_);
  ASSERT_TRUE(engine_->AddLogicalUnit(5, std::make_shared<MemoryBlockStore>(
                                             MemoryBlockStore::Options{})).ok());
  EXPECT_SENSE(Do(Cdb({0x00, 0, 0, 0, 0, 0})), SenseKey::kUnitAttention,
               asc::kReportedLunsDataHasChanged);
  auto r = Exec(*engine_, Cdb({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), {}, b_);
  EXPECT_GOOD(r);
  const std::vector<uint8_t> expected = {0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 5, 0, 0,  0, 0, 0, 0};
  EXPECT_EQ(r.data_in, expected);
  // REPORT LUNS cleared B's pending UA.
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_));
  ASSERT_TRUE(engine_->RemoveLogicalUnit(5).ok());
  EXPECT_FALSE(engine_->RemoveLogicalUnit(5).ok());
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kReportedLunsDataHasChanged);
}

TEST_F(EngineTest, CapacityChangeRaisesUnitAttention) {
  ClearUas(*engine_, a_);
  memory_->Resize(kBlocks * 2);
  EXPECT_SENSE(Do(Cdb10(0x28, 0, 1)), SenseKey::kUnitAttention, asc::kCapacityDataHasChanged);
  auto r = Do(Cdb({0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(GetBe32(&r.data_in[0]), kBlocks * 2 - 1);
}

// --- INQUIRY ---------------------------------------------------------------

TEST_F(EngineTest, StandardInquiryIsByteExact) {
  auto r = Do(Cdb({0x12, 0, 0, 0, 255, 0}));
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 74u);
  const std::vector<uint8_t> head = {0x00, 0x00, 0x06, 0x12, 69, 0x18, 0x10, 0x02};
  EXPECT_EQ(std::vector<uint8_t>(r.data_in.begin(), r.data_in.begin() + 8), head);
  EXPECT_EQ(std::string(r.data_in.begin() + 8, r.data_in.begin() + 36),
            "APPLIANCSAN LUN         0001");
  const std::vector<uint8_t> versions = {0x00, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xC0};
  EXPECT_EQ(std::vector<uint8_t>(r.data_in.begin() + 58, r.data_in.begin() + 66), versions);
}

TEST_F(EngineTest, InquiryRespectsAllocationLength) {
  auto r = Do(Cdb({0x12, 0, 0, 0, 36, 0}), {}, 36);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in.size(), 36u);
  r = Do(Cdb({0x12, 0, 0, 0, 5, 0}), {}, 5);
  EXPECT_EQ(r.data_in.size(), 5u);
}

TEST_F(EngineTest, InquiryRejectsBadFields) {
  ExpectInvalidField(Do(Cdb({0x12, 0x02, 0, 0, 96, 0})), 1, 1);  // CMDDT
  ExpectInvalidField(Do(Cdb({0x12, 0x00, 0x80, 0, 96, 0})), 2);  // page without EVPD
  ExpectInvalidField(Do(Cdb({0x12, 0x01, 0x42, 0, 96, 0})), 2);  // unknown VPD page
}

TEST_F(EngineTest, VpdSupportedPagesAndSerial) {
  auto r = Do(Cdb({0x12, 1, 0x00, 0, 255, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in,
            (std::vector<uint8_t>{0, 0x00, 0, 7, 0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2}));
  r = Do(Cdb({0x12, 1, 0x80, 0, 255, 0}));
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0x80, 0, 7, 'S', 'E', 'R', '0', '0', '0', '1'}));
}

TEST_F(EngineTest, VpdDeviceIdentificationIsByteExact) {
  auto r = Do(Cdb({0x12, 1, 0x83, 0, 255, 0}));
  EXPECT_GOOD(r);
  std::vector<uint8_t> e = {0, 0x83, 0, 0};
  // NAA (LU)
  std::vector<uint8_t> naa = {0x01, 0x03, 0, 16, 0x60, 0x0a, 0x09, 0x80, 0x38, 0x31, 0x33, 0x32,
                              0x4c, 0x5d, 0x4a, 0x2f, 0x4f, 0x4f, 0x4f, 0x41};
  e.insert(e.end(), naa.begin(), naa.end());
  // T10 vendor ID (LU)
  std::vector<uint8_t> t10 = {0x02, 0x01, 0, 15};
  for (char c : std::string("APPLIANCSER0001")) t10.push_back(static_cast<uint8_t>(c));
  e.insert(e.end(), t10.begin(), t10.end());
  // Relative target port 1, target port group 1 (iSCSI, PIV, target port)
  std::vector<uint8_t> ports = {0x51, 0x94, 0, 4, 0, 0, 0, 1, 0x51, 0x95, 0, 4, 0, 0, 0, 1};
  e.insert(e.end(), ports.begin(), ports.end());
  auto name = [&](uint8_t assoc_type, const std::string& s) {
    std::vector<uint8_t> v(s.begin(), s.end());
    v.push_back(0);
    while (v.size() % 4) v.push_back(0);
    e.insert(e.end(), {0x53, assoc_type, 0, static_cast<uint8_t>(v.size())});
    e.insert(e.end(), v.begin(), v.end());
  };
  name(0x98, "iqn.2026-01.com.example:sanpair,t,0x0001");
  name(0xA8, "iqn.2026-01.com.example:sanpair");
  PutBe16(&e[2], static_cast<uint16_t>(e.size() - 4));
  EXPECT_EQ(r.data_in, e);
}

TEST_F(EngineTest, VpdBlockLimitsAndProvisioning) {
  auto r = Do(Cdb({0x12, 1, 0xB0, 0, 255, 0}));
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 64u);
  EXPECT_EQ(GetBe16(&r.data_in[2]), 0x3C);
  EXPECT_EQ(r.data_in[4], 0x01);                              // WSNZ
  EXPECT_EQ(r.data_in[5], 64);                                // max COMPARE AND WRITE
  EXPECT_EQ(GetBe32(&r.data_in[8]), 8u * 1024 * 1024 / 512);  // max transfer
  EXPECT_EQ(GetBe32(&r.data_in[20]), 1u << 20);               // max unmap LBAs
  EXPECT_EQ(GetBe32(&r.data_in[24]), 256u);                   // max unmap descriptors
  EXPECT_EQ(GetBe64(&r.data_in[36]), 8u * 1024 * 1024 / 512);  // max WRITE SAME
  r = Do(Cdb({0x12, 1, 0xB2, 0, 255, 0}));
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0}));
  r = Do(Cdb({0x12, 1, 0xB1, 0, 255, 0}));
  EXPECT_EQ(GetBe16(&r.data_in[4]), 1);  // non-rotating
  r = Do(Cdb({0x12, 1, 0x86, 0, 255, 0}));
  EXPECT_EQ(r.data_in[5], 0x01);  // SIMPSUP (task attributes not honoured by default)
  EXPECT_EQ(r.data_in[7], 0x01);  // LUICLR
}

// Like file-backed LUNs on 4 KiB-page filesystems, a 512-byte LU presents
// 4096-byte physical blocks, aligned at LBA 0; VPD 0xB0 says the same.
TEST_F(EngineTest, PhysicalBlockSizeIsReportedConsistently) {
  ClearUas(*engine_, a_);
  auto rc16 = Cdb16(0x9E, 0, 32, 0x10);
  auto r = Do(rc16);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[13] & 0x0F, 3);           // LBPPBE
  EXPECT_EQ(GetBe16(&r.data_in[14]) & 0x3FFF, 0);  // LOWEST ALIGNED LBA
  r = Do(Cdb({0x12, 1, 0xB0, 0, 255, 0}));
  EXPECT_EQ(GetBe16(&r.data_in[6]), 8);             // OPTIMAL TRANSFER GRANULARITY
  EXPECT_EQ(GetBe32(&r.data_in[28]), 8u);           // OPTIMAL UNMAP GRANULARITY
  EXPECT_EQ(GetBe32(&r.data_in[32]), 0x80000000u);  // UGAVALID, alignment 0
  // Unaligned deallocation inside one physical block is still accepted.
  for (uint64_t i = 1; i < 8; ++i) {
    EXPECT_GOOD(Do(Cdb16(0x93, i, static_cast<uint32_t>(8 - i), 0x09)));
  }
  // GET LBA STATUS stays per logical block: the first descriptor starts at
  // the requested LBA even inside a physical block (SBC-3 5.6).
  EXPECT_GOOD(Do(Cdb10(0x2A, 16, 16), Pattern(16, 1)));
  auto gls = Cdb16(0x9E, 17, 24, 0x12);
  r = Do(gls);
  EXPECT_GOOD(r);
  EXPECT_EQ(GetBe64(&r.data_in[8]), 17u);
  EXPECT_EQ(r.data_in[20], 0);  // mapped

  // A 4096-byte LU: one logical block per physical; a configured 512-byte
  // physical block on a 512-byte LU too, and the default (0: the logical
  // block size, as LIO fileio); a non power of two is refused.
  MemoryBlockStore::Options o;
  o.block_size = 4096;
  o.num_blocks = 64;
  ASSERT_TRUE(engine_->AddLogicalUnit(1, std::make_shared<MemoryBlockStore>(o)).ok());
  LogicalUnitOptions same;
  same.physical_block_bytes = 512;
  ASSERT_TRUE(engine_->AddLogicalUnit(2, memory_, same).ok());
  LogicalUnitOptions odd;
  odd.physical_block_bytes = 3000;
  EXPECT_FALSE(engine_->AddLogicalUnit(3, memory_, odd).ok());
  ASSERT_TRUE(engine_->AddLogicalUnit(4, memory_).ok());
  EXPECT_EQ(LogicalUnitOptions{}.physical_block_bytes, 0u);
  for (uint64_t lun : {1, 2, 4}) {
    ClearUas(*engine_, a_, lun);
    r = Exec(*engine_, rc16, {}, a_, lun);
    EXPECT_GOOD(r);
    EXPECT_EQ(r.data_in[13], 0) << "lun " << lun;
    r = Exec(*engine_, Cdb({0x12, 1, 0xB0, 0, 255, 0}), {}, a_, lun);
    EXPECT_EQ(GetBe16(&r.data_in[6]), 1) << "lun " << lun;
    EXPECT_EQ(GetBe32(&r.data_in[28]), 1u) << "lun " << lun;
  }
}

TEST_F(EngineTest, MissingLun) {
  auto r = Exec(*engine_, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 7);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[0], 0x7F);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 7), SenseKey::kIllegalRequest,
               asc::kLogicalUnitNotSupported);
  r = Exec(*engine_, Cdb({0x03, 0, 0, 0, 18, 0}), {}, a_, 7);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[2], 0x05);
  EXPECT_EQ(r.data_in[12], 0x25);
  r = Exec(*engine_, Cdb({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), {}, a_, 7);
  EXPECT_GOOD(r);
  EXPECT_EQ(GetBe32(&r.data_in[0]), 8u);
}

// --- CDB validation --------------------------------------------------------

TEST_F(EngineTest, UnsupportedOpcodeAndServiceAction) {
  ClearUas(*engine_, a_);
  EXPECT_SENSE(Do(Cdb({0xC5, 0, 0, 0, 0, 0})), SenseKey::kIllegalRequest,
               asc::kInvalidCommandOperationCode);
  // SET TARGET PORT GROUPS: implicit ALUA only.
  EXPECT_SENSE(Do(Cdb({0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})), SenseKey::kIllegalRequest,
               asc::kInvalidCommandOperationCode);
  ExpectInvalidField(Do(Cdb16(0x9E, 0, 0, 0x1F)), 1, 4);  // SERVICE ACTION IN(16) SA 1Fh
}

TEST_F(EngineTest, NacaAndLinkAreRejected) {
  ClearUas(*engine_, a_);
  ExpectInvalidField(Do(Cdb({0x00, 0, 0, 0, 0, 0x04})), 5, 2);
  auto cdb = Cdb10(0x28, 0, 1);
  cdb[9] = 0x01;
  ExpectInvalidField(Do(cdb), 9, 0);
}

TEST_F(EngineTest, ReportLunsValidation) {
  ExpectInvalidField(Do(Cdb({0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0})), 6);
  ExpectInvalidField(Do(Cdb({0xA0, 0, 0x07, 0, 0, 0, 0, 0, 1, 0, 0, 0})), 2);
  auto r = Do(Cdb({0xA0, 0, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0}));  // well-known only
  EXPECT_EQ(GetBe32(&r.data_in[0]), 0u);
}

// --- READ CAPACITY -----------------------------------------------------------

TEST_F(EngineTest, ReadCapacity10And16AreByteExact) {
  auto r = DoClean(Cdb({0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0, 0x1F, 0xFF, 0, 0, 0x02, 0}));
  ExpectInvalidField(Do(Cdb({0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0})), 2);
  auto cdb = Cdb16(0x9E, 0, 0, 0x10);
  PutBe32(&cdb[10], 32);
  r = Do(cdb);
  EXPECT_GOOD(r);
  std::vector<uint8_t> e(32, 0);
  PutBe64(&e[0], kBlocks - 1);
  PutBe32(&e[8], kBlockSize);
  e[13] = 3;     // LBPPBE: 4096-byte physical blocks
  e[14] = 0xC0;  // LBPME, LBPRZ
  EXPECT_EQ(r.data_in, e);
  PutBe32(&cdb[10], 12);
  EXPECT_EQ(Exec(*engine_, cdb, {}, a_, 0, 12).data_in.size(), 12u);
}

// --- Data path -----------------------------------------------------------------

TEST_F(EngineTest, ReadWriteRoundTripAllSizes) {
  ClearUas(*engine_, a_);
  auto data = Pattern(4, 1);
  EXPECT_GOOD(Do(Cdb({0x0A, 0, 0, 10, 4, 0}), data));  // WRITE(6)
  EXPECT_EQ(Do(Cdb({0x08, 0, 0, 10, 4, 0})).data_in, data);
  EXPECT_EQ(Do(Cdb10(0x28, 10, 4)).data_in, data);
  data = Pattern(3, 9);
  EXPECT_GOOD(Do(Cdb10(0x2A, 100, 3), data));
  EXPECT_EQ(Do(Cdb12(0xA8, 100, 3)).data_in, data);
  data = Pattern(2, 77);
  EXPECT_GOOD(Do(Cdb12(0xAA, 200, 2), data));
  EXPECT_EQ(Do(Cdb16(0x88, 200, 2)).data_in, data);
  data = Pattern(5, 3);
  auto r = Do(Cdb16(0x8A, kBlocks - 5, 5), data);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_out_length, 5 * kBlockSize);
  EXPECT_EQ(memory_->Peek(kBlocks - 5, 5), data);
}

TEST_F(EngineTest, FuaAndWriteCacheDisabledForceStableWrites) {
  ClearUas(*engine_, a_);
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 1, 0x18), Pattern(1, 0)));  // DPO|FUA
  EXPECT_EQ(memory_->fua_writes(), 1);
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)));
  EXPECT_EQ(memory_->fua_writes(), 1);
  // MODE SELECT(6): caching page with WCE=0.
  std::vector<uint8_t> params = {0, 0, 0, 0, 0x08, 0x12};
  params.resize(4 + 20, 0);
  EXPECT_GOOD(Do(Cdb({0x15, 0x10, 0, 0, static_cast<uint8_t>(params.size()), 0}), params));
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)));
  EXPECT_EQ(memory_->fua_writes(), 2);
}

TEST_F(EngineTest, ReadTruncatesToAllocationLength) {
  ClearUas(*engine_, a_);
  auto r = Do(Cdb10(0x28, 0, 4), {}, 1000);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in.size(), 1000u);
}

TEST_F(EngineTest, OutOfRangeLbasAreRejected) {
  ClearUas(*engine_, a_);
  EXPECT_SENSE(Do(Cdb10(0x28, kBlocks, 1)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(Cdb10(0x28, kBlocks - 1, 2)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(Cdb16(0x88, ~0ull, 1)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(Cdb16(0x8A, ~0ull - 1, 4), Pattern(4, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(Cdb12(0xAA, kBlocks, 1), Pattern(1, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(Cdb({0x08, 0x1F, 0xFF, 0xFF, 1, 0})), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  // Zero blocks: fine up to the capacity, out of range beyond it.
  EXPECT_GOOD(Do(Cdb10(0x28, kBlocks, 0)));
  EXPECT_SENSE(Do(Cdb10(0x28, kBlocks + 1, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 0)));
}

TEST_F(EngineTest, MalformedReadWriteCdbs) {
  ClearUas(*engine_, a_);
  ExpectInvalidField(Do(Cdb10(0x28, 0, 1, 0x20)), 1, 7);  // RDPROTECT
  ExpectInvalidField(Do(Cdb16(0x8A, 0, 1, 0x40), Pattern(1, 0)), 1, 7);  // WRPROTECT
  ExpectInvalidField(Do(Cdb12(0xA8, 0, 20000)), 6);  // beyond max transfer length
  ExpectInvalidField(Do(Cdb16(0x88, 0, 20000)), 10);
  // Data-out ending in a partial block.
  auto partial = Pattern(1, 0);
  partial.resize(kBlockSize + 100);
  auto r = Do(Cdb10(0x2A, 0, 2), partial);
  EXPECT_SENSE(r, SenseKey::kIllegalRequest, asc::kInvalidFieldInCommandInformationUnit);
  EXPECT_EQ(r.wanted_data_out_length, 1024u);
}

// --- Residuals (task.h: EDTL differing from the CDB) ---------------------------

TEST_F(EngineTest, ReadReportsWantedLengthAndReadsOnlyWhatTheInitiatorAccepts) {
  ClearUas(*engine_, a_);
  auto data = Pattern(4, 21);
  ASSERT_EQ(Do(Cdb10(0x2A, 0, 4), data).status, ScsiStatus::kGood);
  // Blocks 2 and 3 are unreadable: a READ of 4 blocks that the initiator
  // accepts only 1000 bytes of must not touch them.
  store_->InjectFault(BlockOp::kRead, absl::DataLossError("EIO"), -1, 2, 2);
  auto r = Do(Cdb10(0x28, 0, 4), {}, 1000);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_in_length, 4 * kBlockSize);
  EXPECT_EQ(r.data_in, std::vector<uint8_t>(data.begin(), data.begin() + 1000));
  // Every READ size reports the CDB's length.
  r = Do(Cdb({0x08, 0, 0, 0, 2, 0}), {}, kBlockSize);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_in_length, 2 * kBlockSize);
  EXPECT_EQ(r.data_in.size(), kBlockSize);
  r = Do(Cdb12(0xA8, 0, 3), {}, 200);
  EXPECT_EQ(r.wanted_data_in_length, 3 * kBlockSize);
  EXPECT_EQ(r.data_in.size(), 200u);
  r = Do(Cdb16(0x88, 0, 1), {}, 10000);
  EXPECT_EQ(r.wanted_data_in_length, kBlockSize);
  EXPECT_EQ(r.data_in, std::vector<uint8_t>(data.begin(), data.begin() + kBlockSize));
  // Nothing accepted: nothing read, GOOD, the whole length wanted.
  const int reads = store_->count(BlockOp::kRead);
  r = Do(Cdb10(0x28, 0, 1), {}, 0);
  EXPECT_GOOD(r);
  EXPECT_TRUE(r.data_in.empty());
  EXPECT_EQ(r.wanted_data_in_length, kBlockSize);
  EXPECT_EQ(store_->count(BlockOp::kRead), reads);
  // The LBA range is still checked against the CDB.
  EXPECT_SENSE(Do(Cdb10(0x28, kBlocks - 1, 2), {}, 0), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
}

TEST_F(EngineTest, WriteWithShortDataOutWritesTheWholeBlocksSent) {
  ClearUas(*engine_, a_);
  for (uint8_t op : {0x0A, 0x2A, 0xAA, 0x8A}) {
    SCOPED_TRACE(op);
    const auto old = Pattern(3, 1);
    ASSERT_EQ(Do(Cdb10(0x2A, 40, 3), old).status, ScsiStatus::kGood);
    const auto cdb = op == 0x0A   ? Cdb({0x0A, 0, 0, 40, 3, 0})
                     : op == 0x2A ? Cdb10(op, 40, 3)
                     : op == 0xAA ? Cdb12(op, 40, 3)
                                  : Cdb16(op, 40, 3);
    const auto data = Pattern(2, 99);
    auto r = Do(cdb, data);
    EXPECT_GOOD(r);
    EXPECT_EQ(r.wanted_data_out_length, 3 * kBlockSize);
    EXPECT_EQ(memory_->Peek(40, 2), data);
    EXPECT_EQ(memory_->Peek(42, 1), std::vector<uint8_t>(old.begin() + 2 * kBlockSize, old.end()));
    // No data at all: GOOD, nothing written.
    const int writes = memory_->writes();
    r = Do(cdb, {});
    EXPECT_GOOD(r);
    EXPECT_EQ(r.wanted_data_out_length, 3 * kBlockSize);
    EXPECT_EQ(memory_->writes(), writes);
    // A partial block: INVALID FIELD IN COMMAND INFORMATION UNIT, nothing written.
    std::vector<uint8_t> partial(200, 0xEE);
    r = Do(cdb, partial);
    EXPECT_SENSE(r, SenseKey::kIllegalRequest, asc::kInvalidFieldInCommandInformationUnit);
    EXPECT_EQ(r.wanted_data_out_length, 3 * kBlockSize);
    EXPECT_EQ(memory_->Peek(40, 2), data);
    // Longer than the CDB: the prefix.
    const auto more = Pattern(4, 7);
    EXPECT_GOOD(Do(cdb, more));
    EXPECT_EQ(memory_->Peek(40, 4),
              [&] {
                auto e = std::vector<uint8_t>(more.begin(), more.begin() + 3 * kBlockSize);
                auto tail = memory_->Peek(43, 1);
                e.insert(e.end(), tail.begin(), tail.end());
                return e;
              }());
  }
}

TEST_F(EngineTest, WriteAndVerifyWithShortDataOutWritesAndVerifiesTheWholeBlocksSent) {
  ClearUas(*engine_, a_);
  for (uint8_t op : {0x2E, 0xAE, 0x8E}) {
    SCOPED_TRACE(op);
    const auto old = Pattern(2, 3);
    ASSERT_EQ(Do(Cdb10(0x2A, 70, 2), old).status, ScsiStatus::kGood);
    const auto cdb = op == 0x2E ? Cdb10(op, 70, 2) : op == 0xAE ? Cdb12(op, 70, 2)
                                                                : Cdb16(op, 70, 2);
    const auto data = Pattern(1, 55);
    auto r = Do(cdb, data);
    EXPECT_GOOD(r);
    EXPECT_EQ(r.wanted_data_out_length, 2 * kBlockSize);
    EXPECT_EQ(memory_->Peek(70, 1), data);
    EXPECT_EQ(memory_->Peek(71, 1), std::vector<uint8_t>(old.begin() + kBlockSize, old.end()));
    r = Do(cdb, std::vector<uint8_t>(kBlockSize + 1, 0xAB));
    EXPECT_SENSE(r, SenseKey::kIllegalRequest, asc::kInvalidFieldInCommandInformationUnit);
    EXPECT_EQ(memory_->Peek(70, 1), data);
  }
}

TEST_F(EngineTest, AllocationLengthLimitsDataInAndIsReportedAsWanted) {
  // INQUIRY with ALLOCATION LENGTH 36 and a larger EDTL: 36 bytes, no overflow.
  auto r = Do(Cdb({0x12, 0, 0, 0, 36, 0}), {}, 255);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in.size(), 36u);
  EXPECT_EQ(r.wanted_data_in_length, 36u);
  // ALLOCATION LENGTH 255, EDTL 36: the 74 bytes built are wanted, 36 sent.
  r = Do(Cdb({0x12, 0, 0, 0, 255, 0}), {}, 36);
  EXPECT_EQ(r.data_in.size(), 36u);
  EXPECT_EQ(r.wanted_data_in_length, 74u);
  // MODE SENSE(6) with ALLOCATION LENGTH 4: the header only.
  ClearUas(*engine_, a_);
  r = Do(Cdb({0x1A, 0x08, 0x3F, 0, 4, 0}), {}, 1000);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in.size(), 4u);
  EXPECT_EQ(r.wanted_data_in_length, 4u);
}

TEST_F(EngineTest, WriteProtectedLu) {
  LogicalUnitOptions o;
  o.read_only = true;
  ASSERT_TRUE(engine_->AddLogicalUnit(1, std::make_shared<MemoryBlockStore>(
                                             MemoryBlockStore::Options{}), o).ok());
  ClearUas(*engine_, a_, 1);
  EXPECT_SENSE(Exec(*engine_, Cdb10(0x2A, 0, 1), Pattern(1, 0), a_, 1), SenseKey::kDataProtect,
               asc::kWriteProtected);
  EXPECT_GOOD(Exec(*engine_, Cdb10(0x28, 0, 1), {}, a_, 1));
  auto r = Exec(*engine_, Cdb({0x1A, 0x08, 0x3F, 0, 255, 0}), {}, a_, 1);
  EXPECT_EQ(r.data_in[2], 0x90);  // WP | DPOFUA
  // WRITE SAME is refused for the protection, not for its data-out: libiscsi's
  // ReadOnly.ReadOnlySBC sends WRITE SAME with UNMAP and no data (it used to
  // get INVALID FIELD IN COMMAND INFORMATION UNIT).
  EXPECT_SENSE(Exec(*engine_, Cdb10(0x41, 0, 1, 0x08), {}, a_, 1), SenseKey::kDataProtect,
               asc::kWriteProtected);
  EXPECT_SENSE(Exec(*engine_, Cdb16(0x93, 0, 1, 0x08), {}, a_, 1), SenseKey::kDataProtect,
               asc::kWriteProtected);
  EXPECT_SENSE(Exec(*engine_, Cdb16(0x93, 0, 1), Pattern(1, 0), a_, 1), SenseKey::kDataProtect,
               asc::kWriteProtected);
  std::vector<uint8_t> unmap = {0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                0, 0, 0, 1, 0, 0, 0, 0};
  EXPECT_SENSE(Exec(*engine_, Cdb10(0x42, 0, 24), unmap, a_, 1), SenseKey::kDataProtect,
               asc::kWriteProtected);
}

TEST_F(EngineTest, SynchronizeCache) {
  ClearUas(*engine_, a_);
  EXPECT_GOOD(Do(Cdb10(0x35, 0, 0)));
  EXPECT_GOOD(Do(Cdb16(0x91, 0, 16)));
  EXPECT_EQ(memory_->flushes(), 2);
  EXPECT_SENSE(Do(Cdb10(0x35, kBlocks, 1)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
}

TEST_F(EngineTest, VerifyWithAndWithoutByteCheck) {
  ClearUas(*engine_, a_);
  auto data = Pattern(2, 5);
  EXPECT_GOOD(Do(Cdb10(0x2A, 50, 2), data));
  EXPECT_GOOD(Do(Cdb10(0x2F, 50, 2)));                  // BYTCHK=0
  EXPECT_GOOD(Do(Cdb10(0x2F, 50, 2, 0x02), data));      // BYTCHK=1, equal
  EXPECT_GOOD(Do(Cdb16(0x8F, 50, 2, 0x12), data));      // DPO, 16-byte
  auto bad = data;
  bad[700] ^= 0xFF;
  auto r = Do(Cdb12(0xAF, 50, 2, 0x02), bad);
  EXPECT_SENSE(r, SenseKey::kMiscompare, asc::kMiscompareDuringVerifyOperation);
  EXPECT_EQ(SenseOf(r).information, 700u);
  EXPECT_GOOD(Do(Cdb10(0x2F, 50, 2, 0x00), bad));  // no compare
  ExpectInvalidField(Do(Cdb10(0x2F, 50, 2, 0x04), data), 1, 2);  // BYTCHK=10b
  ExpectInvalidField(Do(Cdb10(0x2F, 50, 2, 0x20)), 1, 7);        // VRPROTECT
  EXPECT_SENSE(Do(Cdb10(0x2F, kBlocks, 1)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
}

TEST_F(EngineTest, WriteAndVerify) {
  ClearUas(*engine_, a_);
  auto data = Pattern(3, 11);
  EXPECT_GOOD(Do(Cdb10(0x2E, 7, 3, 0x02), data));
  EXPECT_EQ(memory_->Peek(7, 3), data);
  EXPECT_GOOD(Do(Cdb12(0xAE, 20, 1), Pattern(1, 0)));
  EXPECT_GOOD(Do(Cdb16(0x8E, 30, 1), Pattern(1, 0)));
  EXPECT_SENSE(Do(Cdb10(0x2E, kBlocks, 1), Pattern(1, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
}

TEST_F(EngineTest, WriteSameWritesAndUnmaps) {
  ClearUas(*engine_, a_);
  auto block = Pattern(1, 42);
  EXPECT_GOOD(Do(Cdb10(0x41, 10, 100), block));
  for (uint64_t lba : {10u, 60u, 109u}) EXPECT_EQ(memory_->Peek(lba, 1), block);
  EXPECT_FALSE(memory_->IsMapped(110));
  // UNMAP bit with a zero block deallocates.
  EXPECT_GOOD(Do(Cdb16(0x93, 10, 50, 0x08), std::vector<uint8_t>(kBlockSize, 0)));
  EXPECT_FALSE(memory_->IsMapped(10));
  EXPECT_TRUE(memory_->IsMapped(60));
  // NDOB: no data-out at all.
  auto r = Do(Cdb16(0x93, 60, 50, 0x09));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_out_length, 0u);
  EXPECT_FALSE(memory_->IsMapped(109));
  // UNMAP bit with a non-zero block writes it.
  EXPECT_GOOD(Do(Cdb10(0x41, 200, 2, 0x08), block));
  EXPECT_EQ(memory_->Peek(201, 1), block);
}

// Initiators (libiscsi's WriteSame16.Unmap, Linux zeroing) may WRITE as many
// blocks as MAXIMUM WRITE SAME LENGTH promises; and a WRITE SAME should not do
// more work than the largest WRITE. So the reported and enforced limit is
// capped at the maximum transfer length.
TEST_F(EngineTest, WriteSameLimitDoesNotExceedMaximumTransferLength) {
  LogicalUnitOptions options;
  options.max_transfer_bytes = 1024 * 1024;  // 2048 blocks < max_write_same_blocks
  ASSERT_TRUE(engine_->AddLogicalUnit(1, memory_, options).ok());
  auto on_lun1 = [&](const std::vector<uint8_t>& cdb, std::vector<uint8_t> out = {}) {
    return Exec(*engine_, cdb, std::move(out), a_, 1);
  };
  ClearUas(*engine_, a_, 1);
  auto r = on_lun1(Cdb({0x12, 1, 0xB0, 0, 255, 0}));
  EXPECT_GOOD(r);
  const uint32_t max_transfer = GetBe32(&r.data_in[8]);
  const uint64_t max_write_same = GetBe64(&r.data_in[36]);
  EXPECT_EQ(max_transfer, 2048u);
  EXPECT_EQ(max_write_same, max_transfer);
  // A WRITE of that many blocks works, and so does WRITE SAME; one more is refused.
  const std::vector<uint8_t> zero(kBlockSize, 0);
  EXPECT_GOOD(on_lun1(Cdb16(0x8A, 0, max_transfer), Pattern(max_transfer, 1)));
  EXPECT_GOOD(on_lun1(Cdb16(0x93, 0, max_transfer, 0x08), zero));
  ExpectInvalidField(on_lun1(Cdb16(0x93, 0, max_transfer + 1, 0x08), zero), 10);
}

// iscsi-test-cu Inquiry.BlockLimits treats a MAXIMUM UNMAP LBA COUNT above
// 1M blocks as insane; one UNMAP descriptor also holds the LBA range lock for
// its whole span, so keep the default bounded.
TEST_F(EngineTest, MaximumUnmapLbaCountIsBounded) {
  auto r = Do(Cdb({0x12, 1, 0xB0, 0, 255, 0}));
  EXPECT_GOOD(r);
  const uint32_t max_unmap = GetBe32(&r.data_in[20]);
  EXPECT_GT(max_unmap, 0u);
  EXPECT_LE(max_unmap, 1u << 20);
}

TEST_F(EngineTest, WriteSameValidation) {
  ClearUas(*engine_, a_);
  auto block = Pattern(1, 1);
  ExpectInvalidField(Do(Cdb10(0x41, 0, 0), block), 7);       // WSNZ
  ExpectInvalidField(Do(Cdb16(0x93, 0, 1u << 17), block), 10);  // beyond max
  ExpectInvalidField(Do(Cdb10(0x41, 0, 1, 0x10), block), 1, 4);  // ANCHOR
  ExpectInvalidField(Do(Cdb10(0x41, 0, 1, 0x02), block), 1, 1);  // LBDATA
  EXPECT_SENSE(Do(Cdb10(0x41, kBlocks, 1), block), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  // Data-out must be exactly one block.
  EXPECT_SENSE(Do(Cdb10(0x41, 0, 1), Pattern(2, 0)), SenseKey::kIllegalRequest,
               asc::kInvalidFieldInCommandInformationUnit);
}

TEST_F(EngineTest, UnmapAndGetLbaStatus) {
  ClearUas(*engine_, a_);
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 64), Pattern(64, 0)));
  std::vector<uint8_t> params(8 + 32, 0);
  PutBe16(&params[0], 6 + 32);
  PutBe16(&params[2], 32);
  PutBe64(&params[8], 8);
  PutBe32(&params[16], 8);
  PutBe64(&params[24], 40);
  PutBe32(&params[32], 0);  // zero blocks: nothing
  auto cdb = Cdb10(0x42, 0, 0);
  PutBe16(&cdb[7], static_cast<uint16_t>(params.size()));
  EXPECT_GOOD(Do(cdb, params));
  EXPECT_TRUE(memory_->IsMapped(7));
  EXPECT_FALSE(memory_->IsMapped(8));
  EXPECT_FALSE(memory_->IsMapped(15));
  EXPECT_TRUE(memory_->IsMapped(16));

  auto gls = Cdb16(0x9E, 0, 0, 0x12);
  PutBe32(&gls[10], 8 + 16 * 3);
  auto r = Do(gls);
  EXPECT_GOOD(r);
  std::vector<uint8_t> e(8 + 48, 0);
  PutBe32(&e[0], 4 + 48);
  PutBe64(&e[8], 0);
  PutBe32(&e[16], 8);
  e[20] = 0;  // mapped
  PutBe64(&e[24], 8);
  PutBe32(&e[32], 8);
  e[36] = 1;  // deallocated
  PutBe64(&e[40], 16);
  PutBe32(&e[48], 48);
  e[52] = 0;
  EXPECT_EQ(r.data_in, e);

  PutBe64(&gls[2], kBlocks);
  EXPECT_SENSE(Do(gls), SenseKey::kIllegalRequest, asc::kLogicalBlockAddressOutOfRange);

  // Out of range descriptor, and a too short parameter list.
  PutBe64(&params[24], kBlocks);
  PutBe32(&params[32], 1);
  EXPECT_SENSE(Do(cdb, params), SenseKey::kIllegalRequest, asc::kLogicalBlockAddressOutOfRange);
  auto short_cdb = Cdb10(0x42, 0, 4);
  EXPECT_SENSE(Do(short_cdb, std::vector<uint8_t>(4, 0)), SenseKey::kIllegalRequest,
               asc::kParameterListLengthError);
  EXPECT_GOOD(Do(Cdb10(0x42, 0, 0)));  // empty parameter list
}

TEST_F(EngineTest, CompareAndWrite) {
  ClearUas(*engine_, a_);
  auto old_data = Pattern(2, 3);
  EXPECT_GOOD(Do(Cdb10(0x2A, 100, 2), old_data));
  auto new_data = Pattern(2, 200);
  auto cdb = Cdb16(0x89, 100, 0);
  cdb[13] = 2;
  std::vector<uint8_t> out = old_data;
  out.insert(out.end(), new_data.begin(), new_data.end());
  auto r = Do(cdb, out);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_out_length, 4 * kBlockSize);
  EXPECT_EQ(memory_->Peek(100, 2), new_data);

  // Miscompare: the offset of the first differing byte, nothing written.
  out = new_data;
  out[513] ^= 1;
  out.insert(out.end(), old_data.begin(), old_data.end());
  r = Do(cdb, out);
  EXPECT_SENSE(r, SenseKey::kMiscompare, asc::kMiscompareDuringVerifyOperation);
  EXPECT_EQ(SenseOf(r).information, 513u);
  EXPECT_EQ(memory_->Peek(100, 2), new_data);

  // Data-out size must match exactly (see the test below); length limits; range.
  ExpectInvalidField(Do(cdb, Pattern(3, 0)), 13);
  cdb[13] = 65;
  ExpectInvalidField(Do(cdb, Pattern(130, 0)), 13);
  auto oob = Cdb16(0x89, kBlocks - 1, 0);
  oob[13] = 2;
  EXPECT_SENSE(Do(oob, Pattern(4, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
}

// libiscsi asks for 256 blocks with 2 x 256 blocks of data-out; the 8-bit
// NUMBER OF LOGICAL BLOCKS field then reads 0. The field disagrees with the
// data the initiator sent, so the CDB is what is invalid (as for any other
// count beyond MAXIMUM COMPARE AND WRITE LENGTH), not the transport framing.
TEST_F(EngineTest, CompareAndWriteDataOutDisagreeingWithBlockCountIsInvalidCdb) {
  ClearUas(*engine_, a_);
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 256), Pattern(256, 9)));
  auto cdb = Cdb16(0x89, 0, 0);
  cdb[13] = static_cast<uint8_t>(256);  // truncated to 0
  ExpectInvalidField(Do(cdb, Pattern(512, 9)), 13);
  EXPECT_EQ(memory_->Peek(0, 256), Pattern(256, 9));
  cdb[13] = 2;
  ExpectInvalidField(Do(cdb, Pattern(3, 0)), 13);
  // Zero blocks and no data: nothing to do, not an error.
  cdb[13] = 0;
  EXPECT_GOOD(Do(cdb));
}

TEST_F(EngineTest, CompareAndWriteIsAtomicAgainstOtherWriters) {
  ClearUas(*engine_, a_);
  auto old_data = Pattern(1, 3);
  EXPECT_GOOD(Do(Cdb10(0x2A, 5, 1), old_data));
  const int writes_before = store_->count(BlockOp::kWrite);
  store_->Hold(BlockOp::kRead);
  auto cdb = Cdb16(0x89, 5, 0);
  cdb[13] = 1;
  auto caw_data = old_data;
  auto replacement = Pattern(1, 99);
  caw_data.insert(caw_data.end(), replacement.begin(), replacement.end());
  auto caw = Start(*engine_, cdb, caw_data);
  EXPECT_FALSE(caw->done());
  // An overlapping write waits for the COMPARE AND WRITE; a disjoint one runs.
  auto overlapping = Start(*engine_, Cdb10(0x2A, 4, 2), Pattern(2, 50));
  auto disjoint = Start(*engine_, Cdb10(0x2A, 6, 1), Pattern(1, 60));
  EXPECT_FALSE(overlapping->done());
  EXPECT_TRUE(disjoint->done());
  EXPECT_EQ(store_->count(BlockOp::kWrite), writes_before + 1);
  store_->Unhold(BlockOp::kRead);
  store_->ReleaseAll();
  ASSERT_TRUE(caw->done());
  EXPECT_GOOD(*caw->response);
  ASSERT_TRUE(overlapping->done());
  EXPECT_GOOD(*overlapping->response);
  EXPECT_EQ(memory_->Peek(4, 2), Pattern(2, 50));  // the later write wins
}

// WRITE ATOMIC(16): LBA in bytes 2..9, ATOMIC BOUNDARY 10..11, TRANSFER
// LENGTH 12..13.
std::vector<uint8_t> WriteAtomic16Cdb(uint64_t lba, uint16_t blocks, uint8_t flags = 0) {
  std::vector<uint8_t> c(16, 0);
  c[0] = 0x9C;
  c[1] = flags;
  PutBe64(&c[2], lba);
  PutBe16(&c[12], blocks);
  return c;
}

TEST_F(EngineTest, WriteAtomic16LimitsInBlockLimitsVpd) {
  ClearUas(*engine_, a_);
  auto r = Do(Cdb({0x12, 1, 0xB0, 0, 255, 0}));
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 64u);
  EXPECT_EQ(GetBe32(&r.data_in[44]), 2048u);  // MAXIMUM ATOMIC TRANSFER LENGTH: 1 MiB
  EXPECT_LE(GetBe32(&r.data_in[44]), GetBe32(&r.data_in[8]));  // <= MAXIMUM TRANSFER LENGTH
  EXPECT_EQ(GetBe32(&r.data_in[48]), 8u);     // ATOMIC ALIGNMENT: the physical block
  EXPECT_EQ(GetBe32(&r.data_in[52]), 8u);     // ATOMIC TRANSFER LENGTH GRANULARITY
  EXPECT_EQ(GetBe32(&r.data_in[56]), 0u);     // no atomic boundaries
  EXPECT_EQ(GetBe32(&r.data_in[60]), 0u);

  // One logical block per physical: no alignment or granularity constraint;
  // the maximum is capped at the maximum transfer length.
  LogicalUnitOptions o;
  o.max_transfer_bytes = 64 * 1024;
  ASSERT_TRUE(engine_->AddLogicalUnit(1, std::make_shared<MemoryBlockStore>(
                                             MemoryBlockStore::Options{}), o).ok());
  ClearUas(*engine_, a_, 1);
  r = Exec(*engine_, Cdb({0x12, 1, 0xB0, 0, 255, 0}), {}, a_, 1);
  EXPECT_EQ(GetBe32(&r.data_in[44]), 128u);
  EXPECT_EQ(GetBe32(&r.data_in[48]), 0u);
  EXPECT_EQ(GetBe32(&r.data_in[52]), 0u);
  EXPECT_GOOD(Exec(*engine_, WriteAtomic16Cdb(3, 1), Pattern(1, 4), a_, 1));
  ExpectInvalidField(Exec(*engine_, WriteAtomic16Cdb(0, 129), Pattern(129, 4), a_, 1), 12);
}

TEST_F(EngineTest, WriteAtomic16WritesAndChecksItsCdb) {
  ClearUas(*engine_, a_);
  auto data = Pattern(16, 21);
  auto r = Do(WriteAtomic16Cdb(8, 16), data);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.wanted_data_out_length, 16 * kBlockSize);
  EXPECT_EQ(memory_->Peek(8, 16), data);
  const int fua_before = memory_->fua_writes();
  EXPECT_GOOD(Do(WriteAtomic16Cdb(kBlocks - 8, 8, 0x18), Pattern(8, 1)));  // DPO FUA
  EXPECT_EQ(memory_->fua_writes(), fua_before + 1);
  EXPECT_GOOD(Do(WriteAtomic16Cdb(0, 0)));  // nothing to write

  const int writes_before = store_->count(BlockOp::kWrite);
  ExpectInvalidField(Do(WriteAtomic16Cdb(0, 8, 0x20), Pattern(8, 0)), 1, 7);  // WRPROTECT
  auto boundary = WriteAtomic16Cdb(0, 8);
  PutBe16(&boundary[10], 8);
  ExpectInvalidField(Do(boundary, Pattern(8, 0)), 10);             // ATOMIC BOUNDARY
  ExpectInvalidField(Do(WriteAtomic16Cdb(0, 2056), Pattern(2056, 0)), 12);  // too long
  ExpectInvalidField(Do(WriteAtomic16Cdb(1, 8), Pattern(8, 0)), 2);   // misaligned LBA
  ExpectInvalidField(Do(WriteAtomic16Cdb(8, 4), Pattern(4, 0)), 12);  // not whole physical blocks
  EXPECT_SENSE(Do(WriteAtomic16Cdb(kBlocks - 8, 16), Pattern(16, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(WriteAtomic16Cdb(uint64_t{1} << 63, 8), Pattern(8, 0)),
               SenseKey::kIllegalRequest, asc::kLogicalBlockAddressOutOfRange);
  EXPECT_SENSE(Do(WriteAtomic16Cdb(kBlocks + 8, 0)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  // All or nothing: a short data-out writes none of it.
  EXPECT_SENSE(Do(WriteAtomic16Cdb(8, 16), Pattern(15, 0)), SenseKey::kIllegalRequest,
               asc::kInvalidFieldInCommandInformationUnit);
  EXPECT_EQ(store_->count(BlockOp::kWrite), writes_before);
  EXPECT_EQ(memory_->Peek(8, 16), data);

  LogicalUnitOptions read_only;
  read_only.read_only = true;
  ASSERT_TRUE(engine_->AddLogicalUnit(1, std::make_shared<MemoryBlockStore>(
                                             MemoryBlockStore::Options{}), read_only).ok());
  ClearUas(*engine_, a_, 1);
  EXPECT_SENSE(Exec(*engine_, WriteAtomic16Cdb(0, 1), Pattern(1, 0), a_, 1),
               SenseKey::kDataProtect, asc::kWriteProtected);
}

TEST_F(EngineTest, WriteAtomic16IsAtomicAgainstOtherWriters) {
  ClearUas(*engine_, a_);
  store_->Hold(BlockOp::kWrite);
  auto atomic = Start(*engine_, WriteAtomic16Cdb(16, 16), Pattern(16, 7));
  // Overlapping writers (WRITE, COMPARE AND WRITE, another atomic write) wait
  // for the whole atomic write; a disjoint one goes to the store at once.
  auto overlapping = Start(*engine_, Cdb10(0x2A, 30, 4), Pattern(4, 50));
  auto caw_cdb = Cdb16(0x89, 16, 0);
  caw_cdb[13] = 1;
  auto caw_data = Pattern(1, 7);  // what the atomic write puts at LBA 16
  auto caw_new = Pattern(1, 90);
  caw_data.insert(caw_data.end(), caw_new.begin(), caw_new.end());
  auto caw = Start(*engine_, caw_cdb, caw_data);
  auto disjoint = Start(*engine_, Cdb10(0x2A, 40, 1), Pattern(1, 60));
  EXPECT_EQ(store_->held_count(), 2u);  // the atomic write and the disjoint one
  EXPECT_FALSE(overlapping->done());
  EXPECT_FALSE(caw->done());
  store_->Unhold(BlockOp::kWrite);
  store_->ReleaseAll();
  for (const auto& o : {atomic, overlapping, caw, disjoint}) {
    ASSERT_TRUE(o->done());
    EXPECT_GOOD(*o->response);
  }
  // The COMPARE AND WRITE saw the atomic write's data, and the overlapping
  // WRITE landed after it.
  auto expected = Pattern(16, 7);
  std::copy(caw_new.begin(), caw_new.end(), expected.begin());
  auto later = Pattern(4, 50);
  std::copy(later.begin(), later.begin() + 2 * kBlockSize, expected.begin() + 14 * kBlockSize);
  EXPECT_EQ(memory_->Peek(16, 16), expected);
  EXPECT_EQ(memory_->Peek(32, 2), std::vector<uint8_t>(later.begin() + 2 * kBlockSize, later.end()));
}

TEST_F(EngineTest, WriteAtomic16IsReportedAsSupported) {
  ClearUas(*engine_, a_);
  // REPORT SUPPORTED OPERATION CODES, one command: opcode 0x9C.
  auto r = Do(Cdb({0xA3, 0x0C, 0x01, 0x9C, 0, 0, 0, 0, 0x01, 0, 0, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[1] & 0x07, 3);  // SUPPORT: supported as described
  EXPECT_EQ(GetBe16(&r.data_in[2]), 16);
  EXPECT_EQ(r.data_in[5], 0x18);  // DPO FUA
}

TEST_F(EngineTest, OrWriteAndPrefetchAndDefects) {
  ClearUas(*engine_, a_);
  std::vector<uint8_t> a(kBlockSize, 0x0F), b(kBlockSize, 0xF0);
  EXPECT_GOOD(Do(Cdb10(0x2A, 9, 1), a));
  EXPECT_GOOD(Do(Cdb16(0x8B, 9, 1), b));
  EXPECT_EQ(memory_->Peek(9, 1), std::vector<uint8_t>(kBlockSize, 0xFF));
  EXPECT_SENSE(Do(Cdb16(0x8B, kBlocks, 1), b), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  ExpectInvalidField(Do(Cdb16(0x8B, 0, 1, 0x20), b), 1, 7);
  EXPECT_GOOD(Do(Cdb10(0x34, 0, 10)));
  EXPECT_GOOD(Do(Cdb16(0x90, 0, 0)));
  EXPECT_SENSE(Do(Cdb10(0x34, kBlocks, 1)), SenseKey::kIllegalRequest,
               asc::kLogicalBlockAddressOutOfRange);
  auto r = Do(Cdb({0x37, 0, 0x0C, 0, 0, 0, 0, 0, 4, 0}));
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0x0C, 0, 0}));
}

// --- Storage faults ----------------------------------------------------------

TEST_F(EngineTest, StorageFaultsMapToSense) {
  ClearUas(*engine_, a_);
  store_->InjectFault(BlockOp::kRead, absl::DataLossError("EIO"), 1);
  auto r = Do(Cdb10(0x28, 33, 1));
  EXPECT_SENSE(r, SenseKey::kMediumError, asc::kUnrecoveredReadError);
  EXPECT_EQ(SenseOf(r).information, 33u);
  store_->InjectFault(BlockOp::kWrite, absl::DataLossError("EIO"), 1);
  EXPECT_SENSE(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)), SenseKey::kMediumError, asc::kWriteError);
  store_->InjectFault(BlockOp::kWrite, absl::ResourceExhaustedError("ENOSPC"), 1);
  EXPECT_SENSE(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)), SenseKey::kDataProtect,
               asc::kSpaceAllocationFailedWriteProtect);
  store_->InjectFault(BlockOp::kRead, absl::UnavailableError("fenced"), 1);
  EXPECT_SENSE(Do(Cdb10(0x28, 0, 1)), SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition);
  store_->InjectFault(BlockOp::kFlush, absl::InternalError("?"), 1);
  EXPECT_SENSE(Do(Cdb10(0x35, 0, 0)), SenseKey::kHardwareError, asc::kInternalTargetFailure);
  store_->InjectFault(BlockOp::kUnmap, absl::ResourceExhaustedError("ENOSPC"), 1);
  EXPECT_SENSE(Do(Cdb16(0x93, 0, 4, 0x09)), SenseKey::kDataProtect,
               asc::kSpaceAllocationFailedWriteProtect);
  // After the faults, I/O works again.
  EXPECT_GOOD(Do(Cdb10(0x28, 33, 1)));
}

TEST_F(EngineTest, CompletesFromStoreCallbacksNotTheSubmitter) {
  fakes::ManualExecutor executor;
  MemoryBlockStore::Options o;
  o.executor = executor.AsFunction();
  ASSERT_TRUE(engine_->AddLogicalUnit(2, std::make_shared<MemoryBlockStore>(o)).ok());
  auto tur = Start(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 2);
  ASSERT_TRUE(tur->done());  // unit attention, no I/O
  auto write = Start(*engine_, Cdb10(0x2A, 0, 1), Pattern(1, 4), a_, 2);
  EXPECT_FALSE(write->done());
  executor.RunAll();
  ASSERT_TRUE(write->done());
  EXPECT_GOOD(*write->response);
  auto read = Start(*engine_, Cdb10(0x28, 0, 1), {}, a_, 2);
  EXPECT_FALSE(read->done());
  executor.RunAll();
  ASSERT_TRUE(read->done());
  EXPECT_EQ(read->response->data_in, Pattern(1, 4));
}

// --- Mode pages ----------------------------------------------------------------

TEST_F(EngineTest, ModeSenseAllPages) {
  ClearUas(*engine_, a_);
  auto r = Do(Cdb({0x1A, 0, 0x3F, 0, 255, 0}));
  EXPECT_GOOD(r);
  ASSERT_EQ(r.data_in.size(), 4u + 8 + 20 + 12 + 12);
  EXPECT_EQ(r.data_in[0], r.data_in.size() - 1);
  EXPECT_EQ(r.data_in[2], 0x10);  // DPOFUA
  EXPECT_EQ(r.data_in[3], 8);     // block descriptor length
  EXPECT_EQ(GetBe32(&r.data_in[4]), kBlocks);
  EXPECT_EQ(GetBe24(&r.data_in[9]), kBlockSize);
  EXPECT_EQ(r.data_in[12], 0x08);  // caching page
  EXPECT_EQ(r.data_in[14], 0x04);  // WCE
  EXPECT_EQ(r.data_in[32], 0x0A);  // control page
  EXPECT_EQ(r.data_in[44], 0x1C);  // informational exceptions page
  // MODE SENSE(10) with DBD and LLBAA, changeable values of the control page.
  r = Do(Cdb({0x5A, 0x18, 0x4A, 0, 0, 0, 0, 0, 255, 0}));
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 18, 0, 0x10, 0, 0, 0, 0, 0x0A, 0x0A, 0x04, 0,
                                             0x08, 0, 0, 0, 0, 0, 0, 0}));
  // Long LBA block descriptor.
  r = Do(Cdb({0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0}));
  EXPECT_EQ(r.data_in[4], 0x01);
  EXPECT_EQ(GetBe16(&r.data_in[6]), 16);
  EXPECT_EQ(GetBe64(&r.data_in[8]), kBlocks);
  ExpectInvalidField(Do(Cdb({0x1A, 0, 0x19, 0, 255, 0})), 2, 5);
  ExpectInvalidField(Do(Cdb({0x1A, 0, 0x08, 1, 255, 0})), 3);
  // Truncation to the allocation length.
  EXPECT_EQ(Exec(*engine_, Cdb({0x1A, 0, 0x3F, 0, 4, 0}), {}, a_, 0, 4).data_in.size(), 4u);
}

TEST_F(EngineTest, ModeSelectChangesSenseFormatAndNotifiesOthers) {
  ClearUas(*engine_, a_);
  ClearUas(*engine_, b_);
  std::vector<uint8_t> params = {0, 0, 0, 0, 0x0A, 0x0A, 0x04, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0};
  EXPECT_GOOD(Do(Cdb({0x15, 0x10, 0, 0, 16, 0}), params));
  // Descriptor sense from now on, for everyone.
  auto r = Do(Cdb({0xC5, 0, 0, 0, 0, 0}));
  ASSERT_EQ(r.status, ScsiStatus::kCheckCondition);
  EXPECT_EQ(r.sense[0], 0x72);
  r = Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_);
  EXPECT_SENSE(r, SenseKey::kUnitAttention, asc::kModeParametersChanged);
  EXPECT_EQ(r.sense[0], 0x72);
  EXPECT_GOOD(Do(Cdb({0x00, 0, 0, 0, 0, 0})));  // not for the changer
}

TEST_F(EngineTest, ModeSelectRejectsUnchangeableBits) {
  ClearUas(*engine_, a_);
  // Control page with TST changed (byte 2 bit 5): field pointer into the list.
  std::vector<uint8_t> params = {0, 0, 0, 0, 0x0A, 0x0A, 0x20, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0};
  ExpectInvalidField(Do(Cdb({0x15, 0x10, 0, 0, 16, 0}), params), 6, 5, false);
  // Wrong page length.
  params[5] = 0x08;
  ExpectInvalidField(Do(Cdb({0x15, 0x10, 0, 0, 16, 0}), params), 5, std::nullopt, false);
  // Short header.
  EXPECT_SENSE(Do(Cdb({0x15, 0x10, 0, 0, 2, 0}), {0, 0}), SenseKey::kIllegalRequest,
               asc::kParameterListLengthError);
  // A block descriptor with the wrong block length.
  std::vector<uint8_t> bd = {0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0};
  ExpectInvalidField(Do(Cdb({0x15, 0x10, 0, 0, 12, 0}), bd), 9, std::nullopt, false);
}

TEST_F(EngineTest, SoftwareWriteProtect) {
  ClearUas(*engine_, a_);
  std::vector<uint8_t> params = {0, 0, 0, 0, 0x0A, 0x0A, 0x00, 0x10, 0x08, 0, 0, 0, 0xFF, 0xFF, 0, 0};
  EXPECT_GOOD(Do(Cdb({0x15, 0x10, 0, 0, 16, 0}), params));
  EXPECT_SENSE(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)), SenseKey::kDataProtect, asc::kWriteProtected);
  params[8] = 0;
  EXPECT_GOOD(Do(Cdb({0x15, 0x10, 0, 0, 16, 0}), params));
  EXPECT_GOOD(Do(Cdb10(0x2A, 0, 1), Pattern(1, 0)));
}

// --- ALUA and command support reporting ---------------------------------------

TEST(EngineAluaTest, ReportTargetPortGroupsAndAccessStates) {
  auto provider = std::make_shared<StaticPortStateProvider>(std::vector<TargetPortGroupState>{
      {1, AluaState::kActiveOptimized, true, 0, {1}},
      {2, AluaState::kActiveNonOptimized, false, 0, {2, 3}}});
  EngineOptions options;
  options.port_state = provider;
  auto engine = std::move(*Engine::Create(options));
  ASSERT_TRUE(engine->AddLogicalUnit(0, std::make_shared<MemoryBlockStore>(
                                            MemoryBlockStore::Options{})).ok());
  Harness h;
  auto via_b = testing::MakeNexus("iqn.1994-05.com.redhat:host-a", "23d000000001", 2, 2);
  h.ClearUas(*engine, h.a_);
  h.ClearUas(*engine, via_b);
  auto r = h.Exec(*engine, Harness::Cdb({0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), {}, via_b);
  EXPECT_GOOD(r);
  const std::vector<uint8_t> expected = {0, 0, 0, 28,
                                         0x80, 0x8F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
                                         0x01, 0x8F, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  EXPECT_EQ(r.data_in, expected);
  // Extended header.
  r = h.Exec(*engine, Harness::Cdb({0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), {}, via_b);
  EXPECT_EQ(r.data_in[4], 0x10);
  EXPECT_EQ(r.data_in[5], 10);

  // Port group 2 becomes unavailable: media access fails there, INQUIRY works.
  provider->SetState(2, AluaState::kUnavailable);
  engine->NotifyAsymmetricAccessStateChanged();
  EXPECT_SENSE(h.Exec(*engine, Harness::Cdb10(0x28, 0, 1), {}, via_b), SenseKey::kUnitAttention,
               asc::kAsymmetricAccessStateChanged);
  EXPECT_SENSE(h.Exec(*engine, Harness::Cdb10(0x28, 0, 1), {}, via_b), SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
  EXPECT_GOOD(h.Exec(*engine, Harness::Cdb({0x12, 0, 0, 0, 96, 0}), {}, via_b));
  provider->SetState(2, AluaState::kTransitioning);
  EXPECT_SENSE(h.Exec(*engine, Harness::Cdb({0x00, 0, 0, 0, 0, 0}), {}, via_b),
               SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition);
  r = h.Exec(*engine, Harness::Cdb({0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), {}, via_b);
  EXPECT_EQ(r.data_in[16], 0x0F);
  EXPECT_EQ(r.data_in[21], 2);  // status: implicit change
  // Group 1 is unaffected.
  EXPECT_SENSE(h.Exec(*engine, Harness::Cdb10(0x28, 0, 1), {}, h.a_), SenseKey::kUnitAttention,
               asc::kAsymmetricAccessStateChanged);
  EXPECT_GOOD(h.Exec(*engine, Harness::Cdb10(0x28, 0, 1), {}, h.a_));
}

TEST_F(EngineTest, ReportSupportedOperationCodes) {
  ClearUas(*engine_, a_);
  auto r = Do(Cdb({0xA3, 0x0C, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}));
  EXPECT_GOOD(r);
  const size_t count = (r.data_in.size() - 4) / 8;
  EXPECT_EQ(GetBe32(&r.data_in[0]), count * 8);
  EXPECT_GT(count, 40u);
  bool found_read16 = false;
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* d = &r.data_in[4 + i * 8];
    if (d[0] == 0x88) {
      found_read16 = true;
      EXPECT_EQ(GetBe16(&d[6]), 16);
      EXPECT_EQ(d[5], 0);
    }
    if (d[0] == 0x9E) {
      EXPECT_EQ(d[5] & 0x01, 1);  // SERVACTV
    }
  }
  EXPECT_TRUE(found_read16);
  // With timeouts descriptors.
  r = Do(Cdb({0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}));
  EXPECT_EQ((r.data_in.size() - 4) % 20, 0u);
  EXPECT_EQ(r.data_in[4 + 5] & 0x02, 0x02);  // CTDP
  // One command: READ(10).
  r = Do(Cdb({0xA3, 0x0C, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0x03, 0, 10, 0x28, 0x18, 0xFF, 0xFF, 0xFF,
                                             0xFF, 0x1F, 0xFF, 0xFF, 0}));
  // One command with service action, with the timeouts descriptor.
  r = Do(Cdb({0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(r.data_in[1], 0x83);
  EXPECT_EQ(r.data_in.size(), 4u + 16 + 12);
  // Unsupported command.
  r = Do(Cdb({0xA3, 0x0C, 0x01, 0xC5, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0x01, 0, 0}));
  // Reporting option 1 for an opcode with service actions, option 2 without.
  ExpectInvalidField(Do(Cdb({0xA3, 0x0C, 0x01, 0x9E, 0, 0, 0, 0, 1, 0, 0, 0})), 3);
  ExpectInvalidField(Do(Cdb({0xA3, 0x0C, 0x02, 0x28, 0, 0, 0, 0, 1, 0, 0, 0})), 3);
}

}  // namespace
}  // namespace scsi
