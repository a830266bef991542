// FileBlockStore under injected faults: every fault surfaces as the Status
// block_store.h prescribes and no acknowledged data is lost.
#include <errno.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/time.h"
#include "appliance/storage/fault_injecting_file_io.h"
#include "appliance/storage/file_block_store.h"
#include "gtest/gtest.h"
#include "tests/storage/storage_test_util.h"

namespace appliance::storage {
namespace {

using ::appliance::storage::testing::FlushSync;
using ::appliance::storage::testing::MakeEngineOrNull;
using ::appliance::storage::testing::NewTempPath;
using ::appliance::storage::testing::Pattern;
using ::appliance::storage::testing::ReadSync;
using ::appliance::storage::testing::UnmapSync;
using ::appliance::storage::testing::WriteSync;

constexpr uint32_t kBlockSize = 4096;
constexpr uint64_t kBlocks = 256;

class FaultTest : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    std::unique_ptr<FileIo> engine = MakeEngineOrNull(GetParam());
    if (engine == nullptr) GTEST_SKIP() << "engine not available here";
    faults_ = std::make_unique<FaultInjectingFileIo>(std::move(engine));
    path_ = NewTempPath("lun");
    options_.block_size = kBlockSize;
    options_.file_io = faults_.get();
    absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
        FileBlockStore::Create(path_, kBlocks * kBlockSize, options_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    store_.reset();
    faults_.reset();
  }

  // Reads through a store without faults, as a restarted node would.
  std::vector<uint8_t> ReadAfterRestart(uint64_t lba, uint32_t blocks) {
    store_.reset();
    faults_->ClearFaults();
    absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
        FileBlockStore::Open(path_, options_);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    std::vector<uint8_t> back;
    EXPECT_TRUE(ReadSync(*store_, lba, blocks, back).ok());
    return back;
  }

  static uint64_t Offset(uint64_t lba) { return lba * kBlockSize; }
  static std::vector<uint8_t> Blocks(uint64_t count, uint32_t seed) {
    return Pattern(count * kBlockSize, seed);
  }

  std::unique_ptr<FaultInjectingFileIo> faults_;
  std::string path_;
  FileBlockStore::Options options_;
  std::unique_ptr<FileBlockStore> store_;
};

TEST_P(FaultTest, WriteEioIsDataLossAndEarlierWritesAreIntact) {
  const std::vector<uint8_t> first = Blocks(8, 1);
  ASSERT_TRUE(WriteSync(*store_, 0, first).ok());
  faults_->FailNext(FileIoOp::kWrite, EIO);
  absl::Status failed = WriteSync(*store_, 8, Blocks(8, 2));
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss) << failed;
  EXPECT_EQ(faults_->faults_fired(), 1);
  // Only the next write failed.
  const std::vector<uint8_t> third = Blocks(8, 3);
  ASSERT_TRUE(WriteSync(*store_, 16, third).ok());
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store_, 0, 8, back).ok());
  EXPECT_EQ(back, first);
  EXPECT_EQ(ReadAfterRestart(16, 8), third);
  EXPECT_EQ(ReadAfterRestart(0, 8), first);
}

TEST_P(FaultTest, ReadEioIsDataLoss) {
  const std::vector<uint8_t> data = Blocks(4, 4);
  ASSERT_TRUE(WriteSync(*store_, 10, data).ok());
  faults_->FailNext(FileIoOp::kRead, EIO);
  std::vector<uint8_t> back;
  EXPECT_EQ(ReadSync(*store_, 10, 4, back).code(), absl::StatusCode::kDataLoss);
  ASSERT_TRUE(ReadSync(*store_, 10, 4, back).ok());
  EXPECT_EQ(back, data);
}

TEST_P(FaultTest, EnospcIsResourceExhausted) {
  faults_->FailNext(FileIoOp::kWrite, ENOSPC);
  EXPECT_EQ(WriteSync(*store_, 0, Blocks(1, 5)).code(),
            absl::StatusCode::kResourceExhausted);
  faults_->FailNext(FileIoOp::kPunch, ENOSPC);
  EXPECT_EQ(UnmapSync(*store_, 0, 1).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_P(FaultTest, OtherErrnoIsInternalWithItsText) {
  faults_->FailNext(FileIoOp::kWrite, EINVAL);
  absl::Status status = WriteSync(*store_, 0, Blocks(1, 6));
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(status.message(), std::strerror(EINVAL)))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), path_)) << status;
}

