// Task management through Engine::ManageTasks: aborts complete only after the
// affected tasks did (aborted ones with aborted=true), resets and nexus loss
// raise the right unit attentions and drop SPC-2 reservations.
#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/engine.h"
#include "tests/fakes/fault_injecting_block_store.h"
#include "tests/fakes/memory_block_store.h"
#include "tests/scsi/engine_harness.h"

namespace scsi {
namespace {

using fakes::BlockOp;
using fakes::FaultInjectingBlockStore;
using fakes::MemoryBlockStore;
using testing::Harness;

class TaskManagementTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override {
    memory_ = std::make_shared<MemoryBlockStore>(MemoryBlockStore::Options{});
    store_ = std::make_shared<FaultInjectingBlockStore>(memory_);
    engine_ = std::move(*Engine::Create());
    ASSERT_TRUE(engine_->AddLogicalUnit(0, store_).ok());
    ClearUas(*engine_, a_);
    ClearUas(*engine_, b_);
  }

  struct TmfOutcome {
    std::optional<TmfResult> result;
  };
  std::shared_ptr<TmfOutcome> Tmf(TmfFunction f, std::shared_ptr<const ItNexus> nexus,
                                  uint64_t tag = 0, uint64_t lun = 0) {
    auto out = std::make_shared<TmfOutcome>();
    TmfRequest req;
    req.nexus = std::move(nexus);
    req.function = f;
    req.lun = lun;
    req.referenced_tag = tag;
    engine_->ManageTasks(std::move(req), [out](TmfResult r) { out->result = r; });
    return out;
  }
  std::shared_ptr<testing::Outcome> StartWrite(std::shared_ptr<const ItNexus> nexus, uint64_t tag,
                                      uint32_t lba = 0) {
    return Start(*engine_, Cdb10(0x2A, lba, 1), std::vector<uint8_t>(512, 1), nexus, 0,
                 0, tag);
  }

  std::shared_ptr<MemoryBlockStore> memory_;
  std::shared_ptr<FaultInjectingBlockStore> store_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(TaskManagementTest, AbortTaskWaitsForInFlightIo) {
  store_->Hold(BlockOp::kWrite);
  auto write = StartWrite(a_, 77);
  ASSERT_FALSE(write->done());
  auto tmf = Tmf(TmfFunction::kAbortTask, a_, 77);
  EXPECT_FALSE(tmf->result.has_value());  // the write is still in flight
  store_->ReleaseAll();
  ASSERT_TRUE(write->done());
  EXPECT_TRUE(write->response->aborted);
  ASSERT_TRUE(tmf->result.has_value());
  EXPECT_EQ(*tmf->result, TmfResult::kComplete);
}

TEST_F(TaskManagementTest, AbortTaskUnknownTagOrLun) {
  auto tmf = Tmf(TmfFunction::kAbortTask, a_, 1234);
  ASSERT_TRUE(tmf->result.has_value());
  EXPECT_EQ(*tmf->result, TmfResult::kTaskDoesNotExist);
  // Another nexus's tag is not ours to abort.
  store_->Hold(BlockOp::kWrite);
  auto write = StartWrite(b_, 5);
  tmf = Tmf(TmfFunction::kAbortTask, a_, 5);
  EXPECT_EQ(*tmf->result, TmfResult::kTaskDoesNotExist);
  store_->ReleaseAll();
  EXPECT_FALSE(write->response->aborted);
  tmf = Tmf(TmfFunction::kAbortTaskSet, a_, 0, 9);
  EXPECT_EQ(*tmf->result, TmfResult::kLunDoesNotExist);
  EXPECT_EQ(*Tmf(TmfFunction::kClearAca, a_)->result, TmfResult::kNotSupported);
}

TEST_F(TaskManagementTest, AbortTaskSetOnlyTouchesTheNexus) {
  store_->Hold(BlockOp::kWrite);
  auto a1 = StartWrite(a_, 1, 0);
  auto a2 = StartWrite(a_, 2, 10);
  auto b1 = StartWrite(b_, 1, 20);
  auto tmf = Tmf(TmfFunction::kAbortTaskSet, a_);
  EXPECT_FALSE(tmf->result.has_value());
  store_->ReleaseAll();
  EXPECT_TRUE(a1->response->aborted);
  EXPECT_TRUE(a2->response->aborted);
  EXPECT_FALSE(b1->response->aborted);
  EXPECT_GOOD(*b1->response);
  EXPECT_EQ(*tmf->result, TmfResult::kComplete);
  // ABORT TASK SET establishes no unit attention.
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_));
}

