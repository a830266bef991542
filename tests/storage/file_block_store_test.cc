// Tests of FileBlockStore over both engines and both block sizes.
#include "appliance/storage/file_block_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "appliance/storage/identity.h"
#include "gtest/gtest.h"
#include "tests/storage/storage_test_util.h"

namespace appliance::storage {
namespace {

using ::appliance::storage::testing::MakeEngineOrNull;
using ::appliance::storage::testing::NewTempPath;
using ::appliance::storage::testing::Pattern;
using ::appliance::storage::testing::ReadSync;
using ::appliance::storage::testing::StatusWaiter;
using ::appliance::storage::testing::UnmapSync;
using ::appliance::storage::testing::WriteSync;
using ::appliance::storage::testing::FlushSync;
using ::blockstore::AllocationExtent;

constexpr uint64_t kBlocks = 1024;

class FileBlockStoreTest
    : public ::testing::TestWithParam<std::tuple<IoEngine, uint32_t>> {
 protected:
  void SetUp() override {
    io_ = MakeEngineOrNull(engine());
    if (io_ == nullptr) GTEST_SKIP() << "engine not available here";
    path_ = NewTempPath("lun");
    options_.block_size = block_size();
    options_.identity = *MakeLunIdentityFromSeed(path_);
    options_.file_io = io_.get();
  }

  IoEngine engine() const { return std::get<0>(GetParam()); }
  uint32_t block_size() const { return std::get<1>(GetParam()); }

  std::unique_ptr<FileBlockStore> CreateStore(uint64_t blocks = kBlocks) {
    absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
        FileBlockStore::Create(path_, blocks * block_size(), options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<FileBlockStore> OpenStore() {
    absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
        FileBlockStore::Open(path_, options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::vector<uint8_t> Blocks(uint64_t count, uint32_t seed) const {
    return Pattern(count * block_size(), seed);
  }
  std::vector<uint8_t> Zeros(uint64_t count) const {
    return std::vector<uint8_t>(count * block_size(), 0);
  }

  std::unique_ptr<FileIo> io_;
  std::string path_;
  FileBlockStore::Options options_;
};

TEST_P(FileBlockStoreTest, CreateReportsGeometryAndIdentity) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->block_size(), block_size());
  EXPECT_EQ(store->num_blocks(), kBlocks);
  EXPECT_EQ(store->identity().naa_id, options_.identity.naa_id);
  EXPECT_EQ(store->path(), path_);
  EXPECT_EQ(store->io_engine(), IoEngineName(engine()));
}

TEST_P(FileBlockStoreTest, WriteThenReadBack) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  const std::vector<uint8_t> data = Blocks(8, 1);
  ASSERT_TRUE(WriteSync(*store, 100, data).ok());
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 100, 8, back).ok());
  EXPECT_EQ(back, data);
  // Neighbours were never written and read as zeros.
  ASSERT_TRUE(ReadSync(*store, 99, 1, back).ok());
  EXPECT_EQ(back, Zeros(1));
  ASSERT_TRUE(ReadSync(*store, 108, 1, back).ok());
  EXPECT_EQ(back, Zeros(1));
  // The last block is addressable.
  ASSERT_TRUE(WriteSync(*store, kBlocks - 1, Blocks(1, 2), /*fua=*/true).ok());
  ASSERT_TRUE(ReadSync(*store, kBlocks - 1, 1, back).ok());
  EXPECT_EQ(back, Blocks(1, 2));
  EXPECT_TRUE(FlushSync(*store).ok());
}

TEST_P(FileBlockStoreTest, DataSurvivesCloseAndReopen) {
  const std::vector<uint8_t> data = Blocks(16, 3);
  {
    auto store = CreateStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(WriteSync(*store, 7, data, /*fua=*/true).ok());
    ASSERT_TRUE(WriteSync(*store, 500, data).ok());
    ASSERT_TRUE(FlushSync(*store).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->num_blocks(), kBlocks);
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 7, 16, back).ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(ReadSync(*store, 500, 16, back).ok());
  EXPECT_EQ(back, data);
}

TEST_P(FileBlockStoreTest, CreatedFileIsSparse) {
  constexpr uint64_t kBig = uint64_t{1} << 30;  // 1 GiB
  absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
      FileBlockStore::Create(path_, kBig, options_);
  ASSERT_TRUE(store.ok()) << store.status();
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kBig);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20);
  absl::StatusOr<AllocationExtent> extent = (*store)->QueryAllocation(0);
  ASSERT_TRUE(extent.ok()) << extent.status();
  EXPECT_FALSE(extent->mapped);
  EXPECT_EQ(extent->num_blocks, kBig / block_size());
}