TEST_P(FaultTest, SyncFailuresFailFuaWritesAndFlush) {
  faults_->FailNext(FileIoOp::kSync, EIO);
  EXPECT_EQ(WriteSync(*store_, 0, Blocks(1, 7), /*fua=*/true).code(),
            absl::StatusCode::kDataLoss);
  faults_->FailNext(FileIoOp::kSync, EIO);
  EXPECT_EQ(FlushSync(*store_).code(), absl::StatusCode::kDataLoss);
  faults_->FailNext(FileIoOp::kSync, ENOSPC);
  EXPECT_EQ(FlushSync(*store_).code(), absl::StatusCode::kResourceExhausted);
  // A plain write does not sync, so a pending sync fault does not touch it.
  faults_->FailNext(FileIoOp::kSync, EIO);
  EXPECT_TRUE(WriteSync(*store_, 1, Blocks(1, 8)).ok());
  EXPECT_EQ(FlushSync(*store_).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(FlushSync(*store_).ok());
}

TEST_P(FaultTest, PunchEioFailsUnmapAndKeepsTheData) {
  const std::vector<uint8_t> data = Blocks(2, 9);
  ASSERT_TRUE(WriteSync(*store_, 4, data).ok());
  faults_->FailNext(FileIoOp::kPunch, EIO);
  EXPECT_EQ(UnmapSync(*store_, 4, 2).code(), absl::StatusCode::kDataLoss);
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store_, 4, 2, back).ok());
  EXPECT_EQ(back, data);
}

TEST_P(FaultTest, FaultsLimitedToARangeSpareOtherBlocks) {
  faults_->FailNext(FileIoOp::kWrite, EIO, FaultInjectingFileIo::kForever,
                    ByteRange{Offset(100), Offset(10)});
  const std::vector<uint8_t> outside = Blocks(4, 10);
  EXPECT_TRUE(WriteSync(*store_, 90, outside).ok());
  EXPECT_TRUE(WriteSync(*store_, 110, outside).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(WriteSync(*store_, 98, Blocks(4, 11)).code(),  // overlaps 100
              absl::StatusCode::kDataLoss);
    EXPECT_EQ(WriteSync(*store_, 105, Blocks(1, 11)).code(),
              absl::StatusCode::kDataLoss);
  }
  EXPECT_EQ(faults_->faults_fired(), 6);
  EXPECT_EQ(ReadAfterRestart(90, 4), outside);
  EXPECT_EQ(ReadAfterRestart(110, 4), outside);
}

TEST_P(FaultTest, EveryReadFailsUntilCleared) {
  faults_->FailNext(FileIoOp::kRead, EIO, FaultInjectingFileIo::kForever);
  std::vector<uint8_t> back;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ReadSync(*store_, i, 1, back).code(), absl::StatusCode::kDataLoss);
  }
  faults_->ClearFaults();
  EXPECT_TRUE(ReadSync(*store_, 0, 1, back).ok());
}

TEST_P(FaultTest, ShortWritesAreCompletedTransparently) {
  // Every write transfers at most 1000 bytes (not a block multiple): a 64 KiB
  // write takes 66 submissions.
  faults_->ShortenNext(FileIoOp::kWrite, 1000, FaultInjectingFileIo::kForever);
  const std::vector<uint8_t> data = Blocks(16, 12);
  ASSERT_TRUE(WriteSync(*store_, 20, data, /*fua=*/true).ok());
  EXPECT_EQ(faults_->faults_fired(), (16 * kBlockSize + 999) / 1000);
  // Down to a single byte per submission.
  faults_->ClearFaults();
  faults_->ShortenNext(FileIoOp::kWrite, 1, FaultInjectingFileIo::kForever);
  const std::vector<uint8_t> one = Blocks(1, 13);
  ASSERT_TRUE(WriteSync(*store_, 40, one).ok());
  EXPECT_EQ(ReadAfterRestart(20, 16), data);
  EXPECT_EQ(ReadAfterRestart(40, 1), one);
}

