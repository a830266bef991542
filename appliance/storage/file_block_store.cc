#include "appliance/storage/file_block_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace appliance::storage {
namespace {

// Consecutive EINTR/EAGAIN (or zero-progress writes) tolerated per request.
constexpr int kMaxRetries = 16;

// Maps an errno from the data path as blockstore/block_store.h prescribes.
absl::Status DataPathError(int error, absl::string_view context) {
  const std::string message =
      absl::StrCat(context, ": ", std::strerror(error));
  switch (error) {
    case EIO:
      return absl::DataLossError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Maps an errno from creating, opening or deleting a backing file.
absl::Status FileError(int error, absl::string_view context) {
  const std::string message =
      absl::StrCat(context, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return DataPathError(error, context);
  }
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a created or removed directory entry durable.
absl::Status SyncParentDir(const std::string& path) {
  const std::string dir = ParentDir(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, absl::StrCat("open ", dir));
  absl::Status status;
  if (::fsync(fd) != 0) status = FileError(errno, absl::StrCat("fsync ", dir));
  ::close(fd);
  return status;
}

absl::Status CheckBlockSize(uint32_t block_size) {
  if (block_size != 512 && block_size != 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size must be 512 or 4096, not ", block_size));
  }
  return absl::OkStatus();
}

}  // namespace

// One Read or Write, carried from completion to completion until every byte
// has moved (short transfers resubmit the rest).
struct FileBlockStore::Transfer {
  bool is_write = false;
  bool fua = false;
  uint8_t* buffer = nullptr;  // for writes, the const data cast back
  uint64_t length = 0;
  uint64_t offset = 0;  // of buffer[0] in the file
  uint64_t done_bytes = 0;
  int retries = 0;
  Callback done;
};

absl::StatusOr<std::unique_ptr<FileBlockStore>> FileBlockStore::Create(
    const std::string& path, uint64_t size_bytes, const Options& options) {
  if (absl::Status s = CheckBlockSize(options.block_size); !s.ok()) return s;
  if (size_bytes == 0 || size_bytes % options.block_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size ", size_bytes,
                     " is not a positive multiple of the block size ",
                     options.block_size));
  }
  const int fd =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return FileError(errno, absl::StrCat("create ", path));
  absl::Status status;
  if (::ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    status = FileError(errno, absl::StrCat("ftruncate ", path));
  } else if (::fsync(fd) != 0) {
    status = FileError(errno, absl::StrCat("fsync ", path));
  } else {
    status = SyncParentDir(path);
  }
  if (!status.ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return status;
  }
  absl::StatusOr<std::unique_ptr<FileBlockStore>> store =
      Make(path, fd, size_bytes, options);
  if (!store.ok()) ::unlink(path.c_str());  // Make closed fd
  return store;
}

absl::StatusOr<std::unique_ptr<FileBlockStore>> FileBlockStore::Open(
    const std::string& path, const Options& options) {
  if (absl::Status s = CheckBlockSize(options.block_size); !s.ok()) return s;
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return FileError(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status status = FileError(errno, absl::StrCat("fstat ", path));
    ::close(fd);
    return status;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || size == 0 || size % options.block_size != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        path, " is not a regular file whose size is a positive multiple of ",
        options.block_size, " (size ", size, ")"));
  }
  return Make(path, fd, size, options);
}

absl::StatusOr<std::unique_ptr<FileBlockStore>> FileBlockStore::Make(
    const std::string& path, int fd, uint64_t size_bytes,
    const Options& options) {
  std::unique_ptr<FileIo> owned_io;
  FileIo* io = options.file_io;
  if (io == nullptr) {
    absl::StatusOr<CreatedFileIo> created = CreateFileIo(options.io);
    if (!created.ok()) {
      ::close(fd);
      return created.status();
    }
    owned_io = std::move(created->io);
    io = owned_io.get();
  }
  return std::unique_ptr<FileBlockStore>(
      new FileBlockStore(path, fd, size_bytes / options.block_size, options,
                         std::move(owned_io), io));
}

FileBlockStore::FileBlockStore(std::string path, int fd, uint64_t num_blocks,
                               const Options& options,
                               std::unique_ptr<FileIo> owned_io, FileIo* io)
    : path_(std::move(path)),
      fd_(fd),
      block_size_(options.block_size),
      num_blocks_(num_blocks),
      identity_(options.identity),
      owned_io_(std::move(owned_io)),
      io_(io) {}

FileBlockStore::~FileBlockStore() {
  Close();
  // owned_io_ goes next; its destructor waits for posted rejections.
}

void FileBlockStore::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return requests_in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
  if (!fd_closed_) {
    ::close(fd_);
    fd_closed_ = true;
  }
}

