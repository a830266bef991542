// SAM-5 task attributes: an ORDERED task waits for every older task of the
// logical unit and holds back newer SIMPLE ones; a HEAD OF QUEUE task runs at
// once and holds back newer SIMPLE ones. Driven deterministically by holding
// writes in the FaultInjectingBlockStore.
#include <memory>
#include <optional>
#include <string>
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
using testing::Outcome;

constexpr TaskAttribute kSimple = TaskAttribute::kSimple;
constexpr TaskAttribute kOrdered = TaskAttribute::kOrdered;
constexpr TaskAttribute kHead = TaskAttribute::kHeadOfQueue;

class TaskAttributesTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override {
    memory_ = std::make_shared<MemoryBlockStore>(MemoryBlockStore::Options{});
    store_ = std::make_shared<FaultInjectingBlockStore>(memory_);
    EngineOptions options;
    options.honor_task_attributes = true;
    engine_ = std::move(*Engine::Create(std::move(options)));
    ASSERT_TRUE(engine_->AddLogicalUnit(0, store_).ok());
    ASSERT_TRUE(engine_->AddLogicalUnit(1, std::make_shared<MemoryBlockStore>(
                                               MemoryBlockStore::Options{})).ok());
    for (uint64_t lun : {0, 1}) {
      ClearUas(*engine_, a_, lun);
      ClearUas(*engine_, b_, lun);
    }
    store_->Hold(BlockOp::kWrite);
  }

  // Starts a task that records the order of completion in order_.
  std::shared_ptr<Outcome> Run(const std::string& name, const std::vector<uint8_t>& cdb,
                               TaskAttribute attribute, std::vector<uint8_t> data_out = {},
                               std::shared_ptr<const ItNexus> nexus = nullptr,
                               uint64_t lun = 0) {
    auto task = std::make_unique<Task>();
    task->nexus = nexus ? nexus : a_;
    task->lun = lun;
    task->cdb.assign(cdb.begin(), cdb.end());
    task->tag = ++next_tag_;
    task->attribute = attribute;
    task->expected_data_in_length = 1 << 20;
    task->data_out = std::move(data_out);
    auto outcome = std::make_shared<Outcome>();
    engine_->Submit(std::move(task), [this, name, outcome](TaskResponse r) {
      order_.push_back(name);
      outcome->response = std::move(r);
    });
    return outcome;
  }
  std::shared_ptr<Outcome> RunWrite(const std::string& name, uint32_t lba,
                                    TaskAttribute attribute,
                                    std::shared_ptr<const ItNexus> nexus = nullptr) {
    return Run(name, Cdb10(0x2A, lba, 1), attribute, std::vector<uint8_t>(512, 0x5A),
               std::move(nexus));
  }
  static std::vector<uint8_t> Tur() { return Cdb({0x00, 0, 0, 0, 0, 0}); }

  std::shared_ptr<MemoryBlockStore> memory_;
  std::shared_ptr<FaultInjectingBlockStore> store_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::string> order_;
};

TEST_F(TaskAttributesTest, OrderedWaitsForOlderTasksAndHoldsBackNewerSimpleOnes) {
  auto w1 = RunWrite("w1", 0, kSimple);
  auto w2 = RunWrite("w2", 8, kSimple, b_);  // another nexus: same task set
  auto ordered = RunWrite("ordered", 16, kOrdered);
  auto tur = Run("tur", Tur(), kSimple);
  auto read = Run("read", Cdb10(0x28, 16, 1), kSimple, {}, b_);
  EXPECT_EQ(store_->held_count(), 2u);  // the ORDERED write was not issued
  EXPECT_TRUE(order_.empty());
  ASSERT_TRUE(store_->ReleaseOne());  // w1
  EXPECT_EQ(store_->held_count(), 1u);  // still waiting for w2
  ASSERT_TRUE(store_->ReleaseOne());  // w2: now the ORDERED write is issued
  EXPECT_EQ(store_->held_count(), 1u);
  EXPECT_EQ(order_, (std::vector<std::string>{"w1", "w2"}));
  ASSERT_TRUE(store_->ReleaseOne());
  EXPECT_EQ(order_, (std::vector<std::string>{"w1", "w2", "ordered", "tur", "read"}));
  EXPECT_GOOD(*ordered->response);
  EXPECT_GOOD(*tur->response);
  // The read ran after the ORDERED write and sees its data.
  EXPECT_EQ(read->response->data_in, std::vector<uint8_t>(512, 0x5A));
}

TEST_F(TaskAttributesTest, OrderedTasksRunOneAtATime) {
  auto o1 = RunWrite("o1", 0, kOrdered);
  auto o2 = RunWrite("o2", 8, kOrdered);
  auto s = RunWrite("s", 16, kSimple);
  EXPECT_EQ(store_->held_count(), 1u);
  store_->ReleaseOne();
  EXPECT_EQ(order_, std::vector<std::string>{"o1"});
  EXPECT_EQ(store_->held_count(), 1u);  // o2 only; s waits for it
  store_->ReleaseOne();
  EXPECT_EQ(store_->held_count(), 1u);  // s
  store_->ReleaseOne();
  EXPECT_EQ(order_, (std::vector<std::string>{"o1", "o2", "s"}));
}

