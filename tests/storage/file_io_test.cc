// Tests of the FileIo engines (io_uring and thread pool) and the engine factory.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "appliance/storage/file_io.h"
#include "appliance/storage/file_io_factory.h"
#include "appliance/storage/thread_pool_file_io.h"
#include "gtest/gtest.h"
#include "tests/storage/storage_test_util.h"

namespace appliance::storage {
namespace {

using ::appliance::storage::testing::MakeEngineOrNull;
using ::appliance::storage::testing::NewTempPath;
using ::appliance::storage::testing::Pattern;
using ::appliance::storage::testing::ResultWaiter;

class FileIoTest : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    io_ = MakeEngineOrNull(GetParam(), /*queue_depth=*/4);
    if (io_ == nullptr) GTEST_SKIP() << "engine not available here";
    path_ = NewTempPath("file");
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd_, 8 << 20), 0);
  }
  void TearDown() override {
    io_.reset();
    if (fd_ >= 0) ::close(fd_);
  }

  std::unique_ptr<FileIo> io_;
  std::string path_;
  int fd_ = -1;
};

TEST_P(FileIoTest, WriteSyncReadRoundTrip) {
  const std::vector<uint8_t> data = Pattern(8192, 1);
  ResultWaiter wrote;
  io_->PWrite(fd_, absl::MakeConstSpan(data), 4096, wrote.Completion());
  EXPECT_EQ(wrote.Wait(), 8192);
  ResultWaiter synced;
  io_->FDataSync(fd_, synced.Completion());
  EXPECT_EQ(synced.Wait(), 0);
  std::vector<uint8_t> back(8192);
  ResultWaiter read;
  io_->PRead(fd_, absl::MakeSpan(back), 4096, read.Completion());
  EXPECT_EQ(read.Wait(), 8192);
  EXPECT_EQ(back, data);
}

TEST_P(FileIoTest, ReadAtEndOfFileIsShort) {
  std::vector<uint8_t> buf(8192);
  ResultWaiter read;
  io_->PRead(fd_, absl::MakeSpan(buf), (8 << 20) - 100, read.Completion());
  EXPECT_EQ(read.Wait(), 100);
}

TEST_P(FileIoTest, ErrorsAreNegativeErrno) {
  std::vector<uint8_t> buf(512);
  ResultWaiter read;
  io_->PRead(-1, absl::MakeSpan(buf), 0, read.Completion());
  EXPECT_EQ(read.Wait(), -EBADF);
  ResultWaiter sync;
  io_->FDataSync(-1, sync.Completion());
  EXPECT_EQ(sync.Wait(), -EBADF);
  EXPECT_EQ(io_->PunchHole(-1, 0, 4096), -EBADF);
  EXPECT_EQ(io_->SeekData(-1, 0), -EBADF);
}

TEST_P(FileIoTest, CompletionsRunOnAnIoThreadNotTheCaller) {
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  absl::Notification done;
  io_->Post([&](int64_t result) {
    EXPECT_EQ(result, 0);
    ran_on = std::this_thread::get_id();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_NE(ran_on, caller);
}

// A completion that submits again must not deadlock at the in-flight bound
// (queue depth 4 here), even while other threads keep the engine full.
TEST_P(FileIoTest, ResubmittingFromCompletionsDoesNotDeadlock) {
  constexpr int kChains = 16;
  constexpr int kLinks = 50;
  absl::BlockingCounter chains_done(kChains);
  std::vector<std::vector<uint8_t>> bufs(kChains, std::vector<uint8_t>(512));
  struct Chain {
    FileIo* io;
    int fd;
    uint8_t* buf;
    int left;
    absl::BlockingCounter* done;
    void Next() {
      io->PRead(fd, absl::MakeSpan(buf, 512), 0, [this](int64_t r) {
        EXPECT_EQ(r, 512);
        if (--left == 0) {
          done->DecrementCount();
        } else {
          Next();
        }
      });
    }
  };
  std::vector<Chain> chains;
  chains.reserve(kChains);
  for (int i = 0; i < kChains; ++i) {
    chains.push_back(Chain{io_.get(), fd_, bufs[i].data(), kLinks, &chains_done});
  }
  std::vector<std::thread> starters;
  for (int i = 0; i < kChains; ++i) {
    starters.emplace_back([&chains, i] { chains[i].Next(); });
  }
  for (std::thread& t : starters) t.join();
  chains_done.Wait();
}

// Regression: io_uring cancels a request (-ECANCELED) when the thread that
// entered the kernel for it exits first. Threads that submit and exit at once
// (like an iSCSI connection closing) must not lose their writes.
TEST_P(FileIoTest, OperationsOutliveTheThreadThatSubmittedThem) {
  constexpr int kThreads = 8;
  constexpr int kWritesPerThread = 32;
  constexpr size_t kSize = 16 * 1024;
  const std::vector<uint8_t> data = Pattern(kSize, 3);
  std::atomic<int> full{0};
  std::atomic<int> first_bad{1};
  absl::BlockingCounter pending(kThreads * kWritesPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int w = 0; w < kWritesPerThread; ++w) {
        const uint64_t offset = (uint64_t(t) * kWritesPerThread + w) * kSize;
        io_->PWrite(fd_, absl::MakeConstSpan(data), offset, [&](int64_t r) {
          if (r == static_cast<int64_t>(kSize)) {
            full.fetch_add(1);
          } else {
            first_bad.store(static_cast<int>(r));
          }
          pending.DecrementCount();
        });
      }
    });  // exits right after submitting
  }
  for (std::thread& thread : threads) thread.join();
  pending.Wait();
  EXPECT_EQ(full.load(), kThreads * kWritesPerThread)
      << "a write returned " << first_bad.load();
}

