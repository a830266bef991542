#include "appliance/storage/uring_file_io.h"

#include <errno.h>
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/defer_scope.h"
#include "glog/logging.h"
#include "common/thread_name.h"

namespace appliance::storage {
namespace {

// The ring whose reaper is running on this thread, if any.
thread_local const UringFileIo* current_reaper = nullptr;

// Caps one read or write: the SQE length field is 32 bits and the kernel caps a
// transfer near 2 GiB anyway. Larger requests complete short and get resubmitted.
constexpr size_t kMaxTransfer = size_t{1} << 30;

// One submitted operation; its address is the SQE's user_data. The wake-up
// entry that stops the reaper carries user_data 0.
struct UringOp {
  FileIo::Completion done;
};

}  // namespace

absl::StatusOr<std::unique_ptr<UringFileIo>> UringFileIo::Create(
    const Options& options) {
  if (options.queue_depth == 0) {
    return absl::InvalidArgumentError("UringFileIo needs queue_depth >= 1");
  }
  auto io = std::unique_ptr<UringFileIo>(new UringFileIo(options));
  io_uring& ring = io->ring_;
  int rc = io_uring_queue_init(options.queue_depth, &ring, 0);
  if (rc < 0) {
    return absl::UnavailableError(
        absl::StrCat("io_uring_queue_init(", options.queue_depth,
                     "): ", std::strerror(-rc)));
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (probe == nullptr) {
    io_uring_queue_exit(&ring);
    return absl::UnavailableError("io_uring: cannot probe supported opcodes");
  }
  for (int op : {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC,
                 IORING_OP_NOP}) {
    if (!io_uring_opcode_supported(probe, op)) {
      io_uring_free_probe(probe);
      io_uring_queue_exit(&ring);
      return absl::UnavailableError(
          absl::StrCat("io_uring: kernel lacks opcode ", op));
    }
  }
  io_uring_free_probe(probe);
  io->ring_ready_ = true;
  io->reaper_ = std::thread([raw = io.get()] { raw->ReaperLoop(); });
  io->submitter_ = std::thread([raw = io.get()] { raw->SubmitterLoop(); });
  return io;
}

UringFileIo::UringFileIo(const Options& options) : options_(options) {}

UringFileIo::~UringFileIo() {
  if (!ring_ready_) return;  // Create() failed before the ring was usable.
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
    // Nothing is in flight, so nothing can submit any more. The submitter
    // wakes the reaper with a no-op tagged 0 on its way out.
    stopping_ = true;
  }
  submitter_.join();
  reaper_.join();
  io_uring_queue_exit(&ring_);
}

bool UringFileIo::OnReaperThread() const { return current_reaper == this; }

void UringFileIo::SubmitLocked() {
  while (true) {
    int rc = io_uring_submit(&ring_);
    if (rc >= 0) return;
    if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
      // Transient: the kernel is short of memory or the completion queue is
      // backed up; the reaper drains it without taking mu_.
      continue;
    }
    // The entries stay in the submission ring and go with the next submit.
    LOG(ERROR) << "io_uring_submit: " << std::strerror(-rc);
    return;
  }
}

void UringFileIo::Submit(absl::FunctionRef<void(io_uring_sqe*)> prep,
                         Completion done) {
  auto* op = new UringOp{std::move(done)};
  absl::MutexLock lock(&mu_);
  const bool on_reaper = OnReaperThread();
  if (!on_reaper) {
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ < options_.queue_depth;
    };
    mu_.Await(absl::Condition(&has_room));
  }
  io_uring_sqe* sqe;
  while ((sqe = io_uring_get_sqe(&ring_)) == nullptr) {
    if (on_reaper) {
      SubmitLocked();
    } else {
      // Cannot happen below the in-flight bound (the ring has at least
      // queue_depth entries), but wait for the submitter rather than enter
      // the kernel from this thread.
      unsubmitted_ = true;
      auto has_space = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return io_uring_sq_space_left(&ring_) > 0;
      };
      mu_.Await(absl::Condition(&has_space));
    }
  }
  prep(sqe);
  io_uring_sqe_set_data(sqe, op);
  ++in_flight_;
  if (on_reaper) {
    SubmitLocked();
  } else {
    unsubmitted_ = true;  // wakes the submitter
  }
}

void UringFileIo::SubmitterLoop() {
  common::SetThreadName("uring-submit");
  absl::MutexLock lock(&mu_);
  while (true) {
    auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return unsubmitted_ || stopping_;
    };
    mu_.Await(absl::Condition(&work));
    if (unsubmitted_) {
      unsubmitted_ = false;
      SubmitLocked();  // every entry queued since the last round
    }
    if (stopping_) {
      io_uring_sqe* sqe;
      while ((sqe = io_uring_get_sqe(&ring_)) == nullptr) SubmitLocked();
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, nullptr);  // tells the reaper to exit
      SubmitLocked();
      return;
    }
  }
}

void UringFileIo::ReaperLoop() {
  common::SetThreadName("uring-reap");
  current_reaper = this;
  while (true) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc < 0) {
      if (rc != -EINTR) LOG(ERROR) << "io_uring_wait_cqe: " << std::strerror(-rc);
      continue;
    }
    // One round: every completion ready now; what the callbacks put off (a
    // proxied stream's completion writes) is done once, after the last.
    common::DeferScope round;
    do {
      auto* op = static_cast<UringOp*>(io_uring_cqe_get_data(cqe));
      const int64_t result = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (op == nullptr) return;  // the submitter's stop signal
      std::move(op->done)(result);
      delete op;
      // Counted until the callback has run, so the destructor also waits for
      // whatever a callback submits.
      absl::MutexLock lock(&mu_);
      --in_flight_;
    } while (io_uring_peek_cqe(&ring_, &cqe) == 0);
  }
}

void UringFileIo::PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
                        Completion done) {
  const unsigned len = static_cast<unsigned>(std::min(buf.size(), kMaxTransfer));
  Submit(
      [&](io_uring_sqe* sqe) {
        io_uring_prep_read(sqe, fd, buf.data(), len, offset);
      },
      std::move(done));
}

void UringFileIo::PWrite(int fd, absl::Span<const uint8_t> data,
                         uint64_t offset, Completion done) {
  const unsigned len =
      static_cast<unsigned>(std::min(data.size(), kMaxTransfer));
  Submit(
      [&](io_uring_sqe* sqe) {
        io_uring_prep_write(sqe, fd, data.data(), len, offset);
      },
      std::move(done));
}

void UringFileIo::FDataSync(int fd, Completion done) {
  Submit(
      [&](io_uring_sqe* sqe) {
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      },
      std::move(done));
}

void UringFileIo::Post(Completion done) {
  Submit([](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); }, std::move(done));
}

int UringFileIo::PunchHole(int fd, uint64_t offset, uint64_t length) {
  return internal::PosixPunchHole(fd, offset, length);
}

int64_t UringFileIo::SeekData(int fd, uint64_t offset) {
  return internal::PosixSeek(fd, offset, SEEK_DATA);
}

int64_t UringFileIo::SeekHole(int fd, uint64_t offset) {
  return internal::PosixSeek(fd, offset, SEEK_HOLE);
}

}  // namespace appliance::storage