TEST_P(FaultTest, ShortWriteThenEioReportsTheErrorAndKeepsEarlierData) {
  const std::vector<uint8_t> before = Blocks(4, 14);
  ASSERT_TRUE(WriteSync(*store_, 0, before).ok());
  faults_->ShortenNext(FileIoOp::kWrite, 4096, 1);
  faults_->FailNext(FileIoOp::kWrite, EIO, 1);
  EXPECT_EQ(WriteSync(*store_, 4, Blocks(4, 15)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(faults_->faults_fired(), 2);
  EXPECT_EQ(ReadAfterRestart(0, 4), before);
}

TEST_P(FaultTest, ShortReadsAreCompletedTransparently) {
  const std::vector<uint8_t> data = Blocks(8, 16);
  ASSERT_TRUE(WriteSync(*store_, 30, data).ok());
  faults_->ShortenNext(FileIoOp::kRead, 777, FaultInjectingFileIo::kForever);
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store_, 30, 8, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_GT(faults_->faults_fired(), 40);
}

TEST_P(FaultTest, InterruptedCallsAreRetried) {
  faults_->FailNext(FileIoOp::kWrite, EINTR, 3);
  faults_->FailNext(FileIoOp::kRead, EAGAIN, 2);
  const std::vector<uint8_t> data = Blocks(2, 17);
  ASSERT_TRUE(WriteSync(*store_, 50, data).ok());
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store_, 50, 2, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_EQ(faults_->faults_fired(), 5);
}

// With latency and short writes, a FUA write's fdatasync must still be issued
// only after every piece of the write has completed.
TEST_P(FaultTest, FuaSyncFollowsEveryPieceOfTheWriteUnderLatency) {
  faults_->SetLatency(absl::ZeroDuration(), absl::Milliseconds(2));
  faults_->ShortenNext(FileIoOp::kWrite, 3 * 1024, FaultInjectingFileIo::kForever);
  faults_->RecordEvents(true);
  const std::vector<uint8_t> data = Blocks(8, 18);
  ASSERT_TRUE(WriteSync(*store_, 60, data, /*fua=*/true).ok());
  const std::vector<FileIoEvent> events = faults_->events();
  int write_completions = 0;
  bool sync_seen = false;
  uint64_t next_offset = Offset(60);
  for (const FileIoEvent& e : events) {
    if (e.op == FileIoOp::kWrite && e.kind == FileIoEvent::Kind::kSubmitted) {
      EXPECT_FALSE(sync_seen);
      // Pieces go in order, each after the previous one completed.
      EXPECT_EQ(e.offset, next_offset);
    }
    if (e.op == FileIoOp::kWrite && e.kind == FileIoEvent::Kind::kCompleted) {
      EXPECT_FALSE(sync_seen) << "write completed after the sync was issued";
      next_offset = e.offset + e.result;
      ++write_completions;
    }
    if (e.op == FileIoOp::kSync && e.kind == FileIoEvent::Kind::kSubmitted) {
      sync_seen = true;
      EXPECT_EQ(next_offset, Offset(68));
    }
  }
  EXPECT_TRUE(sync_seen);
  EXPECT_EQ(write_completions, (8 * 4096 + 3071) / 3072);
  EXPECT_EQ(ReadAfterRestart(60, 8), data);
}

// Random latency reorders completions of independent requests, but a request's
// callback always means its data is readable: each write's callback issues a
// read of the same blocks, which must see the new data.
TEST_P(FaultTest, CompletionMeansReadableUnderRandomLatency) {
  faults_->SetLatency(absl::ZeroDuration(), absl::Milliseconds(1));
  constexpr int kWrites = 48;
  std::vector<std::vector<uint8_t>> data(kWrites);
  std::vector<std::vector<uint8_t>> back(kWrites,
                                         std::vector<uint8_t>(2 * kBlockSize));
  for (int i = 0; i < kWrites; ++i) data[i] = Blocks(2, 300 + i);
  absl::BlockingCounter pending(kWrites);
  std::atomic<int> mismatches{0};
  std::atomic<int> errors{0};
  for (int i = 0; i < kWrites; ++i) {
    store_->Write(2 * i, 2, absl::MakeConstSpan(data[i]), i % 4 == 0,
                  [&, i](absl::Status status) {
                    if (!status.ok()) {
                      errors.fetch_add(1);
                      pending.DecrementCount();
                      return;
                    }
                    store_->Read(2 * i, 2, absl::MakeSpan(back[i]),
                                 [&, i](absl::Status read_status) {
                                   if (!read_status.ok()) errors.fetch_add(1);
                                   if (back[i] != data[i]) {
                                     mismatches.fetch_add(1);
                                   }
                                   pending.DecrementCount();
                                 });
                  });
  }
  pending.Wait();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  // A flush after all those completions covers them all.
  EXPECT_TRUE(FlushSync(*store_).ok());
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(ReadAfterRestart(2 * i, 2), data[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, FaultTest,
                         ::testing::Values(IoEngine::kUring,
                                           IoEngine::kThreadPool),
                         [](const auto& info) {
                           return std::string(IoEngineName(info.param));
                         });

}  // namespace
}  // namespace appliance::storage