bool FileBlockStore::BeginRequest() {
  absl::MutexLock lock(&mu_);
  if (closed_) return false;
  ++requests_in_flight_;
  return true;
}

void FileBlockStore::EndRequest() {
  absl::MutexLock lock(&mu_);
  --requests_in_flight_;
}

void FileBlockStore::Finish(Callback done, absl::Status status) {
  std::move(done)(std::move(status));
  EndRequest();
}

void FileBlockStore::Reject(Callback done, absl::Status status,
                            bool admitted) {
  io_->Post([this, done = std::move(done), status = std::move(status),
             admitted](int64_t) mutable {
    if (admitted) {
      Finish(std::move(done), std::move(status));
    } else {
      // Not counted, so Close() may be over: touch nothing of the store.
      std::move(done)(std::move(status));
    }
  });
}

absl::Status FileBlockStore::CheckRange(uint64_t lba,
                                        uint64_t num_blocks) const {
  if (lba >= num_blocks_ || num_blocks > num_blocks_ - lba) {
    return absl::OutOfRangeError(
        absl::StrCat("blocks [", lba, ", +", num_blocks, ") beyond the ",
                     num_blocks_, " blocks of ", path_));
  }
  return absl::OkStatus();
}

void FileBlockStore::Read(uint64_t lba, uint32_t num_blocks,
                          absl::Span<uint8_t> out, Callback done) {
  if (!BeginRequest()) {
    return Reject(std::move(done), absl::UnavailableError("store is closed"),
                  false);
  }
  if (absl::Status s = CheckRange(lba, num_blocks); !s.ok()) {
    return Reject(std::move(done), std::move(s), true);
  }
  const uint64_t length = uint64_t{num_blocks} * block_size_;
  if (out.size() != length) {
    return Reject(std::move(done),
                  absl::InvalidArgumentError(absl::StrCat(
                      "read buffer holds ", out.size(), " bytes, not ", length)),
                  true);
  }
  if (length == 0) return Reject(std::move(done), absl::OkStatus(), true);
  auto transfer = std::make_unique<Transfer>();
  transfer->buffer = out.data();
  transfer->length = length;
  transfer->offset = lba * block_size_;
  transfer->done = std::move(done);
  Continue(std::move(transfer));
}

void FileBlockStore::Write(uint64_t lba, uint32_t num_blocks,
                           absl::Span<const uint8_t> data, bool fua,
                           Callback done) {
  if (!BeginRequest()) {
    return Reject(std::move(done), absl::UnavailableError("store is closed"),
                  false);
  }
  if (absl::Status s = CheckRange(lba, num_blocks); !s.ok()) {
    return Reject(std::move(done), std::move(s), true);
  }
  const uint64_t length = uint64_t{num_blocks} * block_size_;
  if (data.size() != length) {
    return Reject(std::move(done),
                  absl::InvalidArgumentError(absl::StrCat(
                      "write data holds ", data.size(), " bytes, not ", length)),
                  true);
  }
  if (length == 0) return Reject(std::move(done), absl::OkStatus(), true);
  auto transfer = std::make_unique<Transfer>();
  transfer->is_write = true;
  transfer->fua = fua;
  // Only ever passed back to PWrite as const.
  transfer->buffer = const_cast<uint8_t*>(data.data());
  transfer->length = length;
  transfer->offset = lba * block_size_;
  transfer->done = std::move(done);
  Continue(std::move(transfer));
}

void FileBlockStore::Continue(std::unique_ptr<Transfer> transfer) {
  Transfer& t = *transfer;
  const uint64_t offset = t.offset + t.done_bytes;
  uint8_t* const start = t.buffer + t.done_bytes;
  const size_t remaining = t.length - t.done_bytes;
  auto on_done = [this, transfer = std::move(transfer)](int64_t result) mutable {
    OnTransferred(std::move(transfer), result);
  };
  if (t.is_write) {
    io_->PWrite(fd_, absl::Span<const uint8_t>(start, remaining), offset,
                std::move(on_done));
  } else {
    io_->PRead(fd_, absl::Span<uint8_t>(start, remaining), offset,
               std::move(on_done));
  }
}

