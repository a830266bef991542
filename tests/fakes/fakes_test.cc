#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/fault_injecting_block_store.h"
#include "tests/fakes/manual_executor.h"
#include "tests/fakes/memory_block_store.h"

namespace fakes {
namespace {

MemoryBlockStore::Options SmallStore() {
  MemoryBlockStore::Options o;
  o.block_size = 512;
  o.num_blocks = 100;
  return o;
}

TEST(MemoryBlockStoreTest, WriteReadUnmapAndAllocation) {
  MemoryBlockStore store(SmallStore());
  std::vector<uint8_t> data(1024, 0xab);
  absl::Status result = absl::UnknownError("not run");
  store.Write(10, 2, data, false, [&](absl::Status s) { result = s; });
  ASSERT_TRUE(result.ok());
  std::vector<uint8_t> out(1024);
  store.Read(10, 2, absl::MakeSpan(out), [&](absl::Status s) { result = s; });
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(out, data);

  auto extent = store.QueryAllocation(0);
  ASSERT_TRUE(extent.ok());
  EXPECT_FALSE(extent->mapped);
  EXPECT_EQ(extent->num_blocks, 10u);
  extent = store.QueryAllocation(10);
  ASSERT_TRUE(extent.ok());
  EXPECT_TRUE(extent->mapped);
  EXPECT_EQ(extent->num_blocks, 2u);
  extent = store.QueryAllocation(12);
  EXPECT_EQ(extent->num_blocks, 88u);

  store.Unmap(11, 1, [&](absl::Status s) { result = s; });
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(store.IsMapped(10));
  EXPECT_FALSE(store.IsMapped(11));
  EXPECT_EQ(store.Peek(11, 1), std::vector<uint8_t>(512, 0));
}

TEST(MemoryBlockStoreTest, OutOfRange) {
  MemoryBlockStore store(SmallStore());
  std::vector<uint8_t> out(1024);
  absl::Status result;
  store.Read(99, 2, absl::MakeSpan(out), [&](absl::Status s) { result = s; });
  EXPECT_EQ(result.code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(store.QueryAllocation(100).ok());
}

TEST(MemoryBlockStoreTest, ExecutorDefersCompletion) {
  ManualExecutor executor;
  auto options = SmallStore();
  options.executor = executor.AsFunction();
  MemoryBlockStore store(options);
  bool done = false;
  store.Flush([&](absl::Status s) { done = s.ok(); });
  EXPECT_FALSE(done);
  EXPECT_EQ(executor.RunAll(), 1u);
  EXPECT_TRUE(done);
  EXPECT_EQ(store.flushes(), 1);
}

TEST(FaultInjectingBlockStoreTest, InjectsPerOpAndRange) {
  MemoryBlockStore base(SmallStore());
  FaultInjectingBlockStore store(base);
  store.InjectFault(BlockOp::kRead, absl::DataLossError("EIO"), 1, 50, 1);
  std::vector<uint8_t> out(512);
  absl::Status result;
  store.Read(49, 1, absl::MakeSpan(out), [&](absl::Status s) { result = s; });
  EXPECT_TRUE(result.ok());
  store.Read(50, 1, absl::MakeSpan(out), [&](absl::Status s) { result = s; });
  EXPECT_EQ(result.code(), absl::StatusCode::kDataLoss);
  store.Read(50, 1, absl::MakeSpan(out), [&](absl::Status s) { result = s; });
  EXPECT_TRUE(result.ok());  // count was 1
  EXPECT_EQ(store.count(BlockOp::kRead), 3);

  store.InjectFault(BlockOp::kWrite, absl::ResourceExhaustedError("ENOSPC"));
  std::vector<uint8_t> data(512, 1);
  store.Write(0, 1, data, false, [&](absl::Status s) { result = s; });
  EXPECT_EQ(result.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(base.IsMapped(0));
}

TEST(FaultInjectingBlockStoreTest, HoldsUntilReleased) {
  MemoryBlockStore base(SmallStore());
  FaultInjectingBlockStore store(base);
  store.Hold(BlockOp::kWrite);
  std::vector<uint8_t> data(512, 7);
  bool done = false;
  store.Write(3, 1, data, true, [&](absl::Status s) { done = s.ok(); });
  EXPECT_FALSE(done);
  EXPECT_FALSE(base.IsMapped(3));
  EXPECT_EQ(store.held_count(), 1u);
  EXPECT_EQ(store.ReleaseAll(), 1u);
  EXPECT_TRUE(done);
  EXPECT_TRUE(base.IsMapped(3));
  EXPECT_EQ(base.fua_writes(), 1);
}

}  // namespace
}  // namespace fakes