TEST_P(FileBlockStoreTest, CreateNeverOverwritesAnExistingFile) {
  const std::vector<uint8_t> data = Blocks(1, 4);
  {
    auto store = CreateStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(WriteSync(*store, 0, data).ok());
  }
  EXPECT_EQ(FileBlockStore::Create(path_, 2 * kBlocks * block_size(), options_)
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->num_blocks(), kBlocks);
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 0, 1, back).ok());
  EXPECT_EQ(back, data);
}

TEST_P(FileBlockStoreTest, CreateRejectsBadGeometry) {
  EXPECT_EQ(FileBlockStore::Create(path_, 0, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FileBlockStore::Create(path_, block_size() * 10 + 1, options_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  FileBlockStore::Options bad = options_;
  bad.block_size = 1024;
  EXPECT_EQ(FileBlockStore::Create(path_, 1 << 20, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing was left behind.
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
}

TEST_P(FileBlockStoreTest, OpenChecksTheFile) {
  EXPECT_EQ(FileBlockStore::Open(path_, options_).status().code(),
            absl::StatusCode::kNotFound);
  {
    FILE* f = ::fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ::fputs("not a multiple of the block size", f);
    ::fclose(f);
  }
  EXPECT_EQ(FileBlockStore::Open(path_, options_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(FileBlockStoreTest, DeleteBackingFile) {
  CreateStore().reset();
  EXPECT_TRUE(DeleteBackingFile(path_).ok());
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
  EXPECT_EQ(DeleteBackingFile(path_).code(), absl::StatusCode::kNotFound);
}

TEST_P(FileBlockStoreTest, OutOfRangeRequestsFailBeforeAnyIo) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  std::vector<uint8_t> back;
  EXPECT_EQ(ReadSync(*store, kBlocks, 1, back).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadSync(*store, kBlocks - 1, 2, back).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadSync(*store, std::numeric_limits<uint64_t>::max(), 1, back)
                .code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(WriteSync(*store, kBlocks - 3, Blocks(4, 5)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(UnmapSync(*store, kBlocks - 1, 2).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(UnmapSync(*store, 1, std::numeric_limits<uint64_t>::max()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store->QueryAllocation(kBlocks).status().code(),
            absl::StatusCode::kOutOfRange);
  // The file did not grow and nothing was written.
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kBlocks * block_size());
  EXPECT_FALSE(store->QueryAllocation(0)->mapped);
}

TEST_P(FileBlockStoreTest, BufferOfTheWrongSizeIsInvalidArgument) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  std::vector<uint8_t> small(block_size() * 2 - 1);
  StatusWaiter read;
  store->Read(0, 2, absl::MakeSpan(small), read.Callback());
  EXPECT_EQ(read.Wait().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> big = Blocks(3, 6);
  StatusWaiter write;
  store->Write(0, 2, absl::MakeConstSpan(big), false, write.Callback());
  EXPECT_EQ(write.Wait().code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 0, 3, back).ok());
  EXPECT_EQ(back, Zeros(3));
}

TEST_P(FileBlockStoreTest, CallbacksRunOnIoThreadsEvenForRejections) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  absl::Notification done;
  std::vector<uint8_t> buf(block_size());
  store->Read(kBlocks, 1, absl::MakeSpan(buf), [&](absl::Status status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
    ran_on = std::this_thread::get_id();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_NE(ran_on, caller);
}

TEST_P(FileBlockStoreTest, UnmapReadsZerosAndReportsAllocation) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  // Work in 4 KiB-aligned runs so the file system's allocation unit (4 KiB
  // here) maps exactly onto whole blocks for both block sizes.
  const uint64_t per_4k = 4096 / block_size();
  const uint64_t run = 16 * per_4k;
  ASSERT_TRUE(WriteSync(*store, run, Blocks(3 * run, 7)).ok());

  absl::StatusOr<AllocationExtent> e = store->QueryAllocation(0);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->lba, 0u);
  EXPECT_EQ(e->num_blocks, run);
  EXPECT_FALSE(e->mapped);
  e = store->QueryAllocation(run);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->mapped);
  EXPECT_EQ(e->num_blocks, 3 * run);

  ASSERT_TRUE(UnmapSync(*store, 2 * run, run).ok());
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 2 * run, run, back).ok());
  EXPECT_EQ(back, Zeros(run));
  // Data around the hole is untouched.
  ASSERT_TRUE(ReadSync(*store, run, 3 * run, back).ok());
  std::vector<uint8_t> expected = Blocks(3 * run, 7);
  std::fill(expected.begin() + run * block_size(),
            expected.begin() + 2 * run * block_size(), 0);
  EXPECT_EQ(back, expected);

  e = store->QueryAllocation(run);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->mapped);
  EXPECT_EQ(e->num_blocks, run);
  e = store->QueryAllocation(2 * run);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->mapped);
  EXPECT_EQ(e->num_blocks, run);
  e = store->QueryAllocation(2 * run + 1);  // starts inside a run
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->mapped);
  EXPECT_EQ(e->lba, 2 * run + 1);
  EXPECT_EQ(e->num_blocks, run - 1);
  e = store->QueryAllocation(3 * run);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->mapped);
  EXPECT_EQ(e->num_blocks, run);
  e = store->QueryAllocation(4 * run);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->mapped);
  EXPECT_EQ(e->num_blocks, kBlocks - 4 * run);
  e = store->QueryAllocation(kBlocks - 1);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->mapped);
  EXPECT_EQ(e->num_blocks, 1u);

  // Unmapping everything leaves one deallocated run.
  ASSERT_TRUE(UnmapSync(*store, 0, kBlocks).ok());
  e = store->QueryAllocation(0);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->mapped);
  EXPECT_EQ(e->num_blocks, kBlocks);
}