TEST_P(FileIoTest, DestructionWaitsForEverySubmittedOperation) {
  constexpr int kOps = 200;
  std::atomic<int> completed{0};
  std::vector<uint8_t> buf(4096);
  for (int i = 0; i < kOps; ++i) {
    io_->PRead(fd_, absl::MakeSpan(buf), 0,
               [&completed](int64_t) { completed.fetch_add(1); });
  }
  io_.reset();
  EXPECT_EQ(completed.load(), kOps);
}

TEST_P(FileIoTest, PunchHoleAndSeek) {
  const std::vector<uint8_t> data = Pattern(3 * 4096, 2);
  ResultWaiter wrote;
  io_->PWrite(fd_, absl::MakeConstSpan(data), 8192, wrote.Completion());
  ASSERT_EQ(wrote.Wait(), 3 * 4096);
  EXPECT_EQ(io_->SeekData(fd_, 0), 8192);
  EXPECT_EQ(io_->SeekHole(fd_, 8192), 8192 + 3 * 4096);
  ASSERT_EQ(io_->PunchHole(fd_, 8192, 4096), 0);
  EXPECT_EQ(io_->SeekData(fd_, 0), 8192 + 4096);
  EXPECT_EQ(io_->SeekData(fd_, 8192 + 3 * 4096), -ENXIO);
  std::vector<uint8_t> back(4096, 0xAA);
  ResultWaiter read;
  io_->PRead(fd_, absl::MakeSpan(back), 8192, read.Completion());
  ASSERT_EQ(read.Wait(), 4096);
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  struct stat st;
  ASSERT_EQ(::fstat(fd_, &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);  // FALLOC_FL_KEEP_SIZE
}

INSTANTIATE_TEST_SUITE_P(Engines, FileIoTest,
                         ::testing::Values(IoEngine::kUring,
                                           IoEngine::kThreadPool),
                         [](const auto& info) {
                           return std::string(IoEngineName(info.param));
                         });

// A small read the page cache holds completes on the caller's thread before
// PRead returns (no worker round trip); a larger one, a read past the end of
// the file and an error still go through a worker, with plain pread results.
TEST(ThreadPoolFileIoTest, CachedSmallReadsCompleteInlineOthersOnAWorker) {
  ThreadPoolFileIo::Options options;
  options.num_threads = 2;
  options.inline_read_max_bytes = 16384;
  auto io = ThreadPoolFileIo::Create(options);
  ASSERT_TRUE(io.ok()) << io.status();
  const std::string path = NewTempPath("inline");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::vector<uint8_t> data = Pattern(65536, 7);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), 65536);  // in the page cache

  const std::thread::id caller = std::this_thread::get_id();
  struct Seen {
    bool ran = false;
    int64_t result = 0;
    std::thread::id on;
  };
  auto read = [&](size_t length, uint64_t offset, std::vector<uint8_t>* buf) {
    buf->assign(length, 0);
    auto seen = std::make_shared<Seen>();
    absl::Notification done;
    (*io)->PRead(fd, absl::MakeSpan(*buf), offset, [seen, &done](int64_t r) {
      seen->ran = true;
      seen->result = r;
      seen->on = std::this_thread::get_id();
      done.Notify();
    });
    const bool ran_before_return = seen->ran;
    done.WaitForNotification();
    return std::make_pair(ran_before_return, *seen);
  };

  std::vector<uint8_t> buf;
  auto [inline_small, small] = read(4096, 8192, &buf);
  EXPECT_TRUE(inline_small);
  EXPECT_EQ(small.on, caller);
  EXPECT_EQ(small.result, 4096);
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + 8192));

  // (A worker may finish before PRead returns: its thread tells.)
  auto [unused_large, large] = read(32768, 0, &buf);
  EXPECT_NE(large.on, caller);
  EXPECT_EQ(large.result, 32768);
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin()));

  // Past the end: the short read is the worker's pread result.
  auto [unused_eof, eof] = read(8192, 65536 - 100, &buf);
  EXPECT_NE(eof.on, caller);
  EXPECT_EQ(eof.result, 100);

  ::close(fd);
  std::vector<uint8_t> small_buf(512);
  ResultWaiter bad;
  (*io)->PRead(fd, absl::MakeSpan(small_buf), 0, bad.Completion());
  EXPECT_EQ(bad.Wait(), -EBADF);
}