TEST_F(TaskAttributesTest, WithoutOlderTasksOrderedRunsAtOnce) {
  store_->Unhold(BlockOp::kWrite);
  auto o = RunWrite("o", 0, kOrdered);
  ASSERT_TRUE(o->done());
  EXPECT_GOOD(*o->response);
  // SIMPLE tasks do not wait for each other.
  store_->Hold(BlockOp::kWrite);
  RunWrite("s1", 0, kSimple);
  RunWrite("s2", 8, kSimple);
  EXPECT_EQ(store_->held_count(), 2u);
  store_->ReleaseAll();
}

TEST_F(TaskAttributesTest, HeadOfQueueRunsFirstAndHoldsBackNewerSimpleTasks) {
  auto w1 = RunWrite("w1", 0, kSimple);
  auto ordered = Run("ordered", Tur(), kOrdered);  // waits for w1
  auto head = Run("head", Tur(), kHead);            // does not wait at all
  EXPECT_EQ(order_, std::vector<std::string>{"head"});
  // A HEAD OF QUEUE write still in flight holds back newer SIMPLE tasks.
  auto head_write = RunWrite("head_write", 8, kHead);
  EXPECT_EQ(store_->held_count(), 2u);
  auto simple = Run("simple", Tur(), kSimple);
  EXPECT_FALSE(simple->done());
  // Another logical unit has its own task set.
  auto other_lu = Run("other_lu", Tur(), kSimple, {}, nullptr, 1);
  EXPECT_TRUE(other_lu->done());
  ASSERT_TRUE(store_->ReleaseOne());  // w1: the ORDERED task still waits for
                                      // head_write, which entered ahead of it
  EXPECT_FALSE(ordered->done());
  ASSERT_TRUE(store_->ReleaseOne());  // head_write
  EXPECT_EQ(order_, (std::vector<std::string>{"head", "other_lu", "w1", "head_write",
                                              "ordered", "simple"}));
}

TEST_F(TaskAttributesTest, AbortingADormantTaskCompletesItWithoutRunningIt) {
  auto w1 = RunWrite("w1", 0, kSimple);
  auto ordered = RunWrite("ordered", 8, kOrdered);
  const uint64_t ordered_tag = next_tag_;
  auto simple = RunWrite("simple", 16, kSimple);
  std::optional<TmfResult> tmf;
  TmfRequest request;
  request.nexus = a_;
  request.function = TmfFunction::kAbortTask;
  request.referenced_tag = ordered_tag;
  engine_->ManageTasks(std::move(request), [&tmf](TmfResult r) { tmf = r; });
  ASSERT_TRUE(ordered->done());
  EXPECT_TRUE(ordered->response->aborted);
  ASSERT_TRUE(tmf.has_value());
  EXPECT_EQ(*tmf, TmfResult::kComplete);
  // The simple write behind it is no longer held back.
  EXPECT_EQ(store_->held_count(), 2u);
  store_->ReleaseAll();
  EXPECT_GOOD(*simple->response);
  EXPECT_EQ(store_->count(BlockOp::kWrite), 2);
  EXPECT_EQ(memory_->Peek(8, 1), std::vector<uint8_t>(512, 0));
}

TEST_F(TaskAttributesTest, ReportedInExtendedInquiryData) {
  auto r = Run("vpd", Cdb({0x12, 1, 0x86, 0, 64, 0}), kSimple);
  ASSERT_TRUE(r->done());
  EXPECT_EQ(r->response->data_in[5], 0x07);  // HEADSUP, ORDSUP, SIMPSUP
}

TEST(TaskAttributesOffTest, EveryTaskRunsAsSimpleByDefault) {
  auto memory = std::make_shared<MemoryBlockStore>(MemoryBlockStore::Options{});
  auto store = std::make_shared<FaultInjectingBlockStore>(memory);
  auto engine = std::move(*Engine::Create());
  ASSERT_TRUE(engine->AddLogicalUnit(0, store).ok());
  Harness h;
  h.ClearUas(*engine, h.a_);
  store->Hold(BlockOp::kWrite);
  auto w = h.Start(*engine, Harness::Cdb10(0x2A, 0, 1), std::vector<uint8_t>(512, 1), h.a_, 0,
                   0, 0, kSimple);
  auto o = h.Start(*engine, Harness::Cdb10(0x2A, 8, 1), std::vector<uint8_t>(512, 2), h.a_, 0,
                   0, 0, kOrdered);
  EXPECT_EQ(store->held_count(), 2u);  // the ORDERED write did not wait
  store->ReleaseAll();
  EXPECT_GOOD(*o->response);
  EXPECT_EQ(h.Exec(*engine, Harness::Cdb({0x12, 1, 0x86, 0, 64, 0})).data_in[5], 0x01);
}

TEST_F(TaskAttributesTest, LogicalUnitResetCompletesDormantTasks) {
  auto w1 = RunWrite("w1", 0, kSimple);
  auto ordered = RunWrite("ordered", 8, kOrdered);
  std::optional<TmfResult> tmf;
  TmfRequest request;
  request.nexus = b_;
  request.function = TmfFunction::kLogicalUnitReset;
  engine_->ManageTasks(std::move(request), [&tmf](TmfResult r) { tmf = r; });
  ASSERT_TRUE(ordered->done());
  EXPECT_TRUE(ordered->response->aborted);
  EXPECT_FALSE(tmf.has_value());  // w1 is in flight
  store_->ReleaseAll();
  EXPECT_TRUE(w1->response->aborted);
  EXPECT_TRUE(tmf.has_value());
  EXPECT_EQ(store_->count(BlockOp::kWrite), 1);
}

}  // namespace
}  // namespace scsi
