// UringFileIo: FileIo on Linux io_uring (liburing).
//
// The preferred engine: one ring per instance, submissions serialized by a mutex,
// and one reaper thread that waits for completions and runs the callbacks.
//
// Callers fill submission entries under the mutex, but only the engine's own
// long-lived threads enter the kernel (io_uring_enter): a submitter thread for
// entries queued by other threads, the reaper for entries queued by callbacks.
// The kernel ties each request to the thread that submitted it and cancels it
// (-ECANCELED) when that thread exits, so submitting from a caller's short-lived
// thread (an iSCSI connection that closes) would lose writes. The
// number of operations in flight (submitted and not yet completed, including
// completions still running) is bounded by Options::queue_depth for submitters
// outside the reaper; they block at the bound. Submissions made by a callback (on
// the reaper thread) never block, so resubmitting the rest of a short transfer
// cannot deadlock. Punch-hole and seeks are plain synchronous syscalls.
//
// Create() fails with kUnavailable when the ring cannot be set up (kernel without
// io_uring, io_uring disabled by sysctl or forbidden by a seccomp sandbox, or a
// kernel lacking the opcodes used here); see file_io_factory.h for the fallback.
#ifndef APPLIANCE_STORAGE_URING_FILE_IO_H_
#define APPLIANCE_STORAGE_URING_FILE_IO_H_

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/storage/file_io.h"

namespace appliance::storage {

class UringFileIo : public FileIo {
 public:
  struct Options {
    // Ring size and bound on operations in flight (1..32768; the kernel rounds
    // the ring up to a power of two and rejects larger values).
    uint32_t queue_depth = 128;
  };

  static absl::StatusOr<std::unique_ptr<UringFileIo>> Create(
      const Options& options);

  // Waits for every operation in flight and its callback, then stops the reaper.
  ~UringFileIo() override;

  absl::string_view name() const override { return "io_uring"; }
  void PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
             Completion done) override;
  void PWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset,
              Completion done) override;
  void FDataSync(int fd, Completion done) override;
  void Post(Completion done) override;
  int PunchHole(int fd, uint64_t offset, uint64_t length) override;
  int64_t SeekData(int fd, uint64_t offset) override;
  int64_t SeekHole(int fd, uint64_t offset) override;

 private:
  explicit UringFileIo(const Options& options);

  // Takes a submission queue entry, lets prep fill it, tags it with done and
  // submits it to the kernel.
  void Submit(absl::FunctionRef<void(io_uring_sqe*)> prep, Completion done);
  void SubmitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReaperLoop();
  void SubmitterLoop();
  bool OnReaperThread() const;

  const Options options_;
  io_uring ring_;
  bool ring_ready_ = false;  // ring_ set up and reaper_ running
  absl::Mutex mu_;
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Entries are waiting in the submission ring for the submitter.
  bool unsubmitted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
  std::thread submitter_;
};

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_URING_FILE_IO_H_
