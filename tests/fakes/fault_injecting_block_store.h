// FaultInjectingBlockStore: wraps any BlockStore and lets a test inject failures
// (EIO-style kDataLoss, ENOSPC-style kResourceExhausted, kUnavailable, ...) and
// hold operations in flight, per operation type.
//
// A failing operation never reaches the wrapped store. A held operation is
// queued before it reaches the wrapped store and is issued only when the test
// calls Release*(), so "the I/O is in flight" is a state the test controls
// without threads or sleeps. Geometry and QueryAllocation pass through.
// Thread-safe.
#ifndef TESTS_FAKES_FAULT_INJECTING_BLOCK_STORE_H_
#define TESTS_FAKES_FAULT_INJECTING_BLOCK_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "blockstore/block_store.h"

namespace fakes {

enum class BlockOp : uint8_t { kRead = 0, kWrite = 1, kFlush = 2, kUnmap = 3 };

class FaultInjectingBlockStore : public blockstore::BlockStore {
 public:
  // Does not take ownership; base must outlive this wrapper.
  explicit FaultInjectingBlockStore(blockstore::BlockStore& base);
  // Shares ownership of base.
  explicit FaultInjectingBlockStore(std::shared_ptr<blockstore::BlockStore> base);

  // Makes the next `count` operations of type op that touch [lba, lba+n)
  // (any range by default; Flush has no range) fail with status. count < 0:
  // every such operation fails until ClearFaults().
  void InjectFault(BlockOp op, absl::Status status, int count = -1,
                   uint64_t lba = 0,
                   uint64_t num_blocks = std::numeric_limits<uint64_t>::max());
  void ClearFaults();

  // While held, operations of type op are queued instead of issued.
  void Hold(BlockOp op);
  // Stops holding op (queued operations stay queued until released).
  void Unhold(BlockOp op);
  // Issues the oldest queued operation; false when none is queued.
  bool ReleaseOne();
  // Issues every queued operation (in order). Returns how many.
  size_t ReleaseAll();
  size_t held_count() const;

  // Operations seen, by type (including failed and held ones).
  int count(BlockOp op) const;

  uint32_t block_size() const override { return base_->block_size(); }
  uint64_t num_blocks() const override { return base_->num_blocks(); }
  const blockstore::LunIdentity& identity() const override {
    return base_->identity();
  }
  void Read(uint64_t lba, uint32_t num_blocks, absl::Span<uint8_t> out,
            Callback done) override;
  void Write(uint64_t lba, uint32_t num_blocks, absl::Span<const uint8_t> data,
             bool fua, Callback done) override;
  void Flush(Callback done) override;
  void Unmap(uint64_t lba, uint64_t num_blocks, Callback done) override;
  absl::StatusOr<blockstore::AllocationExtent> QueryAllocation(
      uint64_t lba) override {
    return base_->QueryAllocation(lba);
  }

 private:
  struct Fault {
    BlockOp op;
    absl::Status status;
    int remaining;
    uint64_t lba;
    uint64_t num_blocks;
  };
  using Issue = absl::AnyInvocable<void() &&>;

  // Decides the fate of an operation: a failure status, or OK with *hold
  // telling whether to queue it instead of issuing it now.
  absl::Status Decide(BlockOp op, uint64_t lba, uint64_t n, bool* hold);
  // Issues now or queues, as Decide said.
  void Run(bool hold, Issue issue);

  std::shared_ptr<blockstore::BlockStore> owned_;
  blockstore::BlockStore* base_;
  mutable absl::Mutex mu_;
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);
  bool held_[4] ABSL_GUARDED_BY(mu_) = {false, false, false, false};
  std::deque<Issue> queue_ ABSL_GUARDED_BY(mu_);
  int counts_[4] ABSL_GUARDED_BY(mu_) = {0, 0, 0, 0};
};

}  // namespace fakes

#endif  // TESTS_FAKES_FAULT_INJECTING_BLOCK_STORE_H_
