#include "tests/storage/storage_test_util.h"

#include <atomic>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace appliance::storage::testing {

blockstore::BlockStore::Callback StatusWaiter::Callback() {
  return [this](absl::Status status) {
    status_ = std::move(status);
    done_.Notify();
  };
}

absl::Status StatusWaiter::Wait() {
  done_.WaitForNotification();
  return status_;
}

FileIo::Completion ResultWaiter::Completion() {
  return [this](int64_t result) {
    result_ = result;
    done_.Notify();
  };
}

int64_t ResultWaiter::Wait() {
  done_.WaitForNotification();
  return result_;
}

absl::Status ReadSync(blockstore::BlockStore& store, uint64_t lba,
                      uint32_t num_blocks, std::vector<uint8_t>& out) {
  out.assign(uint64_t{num_blocks} * store.block_size(), 0xEE);
  StatusWaiter waiter;
  store.Read(lba, num_blocks, absl::MakeSpan(out), waiter.Callback());
  return waiter.Wait();
}

absl::Status WriteSync(blockstore::BlockStore& store, uint64_t lba,
                       const std::vector<uint8_t>& data, bool fua) {
  StatusWaiter waiter;
  store.Write(lba, static_cast<uint32_t>(data.size() / store.block_size()),
              absl::MakeConstSpan(data), fua, waiter.Callback());
  return waiter.Wait();
}

absl::Status FlushSync(blockstore::BlockStore& store) {
  StatusWaiter waiter;
  store.Flush(waiter.Callback());
  return waiter.Wait();
}

absl::Status UnmapSync(blockstore::BlockStore& store, uint64_t lba,
                       uint64_t num_blocks) {
  StatusWaiter waiter;
  store.Unmap(lba, num_blocks, waiter.Callback());
  return waiter.Wait();
}

std::string NewTempPath(const std::string& name) {
  static std::atomic<int> counter{0};
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info != nullptr ? absl::StrCat(info->test_suite_name(), ".",
                                                    info->name())
                                     : "none";
  for (char& c : test) {
    if (c == '/') c = '_';
  }
  return absl::StrCat(::testing::TempDir(), "/", test, ".", counter++, ".",
                      name);
}

std::vector<uint8_t> Pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> data(size);
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    data[i] = static_cast<uint8_t>(x >> 16);
  }
  return data;
}

std::unique_ptr<FileIo> MakeEngineOrNull(IoEngine engine,
                                         uint32_t queue_depth) {
  FileIoOptions options;
  options.engine = engine;
  options.queue_depth = queue_depth;
  // Keep the pool's bounds as tight as the ring's so tests reach them.
  options.pool_threads = 2;
  options.pool_max_queued = queue_depth;
  absl::StatusOr<CreatedFileIo> created = CreateFileIo(options);
  if (!created.ok()) {
    std::cerr << "engine " << IoEngineName(engine)
              << " unavailable here: " << created.status() << "\n";
    return nullptr;
  }
  return std::move(created->io);
}

}  // namespace appliance::storage::testing
