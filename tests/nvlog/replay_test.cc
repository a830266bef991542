// Replay at takeover: committed, unretired entries reach the LUNs in sequence
// order and are flushed; uncommitted ones are dropped.
#include "appliance/nvlog/replay.h"

#include "appliance/nvlog/nvlog_replica.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/memory_block_store.h"

namespace nvlog {
namespace {

NvlogEntry Entry(uint64_t seq, uint64_t lun, uint64_t lba, char fill,
                 bool committed, uint32_t blocks = 1, bool retired = false) {
  NvlogEntry e;
  e.sequence = seq;
  e.lun = lun;
  e.lba = lba;
  e.block_count = blocks;
  e.data = std::string(blocks * 512, fill);
  e.committed = committed;
  e.retired = retired;
  return e;
}

std::vector<uint8_t> Fill(char c, size_t n = 512) {
  return std::vector<uint8_t>(n, static_cast<uint8_t>(c));
}

class ReplayTest : public ::testing::Test {
 protected:
  blockstore::BlockStore* Lookup(uint64_t lun) {
    if (lun == 0) return &lun0_;
    if (lun == 1) return &lun1_;
    return nullptr;
  }
  LunLookup lookup() {
    return [this](uint64_t lun) { return Lookup(lun); };
  }

  fakes::MemoryBlockStore lun0_{fakes::MemoryBlockStore::Options()};
  fakes::MemoryBlockStore lun1_{fakes::MemoryBlockStore::Options()};
};

TEST_F(ReplayTest, WritesCommittedEntriesInOrderAndDropsUncommitted) {
  // Given out of order: replay sorts. 1 and 3 overwrite the same block: 3 wins.
  std::vector<NvlogEntry> entries = {
      Entry(3, 0, 10, 'C', true),
      Entry(1, 0, 10, 'A', true, 2),
      Entry(2, 1, 5, 'B', true),
      Entry(4, 0, 11, 'R', true, 1, /*retired=*/true),
      Entry(5, 1, 6, 'U', false),  // the host never got an ack
      Entry(6, 0, 40, 'V', false),
  };
  auto stats = Replay(entries, lookup());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 3u);
  EXPECT_EQ(stats->dropped_uncommitted, 2u);
  EXPECT_EQ(stats->skipped_retired, 1u);
  EXPECT_EQ(stats->luns_flushed, 2u);

  EXPECT_EQ(lun0_.Peek(10, 1), Fill('C'));
  EXPECT_EQ(lun0_.Peek(11, 1), Fill('A'));  // entry 1's second block
  EXPECT_EQ(lun1_.Peek(5, 1), Fill('B'));
  EXPECT_FALSE(lun1_.IsMapped(6));
  EXPECT_FALSE(lun0_.IsMapped(40));
  EXPECT_EQ(lun0_.writes(), 2);
  EXPECT_EQ(lun1_.writes(), 1);
  EXPECT_EQ(lun0_.flushes(), 1);
  EXPECT_EQ(lun1_.flushes(), 1);
}

TEST_F(ReplayTest, RefusesALogWithAGapAndWritesNothing) {
  std::vector<NvlogEntry> entries = {Entry(1, 0, 0, 'A', true),
                                     Entry(3, 0, 1, 'C', true)};
  auto stats = Replay(entries, lookup());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(lun0_.writes(), 0);
  EXPECT_EQ(lun0_.flushes(), 0);
}

TEST_F(ReplayTest, RefusesEntriesThatDoNotFitTheirLunBeforeWriting) {
  auto unknown = Replay({Entry(1, 0, 0, 'A', true), Entry(2, 9, 0, 'B', true)},
                        lookup());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  auto beyond = Replay(
      {Entry(1, 0, 0, 'A', true), Entry(2, 0, lun0_.num_blocks(), 'B', true)},
      lookup());
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  NvlogEntry odd = Entry(2, 0, 0, 'B', true);
  odd.data.resize(4096);  // 4 KiB for one 512-byte block
  auto wrong_size = Replay({Entry(1, 0, 0, 'A', true), odd}, lookup());
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lun0_.writes(), 0);
}

TEST_F(ReplayTest, ReplaysWhatAReplicaHoldsCommitted) {
  // The partner's side of a takeover: the owner sent 1..3, committed 1..2,
  // retired 1, then died.
  NvlogReplica replica;
  interconnect::NvlogResyncRequest resync;
  resync.set_session(1);
  resync.set_first_sequence(1);
  ASSERT_TRUE(replica.ApplyResync(resync).ok());
  interconnect::NvlogBatch batch;
  batch.set_session(1);
  const char fills[] = {'A', 'B', 'C'};
  for (uint64_t s = 1; s <= 3; ++s) {
    interconnect::NvlogRecord* r = batch.add_records();
    r->set_sequence(s);
    r->set_lun(1);
    r->set_lba(s);
    r->set_block_count(1);
    r->set_data(std::string(512, fills[s - 1]));
  }
  batch.mutable_commit()->set_through(2);
  batch.mutable_retire()->set_through(1);
  ASSERT_TRUE(replica.ApplyBatch(batch).ok());
  replica.Freeze();
  ASSERT_TRUE(replica.CheckConsistency().ok());

  auto stats = Replay(replica.CommittedUnretired(), lookup());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 1u);
  EXPECT_EQ(lun1_.Peek(2, 1), Fill('B'));
  EXPECT_FALSE(lun1_.IsMapped(1));  // retired: already on the LUN
  EXPECT_FALSE(lun1_.IsMapped(3));  // uncommitted: dropped

  auto all = Replay(replica.Held(), lookup());
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->dropped_uncommitted, 1u);
  EXPECT_FALSE(lun1_.IsMapped(3));
}

}  // namespace
}  // namespace nvlog
