// Helpers shared by the appliance/storage tests: waiting for asynchronous
// callbacks without sleeping, temp paths under TEST_TMPDIR, data patterns, and
// the engine parameter the tests run over.
#ifndef TESTS_STORAGE_STORAGE_TEST_UTIL_H_
#define TESTS_STORAGE_STORAGE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "appliance/storage/file_io.h"
#include "appliance/storage/file_io_factory.h"
#include "blockstore/block_store.h"

namespace appliance::storage::testing {

// Collects one BlockStore callback's status.
class StatusWaiter {
 public:
  blockstore::BlockStore::Callback Callback();
  absl::Status Wait();

 private:
  absl::Notification done_;
  absl::Status status_;
};

// Collects one FileIo completion's result.
class ResultWaiter {
 public:
  FileIo::Completion Completion();
  int64_t Wait();

 private:
  absl::Notification done_;
  int64_t result_ = 0;
};

// Synchronous wrappers over the asynchronous BlockStore calls.
absl::Status ReadSync(blockstore::BlockStore& store, uint64_t lba,
                      uint32_t num_blocks, std::vector<uint8_t>& out);
absl::Status WriteSync(blockstore::BlockStore& store, uint64_t lba,
                       const std::vector<uint8_t>& data, bool fua = false);
absl::Status FlushSync(blockstore::BlockStore& store);
absl::Status UnmapSync(blockstore::BlockStore& store, uint64_t lba,
                       uint64_t num_blocks);

// A fresh path (not yet existing) under TEST_TMPDIR.
std::string NewTempPath(const std::string& name);
// size bytes of a pattern that differs for each seed and byte position.
std::vector<uint8_t> Pattern(size_t size, uint32_t seed);

// Builds the given engine with queue_depth as its in-flight bound (ring size, or
// the pool's queue with 2 threads); nullptr (after a note on stderr) when it cannot run
// here, so the caller can GTEST_SKIP.
std::unique_ptr<FileIo> MakeEngineOrNull(IoEngine engine,
                                         uint32_t queue_depth = 64);

}  // namespace appliance::storage::testing

#endif  // TESTS_STORAGE_STORAGE_TEST_UTIL_H_
