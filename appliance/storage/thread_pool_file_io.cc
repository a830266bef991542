#include "appliance/storage/thread_pool_file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "absl/status/status.h"
#include "common/defer_scope.h"
#include "common/thread_name.h"

namespace appliance::storage {
namespace {
// The pool whose worker is running on this thread, if any.
thread_local const ThreadPoolFileIo* current_pool = nullptr;
}  // namespace

absl::StatusOr<std::unique_ptr<ThreadPoolFileIo>> ThreadPoolFileIo::Create(
    const Options& options) {
  if (options.num_threads == 0 || options.max_queued == 0) {
    return absl::InvalidArgumentError(
        "ThreadPoolFileIo needs num_threads >= 1 and max_queued >= 1");
  }
  return std::unique_ptr<ThreadPoolFileIo>(new ThreadPoolFileIo(options));
}

ThreadPoolFileIo::ThreadPoolFileIo(const Options& options) : options_(options) {
  workers_.reserve(options_.num_threads);
  for (uint32_t i = 0; i < options_.num_threads; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPoolFileIo::~ThreadPoolFileIo() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Workers drain the queue before they exit (see WorkerLoop).
  for (std::thread& worker : workers_) worker.join();
}

bool ThreadPoolFileIo::OnWorkerThread() const { return current_pool == this; }

void ThreadPoolFileIo::Enqueue(Work work) {
  absl::MutexLock lock(&mu_);
  if (!OnWorkerThread()) {
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() < options_.max_queued;
    };
    mu_.Await(absl::Condition(&has_room));
  }
  queue_.push_back(std::move(work));
}

void ThreadPoolFileIo::WorkerLoop() {
  common::SetThreadName("file-io");
  current_pool = this;
  while (true) {
    // One round: the work queued now, up to kMaxRound items; what their
    // completions put off (a proxied stream's completion writes) is done once,
    // after the last. Bounded so a busy queue cannot hold a completion back.
    constexpr int kMaxRound = 16;
    common::DeferScope round;
    for (int n = 0; n < kMaxRound; ++n) {
      Work work;
      {
        absl::MutexLock lock(&mu_);
        if (n == 0) {
          auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return stopping_ || !queue_.empty();
          };
          mu_.Await(absl::Condition(&ready));
          // Exit only once the queue is empty: work queued from a completion
          // while stopping still runs, so every submitted completion runs
          // exactly once.
          if (queue_.empty()) return;
        } else if (queue_.empty()) {
          break;
        }
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      std::move(work)();
    }
  }
}

void ThreadPoolFileIo::PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
                             Completion done) {
  if (!buf.empty() && buf.size() <= options_.inline_read_max_bytes) {
    const int64_t n = internal::PosixPReadNoWait(fd, buf, offset);
    if (n == static_cast<int64_t>(buf.size())) {
      std::move(done)(n);
      return;
    }
    // Not all cached (-EAGAIN or a short read), unsupported, at end of file
    // or an error: a worker reads it with a plain pread and reports that.
  }
  Enqueue([fd, buf, offset, done = std::move(done)]() mutable {
    std::move(done)(internal::PosixPRead(fd, buf, offset));
  });
}

void ThreadPoolFileIo::PWrite(int fd, absl::Span<const uint8_t> data,
                              uint64_t offset, Completion done) {
  Enqueue([fd, data, offset, done = std::move(done)]() mutable {
    std::move(done)(internal::PosixPWrite(fd, data, offset));
  });
}

void ThreadPoolFileIo::FDataSync(int fd, Completion done) {
  Enqueue([fd, done = std::move(done)]() mutable {
    std::move(done)(internal::PosixFDataSync(fd));
  });
}

void ThreadPoolFileIo::Post(Completion done) {
  Enqueue([done = std::move(done)]() mutable { std::move(done)(0); });
}

int ThreadPoolFileIo::PunchHole(int fd, uint64_t offset, uint64_t length) {
  return internal::PosixPunchHole(fd, offset, length);
}

int64_t ThreadPoolFileIo::SeekData(int fd, uint64_t offset) {
  return internal::PosixSeek(fd, offset, SEEK_DATA);
}

int64_t ThreadPoolFileIo::SeekHole(int fd, uint64_t offset) {
  return internal::PosixSeek(fd, offset, SEEK_HOLE);
}

}  // namespace appliance::storage