TEST_F(TaskManagementTest, TasksWaitingForARangeLockAbortImmediately) {
  store_->Hold(BlockOp::kWrite);
  auto first = StartWrite(a_, 1, 0);
  auto second = StartWrite(a_, 2, 0);  // waits for the range held by first
  EXPECT_EQ(store_->held_count(), 1u);
  auto tmf = Tmf(TmfFunction::kAbortTask, a_, 2);
  ASSERT_TRUE(second->done());
  EXPECT_TRUE(second->response->aborted);
  ASSERT_TRUE(tmf->result.has_value());
  store_->ReleaseAll();
  EXPECT_GOOD(*first->response);
  EXPECT_EQ(store_->count(BlockOp::kWrite), 1);
}

TEST_F(TaskManagementTest, ClearTaskSetNotifiesOtherInitiators) {
  store_->Hold(BlockOp::kWrite);
  auto a1 = StartWrite(a_, 1, 0);
  auto b1 = StartWrite(b_, 1, 20);
  auto tmf = Tmf(TmfFunction::kClearTaskSet, a_);
  store_->ReleaseAll();
  EXPECT_TRUE(a1->response->aborted);
  EXPECT_TRUE(b1->response->aborted);
  EXPECT_EQ(*tmf->result, TmfResult::kComplete);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kCommandsClearedByAnotherInitiator);
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_));
}

TEST_F(TaskManagementTest, LogicalUnitResetAbortsAllAndRaisesUnitAttention) {
  EXPECT_GOOD(Exec(*engine_, Cdb({0x16, 0, 0, 0, 0, 0}), {}, a_));  // RESERVE(6)
  store_->Hold(BlockOp::kWrite);
  auto a1 = StartWrite(a_, 1);
  auto tmf = Tmf(TmfFunction::kLogicalUnitReset, b_);
  EXPECT_FALSE(tmf->result.has_value());
  store_->Unhold(BlockOp::kWrite);
  store_->ReleaseAll();
  EXPECT_TRUE(a1->response->aborted);
  EXPECT_EQ(*tmf->result, TmfResult::kComplete);
  for (auto n : {a_, b_}) {
    EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, n), SenseKey::kUnitAttention,
                 asc::kBusDeviceResetFunctionOccurred);
  }
  // The SPC-2 reservation is gone: B may write.
  EXPECT_GOOD(Exec(*engine_, Cdb10(0x2A, 0, 1), std::vector<uint8_t>(512, 0), b_));
}

TEST_F(TaskManagementTest, TargetResetsRaiseResetUnitAttention) {
  EXPECT_EQ(*Tmf(TmfFunction::kTargetWarmReset, a_)->result, TmfResult::kComplete);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kPowerOnResetOrBusDeviceResetOccurred);
  EXPECT_EQ(*Tmf(TmfFunction::kTargetColdReset, a_)->result, TmfResult::kComplete);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kPowerOnOccurred);
}

TEST_F(TaskManagementTest, ItNexusLossAbortsTasksAndReleasesSpc2Reservation) {
  EXPECT_GOOD(Exec(*engine_, Cdb({0x16, 0, 0, 0, 0, 0}), {}, a_));
  EXPECT_EQ(Exec(*engine_, Cdb10(0x28, 0, 1), {}, b_).status, ScsiStatus::kReservationConflict);
  store_->Hold(BlockOp::kWrite);
  auto a1 = StartWrite(a_, 1);
  auto tmf = Tmf(TmfFunction::kItNexusLoss, a_);
  store_->ReleaseAll();
  EXPECT_TRUE(a1->response->aborted);
  EXPECT_EQ(*tmf->result, TmfResult::kComplete);
  EXPECT_GOOD(Exec(*engine_, Cdb10(0x28, 0, 1), {}, b_));
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_), SenseKey::kUnitAttention,
               asc::kItNexusLossOccurred);
}

TEST_F(TaskManagementTest, Spc2ReserveRelease) {
  EXPECT_GOOD(Exec(*engine_, Cdb({0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}), {}, a_));  // RESERVE(10)
  EXPECT_GOOD(Exec(*engine_, Cdb({0x16, 0, 0, 0, 0, 0}), {}, a_));  // again, holder
  EXPECT_EQ(Exec(*engine_, Cdb({0x16, 0, 0, 0, 0, 0}), {}, b_).status,
            ScsiStatus::kReservationConflict);
  EXPECT_EQ(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_).status,
            ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Exec(*engine_, Cdb({0x12, 0, 0, 0, 36, 0}), {}, b_));
  EXPECT_GOOD(Exec(*engine_, Cdb({0x17, 0, 0, 0, 0, 0}), {}, b_));  // not holder: no-op
  EXPECT_EQ(Exec(*engine_, Cdb10(0x28, 0, 1), {}, b_).status, ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Exec(*engine_, Cdb({0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}), {}, a_));  // RELEASE(10)
  EXPECT_GOOD(Exec(*engine_, Cdb10(0x28, 0, 1), {}, b_));
  testing::ExpectInvalidField(
      Exec(*engine_, Cdb({0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}), {}, a_), 1, 4);  // 3RDPTY
}

}  // namespace
}  // namespace scsi
