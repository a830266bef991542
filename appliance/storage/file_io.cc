#include "appliance/storage/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>

namespace appliance::storage::internal {

int64_t PosixPRead(int fd, absl::Span<uint8_t> buf, uint64_t offset) {
  while (true) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

int64_t PosixPReadNoWait(int fd, absl::Span<uint8_t> buf, uint64_t offset) {
  iovec iov = {buf.data(), buf.size()};
  while (true) {
    ssize_t n = ::preadv2(fd, &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

int64_t PosixPWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset) {
  while (true) {
    ssize_t n =
        ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

int64_t PosixFDataSync(int fd) {
  while (true) {
    if (::fdatasync(fd) == 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

int PosixPunchHole(int fd, uint64_t offset, uint64_t length) {
  if (length == 0) return 0;
  while (true) {
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return 0;
    }
    if (errno != EINTR) return -errno;
  }
}

int64_t PosixSeek(int fd, uint64_t offset, int whence) {
  off_t r = ::lseek(fd, static_cast<off_t>(offset), whence);
  if (r < 0) return -errno;
  return r;
}

}  // namespace appliance::storage::internal