// Writes queued behind a busy worker that continue each other in one file
// go out as one pwritev, each with its own result; a gap, another file or the
// byte bound starts a new syscall; a failing batch fails every write in it.
TEST(ThreadPoolFileIoTest, AdjacentQueuedWritesCoalesce) {
  ThreadPoolFileIo::Options options;
  options.num_threads = 1;
  options.coalesce_write_max_bytes = 6 * 4096;
  auto io = ThreadPoolFileIo::Create(options);
  ASSERT_TRUE(io.ok()) << io.status();
  const std::string path = NewTempPath("coalesce");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const int read_only = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(read_only, 0);

  absl::Notification release;
  (*io)->Post([&release](int64_t) { release.WaitForNotification(); });
  // Offsets in 4 KiB blocks: 0..7 contiguous (6-block bound: 0-5, 6-7), a
  // gap, 10..11, then three on a read-only descriptor (contiguous).
  const std::vector<uint64_t> blocks = {0, 1, 2, 3, 4, 5, 6, 7, 10, 11};
  std::vector<std::vector<uint8_t>> data;
  for (uint64_t b : blocks) data.push_back(Pattern(4096, static_cast<int>(b) + 1));
  std::vector<std::unique_ptr<ResultWaiter>> results;
  for (size_t i = 0; i < blocks.size(); ++i) {
    results.push_back(std::make_unique<ResultWaiter>());
    (*io)->PWrite(fd, absl::MakeConstSpan(data[i]), blocks[i] * 4096,
                  results.back()->Completion());
  }
  std::vector<std::unique_ptr<ResultWaiter>> failed;
  for (uint64_t b = 20; b < 23; ++b) {
    failed.push_back(std::make_unique<ResultWaiter>());
    (*io)->PWrite(read_only, absl::MakeConstSpan(data[0]), b * 4096,
                  failed.back()->Completion());
  }
  release.Notify();
  for (auto& r : results) EXPECT_EQ(r->Wait(), 4096);
  for (auto& r : failed) EXPECT_EQ(r->Wait(), -EBADF);
  // 0-5, 6-7, 10-11, and the failing batch.
  EXPECT_EQ((*io)->writes(), 13u);
  EXPECT_EQ((*io)->write_syscalls(), 4u);
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::vector<uint8_t> back(4096);
    ASSERT_EQ(::pread(fd, back.data(), back.size(), blocks[i] * 4096), 4096);
    EXPECT_EQ(back, data[i]) << "block " << blocks[i];
  }
  ::close(read_only);
  ::close(fd);
}

TEST(FileIoFactoryTest, ThreadPoolOnRequest) {
  FileIoOptions options;
  options.engine = IoEngine::kThreadPool;
  absl::StatusOr<CreatedFileIo> created = CreateFileIo(options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->engine, IoEngine::kThreadPool);
  EXPECT_EQ(created->io->name(), "thread_pool");
}

TEST(FileIoFactoryTest, AutoPrefersUringAndReportsTheChoice) {
  absl::StatusOr<CreatedFileIo> created = CreateFileIo(FileIoOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  if (created->engine == IoEngine::kUring) {
    EXPECT_EQ(created->io->name(), "io_uring");
    EXPECT_TRUE(created->uring_error.ok());
  } else {
    // This machine forbids io_uring: the fallback must say why.
    EXPECT_EQ(created->io->name(), "thread_pool");
    EXPECT_FALSE(created->uring_error.ok());
  }
}

// A ring larger than the kernel allows (32768 entries) cannot be set up:
// kAuto falls back to the pool, kUring fails.
TEST(FileIoFactoryTest, FallsBackToThreadPoolWhenUringCannotStart) {
  FileIoOptions options;
  options.queue_depth = 1 << 20;
  absl::StatusOr<CreatedFileIo> created = CreateFileIo(options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->engine, IoEngine::kThreadPool);
  EXPECT_EQ(created->io->name(), "thread_pool");
  EXPECT_EQ(created->uring_error.code(), absl::StatusCode::kUnavailable);

  options.engine = IoEngine::kUring;
  EXPECT_EQ(CreateFileIo(options).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(FileIoFactoryTest, RejectsZeroSizedPool) {
  FileIoOptions options;
  options.engine = IoEngine::kThreadPool;
  options.pool_threads = 0;
  EXPECT_EQ(CreateFileIo(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace appliance::storage
