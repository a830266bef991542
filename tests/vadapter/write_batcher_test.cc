// WriteBatcher: the first item of an idle stream leaves alone at once; what
// queues behind an in-flight write leaves as one batch, in order, within the
// byte bound; a failed write drops what waited.
#include "vadapter/write_batcher.h"

#include <string>

#include "gtest/gtest.h"
#include "interconnect/proxy.pb.h"
#include "tests/interconnect/byte_buffers.h"
#include "vadapter/wire.h"

namespace vadapter {
namespace {

using Batcher = WriteBatcher;

WireItem Item(uint64_t id, size_t data_bytes = 0) {
  interconnect::Envelope e;
  e.set_request_id(id);
  e.mutable_scsi_command()->set_lun(1);
  return EncodeItem(e, kDataOut, std::vector<uint8_t>(data_bytes, 'd'));
}

// The request ids of a batch, read back from the stream message it makes.
std::vector<uint64_t> Ids(WireBatch& b) {
  interconnect::EnvelopeBatch parsed;
  EXPECT_TRUE(parsed.ParseFromString(interconnect_test::Flatten(b.Seal())));
  std::vector<uint64_t> ids;
  for (const auto& e : parsed.items()) ids.push_back(e.request_id());
  return ids;
}

TEST(WriteBatcherTest, IdleStreamSendsAtOnceAndQueuedItemsShareTheNextWrite) {
  Batcher w(1 << 20);
  WireBatch* first = w.Add(Item(1));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(Ids(*first), std::vector<uint64_t>({1}));
  EXPECT_TRUE(w.writing());
  for (uint64_t id = 2; id <= 5; ++id) EXPECT_EQ(w.Add(Item(id)), nullptr);
  // The in-flight batch is never appended to.
  EXPECT_EQ(Ids(*first), std::vector<uint64_t>({1}));
  EXPECT_EQ(w.items(), 5u);
  WireBatch* next = w.WriteDone(true);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(Ids(*next), std::vector<uint64_t>({2, 3, 4, 5}));
  EXPECT_EQ(w.Add(Item(6)), nullptr);
  next = w.WriteDone(true);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(Ids(*next), std::vector<uint64_t>({6}));
  EXPECT_EQ(w.WriteDone(true), nullptr);
  EXPECT_FALSE(w.writing());
  EXPECT_EQ(w.items(), 0u);
  // Idle again: the next item leaves at once.
  ASSERT_NE(w.Add(Item(7)), nullptr);
}

TEST(WriteBatcherTest, BatchesStayWithinTheByteBound) {
  Batcher w(10000);
  ASSERT_NE(w.Add(Item(1)), nullptr);
  for (uint64_t id = 2; id <= 7; ++id) EXPECT_EQ(w.Add(Item(id, 3000)), nullptr);
  // A single item beyond the bound still goes, alone.
  EXPECT_EQ(w.Add(Item(8, 50000)), nullptr);
  EXPECT_EQ(w.Add(Item(9)), nullptr);
  std::vector<std::vector<uint64_t>> batches;
  for (auto* b = w.WriteDone(true); b != nullptr; b = w.WriteDone(true)) {
    EXPECT_TRUE(b->bytes() <= 10000 || b->items_size() == 1);
    batches.push_back(Ids(*b));
  }
  EXPECT_EQ(batches, std::vector<std::vector<uint64_t>>(
                         {{2, 3, 4}, {5, 6, 7}, {8}, {9}}));
}

TEST(WriteBatcherTest, FailedWriteDropsWhatWaited) {
  Batcher w(1 << 20);
  ASSERT_NE(w.Add(Item(1)), nullptr);
  EXPECT_EQ(w.Add(Item(2)), nullptr);
  EXPECT_EQ(w.WriteDone(false), nullptr);
  EXPECT_FALSE(w.writing());
  EXPECT_EQ(w.items(), 0u);
}

TEST(WriteBatcherTest, DropQueuedKeepsOnlyTheInFlightBatch) {
  Batcher w(1 << 20);
  WireBatch* first = w.Add(Item(1));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(w.Add(Item(2)), nullptr);
  w.DropQueued();
  EXPECT_EQ(w.items(), 1u);
  EXPECT_TRUE(w.writing());
  EXPECT_EQ(Ids(*first), std::vector<uint64_t>({1}));
  EXPECT_EQ(w.WriteDone(true), nullptr);
  EXPECT_FALSE(w.writing());
}

TEST(WriteBatcherTest, HeldItemsOfAnIdleStreamLeaveTogetherOnRelease) {
  Batcher w(1 << 20);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(w.Add(Item(id), /*hold=*/true), nullptr);
  }
  EXPECT_FALSE(w.writing());
  EXPECT_EQ(w.items(), 3u);
  WireBatch* b = w.Release();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Ids(*b), std::vector<uint64_t>({1, 2, 3}));
  EXPECT_TRUE(w.writing());
  // In flight: a second Release has nothing to hand over, and held items
  // wait behind the write like any other.
  EXPECT_EQ(w.Release(), nullptr);
  EXPECT_EQ(w.Add(Item(4), /*hold=*/true), nullptr);
  EXPECT_EQ(w.Add(Item(5)), nullptr);
  EXPECT_EQ(Ids(*b), std::vector<uint64_t>({1, 2, 3}));
  b = w.WriteDone(true);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Ids(*b), std::vector<uint64_t>({4, 5}));
  EXPECT_EQ(w.WriteDone(true), nullptr);
  EXPECT_EQ(w.Release(), nullptr);
}

TEST(WriteBatcherTest, HeldItemsRespectTheByteBoundAndDropQueuedDropsThem) {
  Batcher w(10000);
  for (uint64_t id = 1; id <= 4; ++id) {
    EXPECT_EQ(w.Add(Item(id, 3000), /*hold=*/true), nullptr);
  }
  WireBatch* b = w.Release();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Ids(*b), std::vector<uint64_t>({1, 2, 3}));
  b = w.WriteDone(true);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Ids(*b), std::vector<uint64_t>({4}));
  EXPECT_EQ(w.WriteDone(true), nullptr);
  // Nothing in flight: DropQueued leaves nothing.
  EXPECT_EQ(w.Add(Item(5), /*hold=*/true), nullptr);
  w.DropQueued();
  EXPECT_EQ(w.items(), 0u);
  EXPECT_EQ(w.Release(), nullptr);
}

}  // namespace
}  // namespace vadapter
