#include "tests/fakes/memory_block_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace fakes {

MemoryBlockStore::MemoryBlockStore(Options options)
    : options_(std::move(options)), num_blocks_(options_.num_blocks) {}

uint64_t MemoryBlockStore::num_blocks() const {
  absl::MutexLock lock(&mu_);
  return num_blocks_;
}

absl::Status MemoryBlockStore::CheckRange(uint64_t lba, uint64_t n) const {
  if (lba > num_blocks_ || n > num_blocks_ - lba) {
    return absl::OutOfRangeError("LBA range beyond end of LU");
  }
  return absl::OkStatus();
}

void MemoryBlockStore::Complete(Callback done, absl::Status status) {
  if (options_.executor) {
    options_.executor(
        [done = std::move(done), status = std::move(status)]() mutable {
          std::move(done)(std::move(status));
        });
  } else {
    std::move(done)(std::move(status));
  }
}

void MemoryBlockStore::Read(uint64_t lba, uint32_t n, absl::Span<uint8_t> out,
                            Callback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    ++reads_;
    status = CheckRange(lba, n);
    if (status.ok() && out.size() != uint64_t{n} * options_.block_size) {
      status = absl::InvalidArgumentError("buffer size mismatch");
    }
    if (status.ok()) {
      const uint32_t bs = options_.block_size;
      for (uint32_t i = 0; i < n; ++i) {
        auto it = blocks_.find(lba + i);
        if (it == blocks_.end()) {
          std::memset(out.data() + uint64_t{i} * bs, 0, bs);
        } else {
          std::memcpy(out.data() + uint64_t{i} * bs, it->second.data(), bs);
        }
      }
    }
  }
  Complete(std::move(done), std::move(status));
}

void MemoryBlockStore::Write(uint64_t lba, uint32_t n,
                             absl::Span<const uint8_t> data, bool fua,
                             Callback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    ++writes_;
    if (fua) ++fua_writes_;
    status = CheckRange(lba, n);
    if (status.ok() && data.size() != uint64_t{n} * options_.block_size) {
      status = absl::InvalidArgumentError("buffer size mismatch");
    }
    if (status.ok()) {
      const uint32_t bs = options_.block_size;
      for (uint32_t i = 0; i < n; ++i) {
        const uint8_t* src = data.data() + uint64_t{i} * bs;
        blocks_[lba + i].assign(src, src + bs);
      }
    }
  }
  Complete(std::move(done), std::move(status));
}

void MemoryBlockStore::Flush(Callback done) {
  {
    absl::MutexLock lock(&mu_);
    ++flushes_;
  }
  Complete(std::move(done), absl::OkStatus());
}

void MemoryBlockStore::Unmap(uint64_t lba, uint64_t n, Callback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    ++unmaps_;
    status = CheckRange(lba, n);
    if (status.ok()) {
      blocks_.erase(blocks_.lower_bound(lba), blocks_.lower_bound(lba + n));
    }
  }
  Complete(std::move(done), std::move(status));
}

absl::StatusOr<blockstore::AllocationExtent> MemoryBlockStore::QueryAllocation(
    uint64_t lba) {
  absl::MutexLock lock(&mu_);
  if (lba >= num_blocks_) return absl::OutOfRangeError("LBA beyond end of LU");
  blockstore::AllocationExtent extent;
  extent.lba = lba;
  auto it = blocks_.lower_bound(lba);
  if (it != blocks_.end() && it->first == lba) {
    extent.mapped = true;
    uint64_t next = lba;
    while (it != blocks_.end() && it->first == next && next < num_blocks_) {
      ++next;
      ++it;
    }
    extent.num_blocks = next - lba;
  } else {
    extent.mapped = false;
    uint64_t end = it == blocks_.end() ? num_blocks_ : std::min(it->first, num_blocks_);
    extent.num_blocks = end - lba;
  }
  return extent;
}

void MemoryBlockStore::Resize(uint64_t n) {
  absl::MutexLock lock(&mu_);
  num_blocks_ = n;
  blocks_.erase(blocks_.lower_bound(n), blocks_.end());
}

std::vector<uint8_t> MemoryBlockStore::Peek(uint64_t lba, uint32_t n) const {
  absl::MutexLock lock(&mu_);
  const uint32_t bs = options_.block_size;
  std::vector<uint8_t> out(uint64_t{n} * bs, 0);
  for (uint32_t i = 0; i < n; ++i) {
    auto it = blocks_.find(lba + i);
    if (it != blocks_.end()) {
      std::memcpy(out.data() + uint64_t{i} * bs, it->second.data(), bs);
    }
  }
  return out;
}

void MemoryBlockStore::Poke(uint64_t lba, absl::Span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  const uint32_t bs = options_.block_size;
  for (size_t off = 0; off + bs <= data.size(); off += bs) {
    blocks_[lba + off / bs].assign(data.data() + off, data.data() + off + bs);
  }
}

bool MemoryBlockStore::IsMapped(uint64_t lba) const {
  absl::MutexLock lock(&mu_);
  return blocks_.count(lba) != 0;
}

uint64_t MemoryBlockStore::mapped_block_count() const {
  absl::MutexLock lock(&mu_);
  return blocks_.size();
}

int MemoryBlockStore::reads() const {
  absl::MutexLock lock(&mu_);
  return reads_;
}
int MemoryBlockStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}
int MemoryBlockStore::fua_writes() const {
  absl::MutexLock lock(&mu_);
  return fua_writes_;
}
int MemoryBlockStore::flushes() const {
  absl::MutexLock lock(&mu_);
  return flushes_;
}
int MemoryBlockStore::unmaps() const {
  absl::MutexLock lock(&mu_);
  return unmaps_;
}

}  // namespace fakes
