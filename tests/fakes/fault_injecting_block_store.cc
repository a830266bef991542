#include "tests/fakes/fault_injecting_block_store.h"

#include <utility>

namespace fakes {

FaultInjectingBlockStore::FaultInjectingBlockStore(blockstore::BlockStore& base)
    : base_(&base) {}

FaultInjectingBlockStore::FaultInjectingBlockStore(
    std::shared_ptr<blockstore::BlockStore> base)
    : owned_(std::move(base)), base_(owned_.get()) {}

void FaultInjectingBlockStore::InjectFault(BlockOp op, absl::Status status,
                                           int count, uint64_t lba,
                                           uint64_t num_blocks) {
  absl::MutexLock lock(&mu_);
  faults_.push_back(Fault{op, std::move(status), count, lba, num_blocks});
}

void FaultInjectingBlockStore::ClearFaults() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
}

void FaultInjectingBlockStore::Hold(BlockOp op) {
  absl::MutexLock lock(&mu_);
  held_[static_cast<int>(op)] = true;
}

void FaultInjectingBlockStore::Unhold(BlockOp op) {
  absl::MutexLock lock(&mu_);
  held_[static_cast<int>(op)] = false;
}

bool FaultInjectingBlockStore::ReleaseOne() {
  Issue issue;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return false;
    issue = std::move(queue_.front());
    queue_.pop_front();
  }
  std::move(issue)();
  return true;
}

size_t FaultInjectingBlockStore::ReleaseAll() {
  size_t n = 0;
  while (ReleaseOne()) ++n;
  return n;
}

size_t FaultInjectingBlockStore::held_count() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

int FaultInjectingBlockStore::count(BlockOp op) const {
  absl::MutexLock lock(&mu_);
  return counts_[static_cast<int>(op)];
}

absl::Status FaultInjectingBlockStore::Decide(BlockOp op, uint64_t lba,
                                              uint64_t n, bool* hold) {
  absl::MutexLock lock(&mu_);
  ++counts_[static_cast<int>(op)];
  *hold = held_[static_cast<int>(op)];
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->op != op) continue;
    const bool overlaps = op == BlockOp::kFlush ||
                          (lba < it->lba + it->num_blocks &&
                           it->lba < lba + (n == 0 ? 1 : n));
    if (!overlaps) continue;
    absl::Status failure = it->status;
    if (it->remaining > 0 && --it->remaining == 0) faults_.erase(it);
    return failure;
  }
  return absl::OkStatus();
}

void FaultInjectingBlockStore::Run(bool hold, Issue issue) {
  if (hold) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(issue));
    return;
  }
  std::move(issue)();
}

void FaultInjectingBlockStore::Read(uint64_t lba, uint32_t n,
                                    absl::Span<uint8_t> out, Callback done) {
  bool hold = false;
  absl::Status status = Decide(BlockOp::kRead, lba, n, &hold);
  if (!status.ok()) return std::move(done)(std::move(status));
  Run(hold, [this, lba, n, out, done = std::move(done)]() mutable {
    base_->Read(lba, n, out, std::move(done));
  });
}

void FaultInjectingBlockStore::Write(uint64_t lba, uint32_t n,
                                     absl::Span<const uint8_t> data, bool fua,
                                     Callback done) {
  bool hold = false;
  absl::Status status = Decide(BlockOp::kWrite, lba, n, &hold);
  if (!status.ok()) return std::move(done)(std::move(status));
  Run(hold, [this, lba, n, data, fua, done = std::move(done)]() mutable {
    base_->Write(lba, n, data, fua, std::move(done));
  });
}

void FaultInjectingBlockStore::Flush(Callback done) {
  bool hold = false;
  absl::Status status = Decide(BlockOp::kFlush, 0, 0, &hold);
  if (!status.ok()) return std::move(done)(std::move(status));
  Run(hold, [this, done = std::move(done)]() mutable {
    base_->Flush(std::move(done));
  });
}

void FaultInjectingBlockStore::Unmap(uint64_t lba, uint64_t n, Callback done) {
  bool hold = false;
  absl::Status status = Decide(BlockOp::kUnmap, lba, n, &hold);
  if (!status.ok()) return std::move(done)(std::move(status));
  Run(hold, [this, lba, n, done = std::move(done)]() mutable {
    base_->Unmap(lba, n, std::move(done));
  });
}

}  // namespace fakes
