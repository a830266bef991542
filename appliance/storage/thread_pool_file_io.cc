#include "appliance/storage/thread_pool_file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
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
  Op op;
  op.work = std::move(work);
  EnqueueOp(std::move(op));
}

void ThreadPoolFileIo::EnqueueOp(Op op) {
  absl::MutexLock lock(&mu_);
  if (!OnWorkerThread()) {
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() < options_.max_queued;
    };
    mu_.Await(absl::Condition(&has_room));
  }
  queue_.push_back(std::move(op));
}

void ThreadPoolFileIo::WorkerLoop() {
  common::SetThreadName("file-io");
  current_pool = this;
  std::vector<Op> writes;
  while (true) {
    // One round: the work queued now, up to kMaxRound items; what their
    // completions put off (a proxied stream's completion writes) is done once,
    // after the last. Bounded so a busy queue cannot hold a completion back.
    constexpr int kMaxRound = 16;
    common::DeferScope round;
    for (int n = 0; n < kMaxRound; ++n) {
      Op op;
      writes.clear();
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
        op = std::move(queue_.front());
        queue_.pop_front();
        if (!op.work) {
          // A write: take the ones that continue it.
          size_t bytes = op.data.size();
          uint64_t end = op.offset + op.data.size();
          const int fd = op.fd;
          writes.push_back(std::move(op));
          while (!queue_.empty() && !queue_.front().work &&
                 queue_.front().fd == fd && queue_.front().offset == end &&
                 writes.size() < IOV_MAX &&
                 bytes + queue_.front().data.size() <=
                     options_.coalesce_write_max_bytes) {
            bytes += queue_.front().data.size();
            end += queue_.front().data.size();
            writes.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
        }
      }
      if (writes.empty()) {
        std::move(op.work)();
      } else {
        RunWrites(writes);
      }
    }
  }
}

void ThreadPoolFileIo::RunWrites(std::vector<Op>& writes) {
  writes_ += writes.size();
  write_syscalls_++;
  if (writes.size() == 1) {
    Op& w = writes.front();
    std::move(w.done)(internal::PosixPWrite(w.fd, w.data, w.offset));
    return;
  }
  std::vector<iovec> iov(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    iov[i].iov_base = const_cast<uint8_t*>(writes[i].data.data());
    iov[i].iov_len = writes[i].data.size();
  }
  ssize_t n;
  do {
    n = ::pwritev(writes.front().fd, iov.data(), static_cast<int>(iov.size()),
                  static_cast<off_t>(writes.front().offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int64_t error = -errno;
    for (Op& w : writes) std::move(w.done)(error);
    return;
  }
  // Each write gets the part of the result that covers it; one the kernel
  // stopped before (a short pwritev) is written on its own, so its result is
  // its own syscall's.
  size_t left = static_cast<size_t>(n);
  for (Op& w : writes) {
    const size_t covered = std::min(left, w.data.size());
    left -= covered;
    if (covered > 0) {
      std::move(w.done)(static_cast<int64_t>(covered));
    } else {
      write_syscalls_++;
      std::move(w.done)(internal::PosixPWrite(w.fd, w.data, w.offset));
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
  if (options_.coalesce_write_max_bytes == 0) {
    Enqueue([fd, data, offset, done = std::move(done)]() mutable {
      std::move(done)(internal::PosixPWrite(fd, data, offset));
    });
    return;
  }
  Op op;
  op.fd = fd;
  op.data = data;
  op.offset = offset;
  op.done = std::move(done);
  EnqueueOp(std::move(op));
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
