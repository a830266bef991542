#include "appliance/storage/file_io_factory.h"

#include <utility>

#include "appliance/storage/thread_pool_file_io.h"
#include "appliance/storage/uring_file_io.h"
#include "glog/logging.h"

namespace appliance::storage {

absl::string_view IoEngineName(IoEngine engine) {
  switch (engine) {
    case IoEngine::kAuto:
      return "auto";
    case IoEngine::kUring:
      return "io_uring";
    case IoEngine::kThreadPool:
      return "thread_pool";
  }
  return "unknown";
}

absl::StatusOr<CreatedFileIo> CreateFileIo(const FileIoOptions& options) {
  CreatedFileIo created;
  if (options.engine != IoEngine::kThreadPool) {
    UringFileIo::Options uring_options;
    uring_options.queue_depth = options.queue_depth;
    absl::StatusOr<std::unique_ptr<UringFileIo>> uring =
        UringFileIo::Create(uring_options);
    if (uring.ok()) {
      created.io = *std::move(uring);
      created.engine = IoEngine::kUring;
      LOG(INFO) << "storage: using io_uring (queue depth "
                << options.queue_depth << ")";
      return created;
    }
    if (options.engine == IoEngine::kUring) return uring.status();
    created.uring_error = uring.status();
    LOG(WARNING) << "storage: io_uring unavailable (" << uring.status()
                 << "); falling back to a thread pool";
  }
  ThreadPoolFileIo::Options pool_options;
  pool_options.num_threads = options.pool_threads;
  pool_options.max_queued = options.pool_max_queued;
  absl::StatusOr<std::unique_ptr<ThreadPoolFileIo>> pool =
      ThreadPoolFileIo::Create(pool_options);
  if (!pool.ok()) return pool.status();
  created.io = *std::move(pool);
  created.engine = IoEngine::kThreadPool;
  LOG(INFO) << "storage: using a thread pool of " << options.pool_threads
            << " threads";
  return created;
}

}  // namespace appliance::storage
