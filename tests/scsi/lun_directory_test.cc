// scsi::Engine with a LunDirectory: REPORT LUNS lists every LUN of the partner
// pair, LUNs the partner serves are "not currently connected" here, and
// NotifyReportedLunsChanged() tells every nexus.
#include "target/scsi/lun_directory.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/engine.h"
#include "tests/fakes/memory_block_store.h"
#include "tests/scsi/engine_harness.h"

namespace scsi {
namespace {

using fakes::MemoryBlockStore;
using testing::Harness;

// REPORT LUNS, ALLOCATION LENGTH 256, SELECT REPORT 00h.
const std::vector<uint8_t> kReportLuns = {0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};

std::vector<uint8_t> LunList(std::initializer_list<std::vector<uint8_t>> entries) {
  std::vector<uint8_t> d(8, 0);
  PutBe32(&d[0], static_cast<uint32_t>(entries.size() * 8));
  for (const auto& e : entries) {
    d.insert(d.end(), e.begin(), e.end());
    d.resize(d.size() + 8 - e.size(), 0);
  }
  return d;
}

class LunDirectoryTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override {
    // This node owns LUN 0 and 2; the partner owns 1 and 300.
    directory_ = std::make_shared<StaticLunDirectory>(std::vector<uint64_t>{0, 1, 2, 300});
    EngineOptions options;
    options.lun_directory = directory_;
    auto engine = Engine::Create(std::move(options));
    ASSERT_TRUE(engine.ok());
    engine_ = std::move(*engine);
    for (uint64_t lun : {0, 2}) {
      ASSERT_TRUE(engine_->AddLogicalUnit(lun, std::make_shared<MemoryBlockStore>(
                                                   MemoryBlockStore::Options{})).ok());
    }
  }

  std::shared_ptr<StaticLunDirectory> directory_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(LunDirectoryTest, ReportLunsListsEveryLunOfThePair) {
  const auto expected = LunList({{0, 0}, {0, 1}, {0, 2}, {0x41, 0x2C}});
  auto r = Exec(*engine_, kReportLuns, {}, a_, 0);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, expected);
  // Through a LUN this node lacks (REPORT LUNS is addressed to any LUN).
  r = Exec(*engine_, kReportLuns, {}, a_, 1);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, expected);
  r = Exec(*engine_, kReportLuns, {}, a_, 9);
  EXPECT_EQ(r.data_in, expected);
}

TEST_F(LunDirectoryTest, ReportLunsFollowsTheDirectoryAndKeepsOwnLuns) {
  // The directory lags behind a LUN just added here: still listed, once.
  directory_->Set({1, 1, 20000});
  auto r = Exec(*engine_, kReportLuns, {}, a_, 0);
  EXPECT_EQ(r.data_in, LunList({{0, 0}, {0, 1}, {0, 2}}));
}

TEST_F(LunDirectoryTest, WithoutADirectoryOnlyOwnLunsAreReported) {
  auto engine = Engine::Create();
  ASSERT_TRUE(engine.ok());
  ASSERT_TRUE((*engine)->AddLogicalUnit(0, std::make_shared<MemoryBlockStore>(
                                               MemoryBlockStore::Options{})).ok());
  auto r = Exec(**engine, kReportLuns, {}, a_, 1);
  EXPECT_EQ(r.data_in, LunList({{0, 0}}));
  EXPECT_EQ(Exec(**engine, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 1).data_in[0], 0x7F);
}

TEST_F(LunDirectoryTest, PartnerLunIsNotConnectedHere) {
  auto r = Exec(*engine_, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 1);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[0], 0x20);  // PQ 001b, direct-access block device
  EXPECT_SENSE(Exec(*engine_, Cdb({0x12, 1, 0x83, 0, 255, 0}), {}, a_, 1),
               SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 1), SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
  EXPECT_SENSE(Exec(*engine_, Cdb10(0x28, 0, 1), {}, a_, 300), SenseKey::kNotReady,
               asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
  r = Exec(*engine_, Cdb({0x03, 0, 0, 0, 18, 0}), {}, a_, 1);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in[2], 0x02);
  EXPECT_EQ(r.data_in[12], 0x04);
  EXPECT_EQ(r.data_in[13], 0x0C);
  // A LUN of neither node is still not supported.
  EXPECT_EQ(Exec(*engine_, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 7).data_in[0], 0x7F);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 7),
               SenseKey::kIllegalRequest, asc::kLogicalUnitNotSupported);
  // The LUNs owned here are untouched.
  EXPECT_EQ(Exec(*engine_, Cdb({0x12, 0, 0, 0, 96, 0}), {}, a_, 2).data_in[0], 0x00);
}

TEST_F(LunDirectoryTest, NotifyReportedLunsChangedTellsEveryNexusUntilReportLuns) {
  ClearUas(*engine_, a_, 0);
  ClearUas(*engine_, b_, 0);
  ClearUas(*engine_, b_, 2);
  directory_->Set({0, 1, 2, 5});
  engine_->NotifyReportedLunsChanged();
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 0),
               SenseKey::kUnitAttention, asc::kReportedLunsDataHasChanged);
  // Reported once per nexus: A's UA on LUN 0 cleared it for A everywhere.
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_, 0));
  // B clears it with REPORT LUNS, which shows the new inventory.
  auto r = Exec(*engine_, kReportLuns, {}, b_, 2);
  EXPECT_GOOD(r);
  EXPECT_EQ(r.data_in, LunList({{0, 0}, {0, 1}, {0, 2}, {0, 5}}));
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_, 0));
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_, 2));
}

}  // namespace
}  // namespace scsi
