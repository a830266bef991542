// Chooses and builds the FileIo engine for file-backed LUNs.
//
// io_uring is preferred; when it cannot be set up (see uring_file_io.h) and the
// choice is kAuto, the thread pool is used instead. The choice and the reason for
// a fallback are logged and returned, so the daemon can report them.
#ifndef APPLIANCE_STORAGE_FILE_IO_FACTORY_H_
#define APPLIANCE_STORAGE_FILE_IO_FACTORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "appliance/storage/file_io.h"

namespace appliance::storage {

enum class IoEngine {
  kAuto,        // io_uring, else the thread pool
  kUring,       // io_uring only; fail if unavailable
  kThreadPool,  // the thread pool only
};

absl::string_view IoEngineName(IoEngine engine);

struct FileIoOptions {
  // Which engine to build.
  IoEngine engine = IoEngine::kAuto;
  // io_uring: ring size and bound on operations in flight (1..32768).
  uint32_t queue_depth = 128;
  // Thread pool: worker threads (>= 1).
  uint32_t pool_threads = 4;
  // Thread pool: queued operations before submitters block (>= 1).
  uint32_t pool_max_queued = 256;
};

struct CreatedFileIo {
  std::unique_ptr<FileIo> io;
  // The engine actually built (never kAuto).
  IoEngine engine = IoEngine::kThreadPool;
  // Why io_uring was not used when kAuto fell back to the pool; OK otherwise.
  absl::Status uring_error;
};

// Builds the engine options ask for. Fails when kUring is asked for and io_uring
// is unavailable (kUnavailable), or on invalid options (kInvalidArgument).
absl::StatusOr<CreatedFileIo> CreateFileIo(const FileIoOptions& options);

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_FILE_IO_FACTORY_H_
