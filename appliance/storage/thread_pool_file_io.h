// ThreadPoolFileIo: FileIo on a bounded pool of threads doing blocking syscalls.
//
// The portable engine: used where io_uring is unavailable (old kernels, sandboxes
// whose seccomp policy forbids io_uring_setup) or when chosen explicitly. Each
// operation is queued and a worker runs the blocking syscall, then the completion.
// Small reads the page cache holds complete on the caller's thread (see
// Options::inline_read_max_bytes). The queue is bounded: submitters from outside the pool block while it is full;
// submissions made from a worker (inside a completion) are never blocked, so a
// completion that resubmits cannot deadlock the pool.
#ifndef APPLIANCE_STORAGE_THREAD_POOL_FILE_IO_H_
#define APPLIANCE_STORAGE_THREAD_POOL_FILE_IO_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/storage/file_io.h"

namespace appliance::storage {

class ThreadPoolFileIo : public FileIo {
 public:
  struct Options {
    // Worker threads (>= 1). Each runs one blocking syscall at a time.
    uint32_t num_threads = 4;
    // Operations queued but not yet picked up by a worker before submitters
    // from outside the pool block (>= 1).
    uint32_t max_queued = 256;
    // Reads up to this many bytes are first tried on the caller's thread with
    // preadv2(RWF_NOWAIT), which copies from the page cache and never blocks:
    // when it returns everything, done runs at once (no hand-off to a worker
    // and back); otherwise the read is queued as usual. 0 turns this off.
    // Bounded so the caller (the iSCSI event loop) never copies long.
    size_t inline_read_max_bytes = 64 * 1024;
    // A worker taking a write also takes the writes queued right behind it
    // that continue it in the same file (up to this many bytes and
    // IOV_MAX-bounded pieces) and issues them as one pwritev: a sequential
    // stream of small writes costs one syscall and one inode-lock hand-off
    // per batch instead of per write. 0 turns this off.
    size_t coalesce_write_max_bytes = 1024 * 1024;
  };

  // Fails with kInvalidArgument on a zero field.
  static absl::StatusOr<std::unique_ptr<ThreadPoolFileIo>> Create(
      const Options& options);

  // Waits for queued and running operations, then joins the workers.
  ~ThreadPoolFileIo() override;

  absl::string_view name() const override { return "thread_pool"; }
  void PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
             Completion done) override;
  void PWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset,
              Completion done) override;
  void FDataSync(int fd, Completion done) override;
  void Post(Completion done) override;
  int PunchHole(int fd, uint64_t offset, uint64_t length) override;
  int64_t SeekData(int fd, uint64_t offset) override;
  int64_t SeekHole(int fd, uint64_t offset) override;

  // Writes completed, and the pwrite/pwritev syscalls that carried them.
  uint64_t writes() const { return writes_.load(); }
  uint64_t write_syscalls() const { return write_syscalls_.load(); }

 private:
  using Work = absl::AnyInvocable<void() &&>;
  // A queued operation: a write (kept apart so adjacent ones coalesce) or
  // any other work.
  struct Op {
    Work work;  // set unless a write
    int fd = -1;
    absl::Span<const uint8_t> data;
    uint64_t offset = 0;
    Completion done;
  };

  explicit ThreadPoolFileIo(const Options& options);
  void Enqueue(Work work);
  void EnqueueOp(Op op);
  void WorkerLoop();
  bool OnWorkerThread() const;
  // Runs the writes (adjacent, same file, in order) as one pwritev and gives
  // each its own result.
  void RunWrites(std::vector<Op>& writes);

  const Options options_;
  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> write_syscalls_{0};
};

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_THREAD_POOL_FILE_IO_H_