void FileBlockStore::OnTransferred(std::unique_ptr<Transfer> transfer,
                                   int64_t result) {
  Transfer& t = *transfer;
  const char* const what = t.is_write ? "write" : "read";
  if (result < 0 || (result == 0 && t.is_write)) {
    const int error = static_cast<int>(-result);
    const bool transient = result == 0 || error == EINTR || error == EAGAIN;
    if (transient && ++t.retries <= kMaxRetries) {
      return Continue(std::move(transfer));
    }
    absl::Status status =
        result == 0
            ? absl::InternalError(absl::StrCat(
                  "write to ", path_, " at offset ", t.offset + t.done_bytes,
                  " made no progress"))
            : DataPathError(error, absl::StrCat(what, " ", path_, " at offset ",
                                                t.offset + t.done_bytes));
    return Finish(std::move(t.done), std::move(status));
  }
  if (result == 0) {
    // A read at end of file: the file is shorter than the LU.
    return Finish(std::move(t.done),
                  absl::DataLossError(absl::StrCat(
                      "read ", path_, " at offset ", t.offset + t.done_bytes,
                      ": backing file ends early")));
  }
  t.retries = 0;
  t.done_bytes += static_cast<uint64_t>(result);
  if (t.done_bytes < t.length) return Continue(std::move(transfer));
  if (t.is_write && t.fua) {
    // Submitted only now that the whole write has completed, so the sync
    // covers it.
    return io_->FDataSync(
        fd_, [this, done = std::move(t.done)](int64_t sync_result) mutable {
          Finish(std::move(done),
                 sync_result < 0
                     ? DataPathError(static_cast<int>(-sync_result),
                                     absl::StrCat("fdatasync ", path_))
                     : absl::OkStatus());
        });
  }
  Finish(std::move(t.done), absl::OkStatus());
}

void FileBlockStore::Flush(Callback done) {
  if (!BeginRequest()) {
    return Reject(std::move(done), absl::UnavailableError("store is closed"),
                  false);
  }
  io_->FDataSync(fd_, [this, done = std::move(done)](int64_t result) mutable {
    Finish(std::move(done),
           result < 0 ? DataPathError(static_cast<int>(-result),
                                      absl::StrCat("fdatasync ", path_))
                      : absl::OkStatus());
  });
}

void FileBlockStore::Unmap(uint64_t lba, uint64_t num_blocks, Callback done) {
  if (!BeginRequest()) {
    return Reject(std::move(done), absl::UnavailableError("store is closed"),
                  false);
  }
  if (absl::Status s = CheckRange(lba, num_blocks); !s.ok()) {
    return Reject(std::move(done), std::move(s), true);
  }
  // Punching is a synchronous call: run it on an I/O thread, not the caller's.
  io_->Post([this, lba, num_blocks, done = std::move(done)](int64_t) mutable {
    const int result = io_->PunchHole(fd_, lba * block_size_,
                                      num_blocks * block_size_);
    Finish(std::move(done),
           result < 0 ? DataPathError(-result,
                                      absl::StrCat("punch hole in ", path_,
                                                   " at block ", lba))
                      : absl::OkStatus());
  });
}

absl::StatusOr<blockstore::AllocationExtent> FileBlockStore::QueryAllocation(
    uint64_t lba) {
  if (!BeginRequest()) return absl::UnavailableError("store is closed");
  struct Ender {
    FileBlockStore* store;
    ~Ender() { store->EndRequest(); }
  } ender{this};
  if (lba >= num_blocks_) {
    return absl::OutOfRangeError(absl::StrCat(
        "block ", lba, " beyond the ", num_blocks_, " blocks of ", path_));
  }
  blockstore::AllocationExtent extent;
  extent.lba = lba;
  const uint64_t offset = lba * block_size_;
  const uint64_t end = num_blocks_ * block_size_;
  const int64_t data = io_->SeekData(fd_, offset);
  if (data == -ENXIO || (data >= 0 && static_cast<uint64_t>(data) >= end)) {
    extent.num_blocks = num_blocks_ - lba;  // a hole up to the end
    return extent;
  }
  if (data < 0) {
    return DataPathError(static_cast<int>(-data),
                         absl::StrCat("SEEK_DATA in ", path_));
  }
  // A block holding any data byte counts as mapped.
  const uint64_t first_data_block = static_cast<uint64_t>(data) / block_size_;
  if (first_data_block > lba) {
    extent.num_blocks = first_data_block - lba;
    return extent;
  }
  const int64_t hole = io_->SeekHole(fd_, static_cast<uint64_t>(data));
  if (hole < 0) {
    return DataPathError(static_cast<int>(-hole),
                         absl::StrCat("SEEK_HOLE in ", path_));
  }
  const uint64_t end_block = std::min<uint64_t>(
      (static_cast<uint64_t>(hole) + block_size_ - 1) / block_size_,
      num_blocks_);
  extent.mapped = true;
  extent.num_blocks = std::max<uint64_t>(end_block, lba + 1) - lba;
  return extent;
}

absl::Status DeleteBackingFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    return FileError(errno, absl::StrCat("delete ", path));
  }
  return SyncParentDir(path);
}

}  // namespace appliance::storage
