// FileIo: the injectable asynchronous file I/O layer under the file-backed LUNs.
//
// FileBlockStore never issues a data syscall itself; it goes through a FileIo, so
// the engine (io_uring or a thread pool) can be chosen at run time and tests can
// wrap it with FaultInjectingFileIo. The data operations (pread, pwrite,
// fdatasync) are asynchronous and report a syscall-style result: the number of
// bytes transferred (0 for fdatasync) or -errno. Punch-hole and the SEEK_DATA /
// SEEK_HOLE queries are synchronous: they are cheap metadata operations.
//
// Threading contract shared by every implementation:
//  - All methods are thread-safe.
//  - Each completion runs exactly once, on an I/O thread of the implementation,
//    never inline in the submitting call. A completion may submit more work to the
//    same FileIo (e.g. the remainder of a short write); that never blocks.
//  - Submitting from other threads may block while the implementation is at its
//    in-flight bound (backpressure), never fail.
//  - Buffers must stay valid until the completion has run.
//  - The destructor waits for every submitted operation to complete (and its
//    completion to run). Do not destroy a FileIo from one of its completions.
#ifndef APPLIANCE_STORAGE_FILE_IO_H_
#define APPLIANCE_STORAGE_FILE_IO_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace appliance::storage {

class FileIo {
 public:
  // Receives bytes transferred (>= 0) or -errno.
  using Completion = absl::AnyInvocable<void(int64_t result) &&>;

  virtual ~FileIo() = default;

  // Short engine name for logs and reports ("io_uring", "thread_pool", ...).
  virtual absl::string_view name() const = 0;

  // pread(fd, buf, offset). A result shorter than buf.size() is a short read;
  // 0 means end of file. An engine may run done before PRead returns, on the
  // caller's thread (ThreadPoolFileIo does for small reads the page cache
  // holds), so callers must not hold a lock done takes.
  virtual void PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
                     Completion done) = 0;
  // pwrite(fd, data, offset). A result shorter than data.size() is a short write:
  // the caller resubmits the rest.
  virtual void PWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset,
                      Completion done) = 0;
  // fdatasync(fd); result 0 or -errno.
  virtual void FDataSync(int fd, Completion done) = 0;
  // Runs done(0) on an I/O thread, after the call returns. Lets callers report
  // results that need no I/O (validation errors) through the same threads as
  // real completions, and run short blocking work off the caller's thread.
  virtual void Post(Completion done) = 0;

  // fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the range reads as
  // zeros afterwards and the file size is unchanged. Returns 0 or -errno.
  virtual int PunchHole(int fd, uint64_t offset, uint64_t length) = 0;
  // lseek(fd, offset, SEEK_DATA): the first offset >= offset that holds data,
  // or -ENXIO when there is none before the end of the file; other -errno.
  virtual int64_t SeekData(int fd, uint64_t offset) = 0;
  // lseek(fd, offset, SEEK_HOLE): the first offset >= offset in a hole (the end
  // of the file counts as one), or -errno.
  virtual int64_t SeekHole(int fd, uint64_t offset) = 0;
};

namespace internal {
// Blocking POSIX implementations shared by the engines. Each retries EINTR and
// returns the syscall-style result described above.
int64_t PosixPRead(int fd, absl::Span<uint8_t> buf, uint64_t offset);
// preadv2(RWF_NOWAIT): reads only what the page cache holds without blocking
// (-EAGAIN when it would block; -EOPNOTSUPP where unsupported).
int64_t PosixPReadNoWait(int fd, absl::Span<uint8_t> buf, uint64_t offset);
int64_t PosixPWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset);
int64_t PosixFDataSync(int fd);
int PosixPunchHole(int fd, uint64_t offset, uint64_t length);
int64_t PosixSeek(int fd, uint64_t offset, int whence);
}  // namespace internal

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_FILE_IO_H_