TEST_P(FileBlockStoreTest, ManyConcurrentWritesToDisjointRangesAllLand) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kWritesPerThread = 64;
  constexpr uint32_t kBlocksPerWrite = 4;
  static_assert(kThreads * kWritesPerThread * kBlocksPerWrite <= kBlocks, "");
  std::vector<std::vector<uint8_t>> data(kThreads * kWritesPerThread);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = Blocks(kBlocksPerWrite, 100 + i);
  }
  absl::BlockingCounter pending(kThreads * kWritesPerThread);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int w = 0; w < kWritesPerThread; ++w) {
        // Interleave the threads' ranges across the LU.
        const int index = w * kThreads + t;
        store->Write(uint64_t(index) * kBlocksPerWrite, kBlocksPerWrite,
                     absl::MakeConstSpan(data[index]), /*fua=*/index % 8 == 0,
                     [&](absl::Status status) {
                       if (!status.ok() && failures.fetch_add(1) == 0) {
                         ADD_FAILURE() << status;
                       }
                       pending.DecrementCount();
                     });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  pending.Wait();
  EXPECT_EQ(failures.load(), 0);
  std::vector<uint8_t> back;
  for (size_t i = 0; i < data.size(); ++i) {
    ASSERT_TRUE(ReadSync(*store, i * kBlocksPerWrite, kBlocksPerWrite, back).ok());
    EXPECT_EQ(back, data[i]) << "write " << i;
  }
}

TEST_P(FileBlockStoreTest, ClosedStoreAnswersUnavailable) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(WriteSync(*store, 0, Blocks(1, 8)).ok());
  store->Close();
  store->Close();  // idempotent
  std::vector<uint8_t> back;
  EXPECT_EQ(ReadSync(*store, 0, 1, back).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(WriteSync(*store, 0, Blocks(1, 9)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FlushSync(*store).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(UnmapSync(*store, 0, 1).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store->QueryAllocation(0).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_P(FileBlockStoreTest, CloseWaitsForRequestsInFlight) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  constexpr int kWrites = 64;
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < kWrites; ++i) data.push_back(Blocks(1, 200 + i));
  std::atomic<int> ok{0};
  for (int i = 0; i < kWrites; ++i) {
    store->Write(i, 1, absl::MakeConstSpan(data[i]), false,
                 [&ok](absl::Status s) {
                   if (s.ok()) ok.fetch_add(1);
                 });
  }
  store->Close();
  EXPECT_EQ(ok.load(), kWrites);
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::vector<uint8_t> back;
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(ReadSync(*store, i, 1, back).ok());
    EXPECT_EQ(back, data[i]);
  }
}

TEST_P(FileBlockStoreTest, ZeroLengthRequestsSucceedWithoutIo) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  std::vector<uint8_t> none;
  StatusWaiter read;
  store->Read(5, 0, absl::MakeSpan(none), read.Callback());
  EXPECT_TRUE(read.Wait().ok());
  EXPECT_TRUE(UnmapSync(*store, 5, 0).ok());
}

// Building its own engine (no FileIo injected) works too.
TEST_P(FileBlockStoreTest, BuildsItsOwnEngine) {
  options_.file_io = nullptr;
  options_.io.engine = engine();
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->io_engine(), IoEngineName(engine()));
  ASSERT_TRUE(WriteSync(*store, 3, Blocks(2, 10)).ok());
  std::vector<uint8_t> back;
  ASSERT_TRUE(ReadSync(*store, 3, 2, back).ok());
  EXPECT_EQ(back, Blocks(2, 10));
}

INSTANTIATE_TEST_SUITE_P(
    EnginesAndBlockSizes, FileBlockStoreTest,
    ::testing::Combine(::testing::Values(IoEngine::kUring,
                                         IoEngine::kThreadPool),
                       ::testing::Values(512u, 4096u)),
    [](const auto& info) {
      return absl::StrCat(IoEngineName(std::get<0>(info.param)), "_",
                          std::get<1>(info.param));
    });

}  // namespace
}  // namespace appliance::storage
