// MemoryBlockStore: an in-memory blockstore::BlockStore for tests.
//
// Blocks are stored sparsely: a block that was never written, or was unmapped,
// is "deallocated" and reads as zeros (LBPRZ semantics); a written block is
// "mapped" (even if the data written was zeros), which is what GET LBA STATUS
// reports through QueryAllocation(). Completions run synchronously inside the
// call unless Options::executor is set, in which case each completion is posted
// to it (e.g. a fakes::ManualExecutor the test drains). Thread-safe.
#ifndef TESTS_FAKES_MEMORY_BLOCK_STORE_H_
#define TESTS_FAKES_MEMORY_BLOCK_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "blockstore/block_store.h"

namespace fakes {

class MemoryBlockStore : public blockstore::BlockStore {
 public:
  using Executor = std::function<void(absl::AnyInvocable<void() &&>)>;

  struct Options {
    // Logical block size in bytes.
    uint32_t block_size = 512;
    // Capacity in logical blocks.
    uint64_t num_blocks = 8192;
    // Reported identity (VPD 0x80/0x83).
    blockstore::LunIdentity identity = {
        "600144f0000000000000000000000001", "SN0000000001",
        "00000000-0000-0000-0000-000000000001"};
    // Where completions run; empty: synchronously, before the call returns.
    Executor executor;
  };

  explicit MemoryBlockStore(Options options);

  uint32_t block_size() const override { return options_.block_size; }
  uint64_t num_blocks() const override;
  const blockstore::LunIdentity& identity() const override {
    return options_.identity;
  }

  void Read(uint64_t lba, uint32_t num_blocks, absl::Span<uint8_t> out,
            Callback done) override;
  void Write(uint64_t lba, uint32_t num_blocks, absl::Span<const uint8_t> data,
             bool fua, Callback done) override;
  void Flush(Callback done) override;
  void Unmap(uint64_t lba, uint64_t num_blocks, Callback done) override;
  absl::StatusOr<blockstore::AllocationExtent> QueryAllocation(
      uint64_t lba) override;

  // --- Test helpers (synchronous) ---

  // Changes the capacity (blocks past the new end are dropped).
  void Resize(uint64_t num_blocks);
  // Copies blocks out / in directly, bypassing counters.
  std::vector<uint8_t> Peek(uint64_t lba, uint32_t num_blocks) const;
  void Poke(uint64_t lba, absl::Span<const uint8_t> data);
  bool IsMapped(uint64_t lba) const;
  uint64_t mapped_block_count() const;

  int reads() const;
  int writes() const;
  int fua_writes() const;
  int flushes() const;
  int unmaps() const;

 private:
  void Complete(Callback done, absl::Status status);
  absl::Status CheckRange(uint64_t lba, uint64_t n) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  uint64_t num_blocks_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::vector<uint8_t>> blocks_ ABSL_GUARDED_BY(mu_);
  int reads_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  int fua_writes_ ABSL_GUARDED_BY(mu_) = 0;
  int flushes_ ABSL_GUARDED_BY(mu_) = 0;
  int unmaps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fakes

#endif  // TESTS_FAKES_MEMORY_BLOCK_STORE_H_
