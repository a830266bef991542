// SBC-3 block commands (and SBC-4 WRITE ATOMIC(16)) of scsi::Engine. Every
// data path completes from the BlockStore callback; writes hold an LBA range
// lock so COMPARE AND WRITE, ORWRITE and WRITE ATOMIC(16) are atomic with
// respect to other writers.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "target/scsi/bytes.h"
#include "target/scsi/engine_impl.h"

namespace scsi {

using internal::CommandPtr;
using internal::LogicalUnit;

namespace {

struct BlockRange {
  uint64_t lba = 0;
  uint64_t blocks = 0;
  uint8_t flags = 0;         // CDB byte 1
  uint16_t length_byte = 0;  // where the length field starts, for sense
};

// Decodes LBA and transfer length of the READ/WRITE/VERIFY-shaped CDBs.
BlockRange DecodeRange(const uint8_t* cdb) {
  BlockRange r;
  r.flags = cdb[1];
  switch (cdb[0] >> 5) {
    case 0:  // 6-byte
      r.lba = GetBe24(&cdb[1]) & 0x1FFFFF;
      r.blocks = cdb[4] == 0 ? 256 : cdb[4];
      r.flags = 0;
      r.length_byte = 4;
      break;
    case 1:  // 10-byte
    case 2:
      r.lba = GetBe32(&cdb[2]);
      r.blocks = GetBe16(&cdb[7]);
      r.length_byte = 7;
      break;
    case 5:  // 12-byte
      r.lba = GetBe32(&cdb[2]);
      r.blocks = GetBe32(&cdb[6]);
      r.length_byte = 6;
      break;
    default:  // 16-byte
      r.lba = GetBe64(&cdb[2]);
      r.blocks = GetBe32(&cdb[10]);
      r.length_byte = 10;
      break;
  }
  return r;
}

constexpr uint8_t kDpo = 0x10;
constexpr uint8_t kFua = 0x08;
constexpr uint8_t kProtectMask = 0xE0;

SenseData WriteProtectedSense() {
  SenseData s;
  s.key = SenseKey::kDataProtect;
  s.code = asc::kWriteProtected;
  return s;
}

SenseData MiscompareAt(uint64_t offset) {
  SenseData s;
  s.key = SenseKey::kMiscompare;
  s.code = asc::kMiscompareDuringVerifyOperation;
  s.information = offset;
  return s;
}

uint32_t ClampToU32(uint64_t v) { return static_cast<uint32_t>(std::min<uint64_t>(v, UINT32_MAX)); }

// Offset of the first differing byte, or -1.
int64_t FirstDifference(const uint8_t* a, const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace

void Engine::Impl::ReadCapacity10(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  if (!(cdb[8] & 0x01) && GetBe32(&cdb[2]) != 0) {
    return CompleteSense(cmd, InvalidFieldInCdb(2));  // LBA without PMI
  }
  const uint64_t capacity = cmd->lu->Capacity();
  std::vector<uint8_t> d(8);
  PutBe32(&d[0], capacity - 1 > 0xFFFFFFFFull ? 0xFFFFFFFFu
                                              : static_cast<uint32_t>(capacity - 1));
  PutBe32(&d[4], cmd->lu->block_size);
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::ReadCapacity16(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  std::vector<uint8_t> d(32, 0);
  PutBe64(&d[0], lu.Capacity() - 1);
  PutBe32(&d[8], lu.block_size);
  d[13] = lu.physical_exponent;  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
  if (lu.options.thin_provisioned) d[14] = 0xC0;  // LBPME, LBPRZ; LOWEST ALIGNED LBA 0
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::Read(const CommandPtr& cmd) {
  const BlockRange r = DecodeRange(cmd->cdb());
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  LogicalUnit& lu = *cmd->lu;
  const uint64_t wanted = r.blocks * lu.block_size;
  cmd->response.wanted_data_in_length = ClampToU32(wanted);
  // Read only the blocks the initiator will accept (task.h): a partly
  // accepted block is read whole and Complete() clips it.
  const uint64_t accepted = std::min<uint64_t>(wanted, cmd->task->expected_data_in_length);
  const uint64_t blocks = (accepted + lu.block_size - 1) / lu.block_size;
  if (blocks == 0) return Complete(cmd, std::move(cmd->response));
  cmd->response.data_in.resize(blocks * lu.block_size);
  lu.store->Read(r.lba, static_cast<uint32_t>(blocks),
                 absl::MakeSpan(cmd->response.data_in),
                 [this, cmd, lba = r.lba](absl::Status status) {
                   if (!status.ok()) return CompleteStorageError(cmd, status, false, lba);
                   Complete(cmd, std::move(cmd->response));
                 });
}

void Engine::Impl::Write(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const BlockRange r = DecodeRange(cmd->cdb());
  cmd->response.wanted_data_out_length = ClampToU32(r.blocks * lu.block_size);
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  uint64_t blocks = 0;
  if (auto e = DataOutBlocks(cmd, r.blocks, &blocks)) return CompleteSense(cmd, *e);
  if (blocks == 0) return Complete(cmd, std::move(cmd->response));
  const uint64_t bytes = blocks * lu.block_size;
  const bool fua = (r.flags & kFua) || !lu.write_cache_enabled;
  WithRangeLock(cmd, r.lba, blocks, [this, cmd, r, blocks, bytes, fua]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    cmd->lu->store->Write(r.lba, static_cast<uint32_t>(blocks),
                          absl::MakeConstSpan(cmd->task->data_out.data(), bytes), fua,
                          [this, cmd, lba = r.lba](absl::Status status) {
                            if (!status.ok()) return CompleteStorageError(cmd, status, true, lba);
                            Complete(cmd, std::move(cmd->response));
                          });
  });
}

void Engine::Impl::SynchronizeCache(const CommandPtr& cmd) {
  const BlockRange r = DecodeRange(cmd->cdb());
  const uint64_t capacity = cmd->lu->Capacity();
  if (r.lba > capacity || r.blocks > capacity - r.lba) return CompleteSense(cmd, LbaOutOfRange());
  cmd->lu->store->Flush([this, cmd, lba = r.lba](absl::Status status) {
    if (!status.ok()) return CompleteStorageError(cmd, status, true, lba);
    CompleteGood(cmd);
  });
}

void Engine::Impl::Verify(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const BlockRange r = DecodeRange(cmd->cdb());
  const uint8_t bytchk = (r.flags >> 1) & 0x03;
  const uint64_t wanted = bytchk == 0 ? 0 : bytchk == 3 ? lu.block_size : r.blocks * lu.block_size;
  cmd->response.wanted_data_out_length = static_cast<uint32_t>(std::min<uint64_t>(wanted, UINT32_MAX));
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (bytchk == 2) return CompleteSense(cmd, InvalidFieldInCdb(1, 2));
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  if (bytchk != 0) {
    if (auto e = CheckDataOut(cmd, r.blocks == 0 ? 0 : wanted, false)) return CompleteSense(cmd, *e);
  }
  if (r.blocks == 0) return CompleteGood(cmd);
  cmd->buffer.resize(r.blocks * lu.block_size);
  lu.store->Read(r.lba, static_cast<uint32_t>(r.blocks), absl::MakeSpan(cmd->buffer),
                 [this, cmd, r, bytchk](absl::Status status) {
                   if (!status.ok()) return CompleteStorageError(cmd, status, false, r.lba);
                   const uint32_t bs = cmd->lu->block_size;
                   const uint8_t* expected = cmd->task->data_out.data();
                   if (bytchk == 1) {
                     const int64_t diff =
                         FirstDifference(cmd->buffer.data(), expected, cmd->buffer.size());
                     if (diff >= 0) return CompleteSense(cmd, MiscompareAt(diff));
                   } else if (bytchk == 3) {
                     for (uint64_t i = 0; i < r.blocks; ++i) {
                       const int64_t diff =
                           FirstDifference(cmd->buffer.data() + i * bs, expected, bs);
                       if (diff >= 0) return CompleteSense(cmd, MiscompareAt(i * bs + diff));
                     }
                   }
                   Complete(cmd, std::move(cmd->response));
                 });
}

void Engine::Impl::WriteAndVerify(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const BlockRange r = DecodeRange(cmd->cdb());
  cmd->response.wanted_data_out_length = ClampToU32(r.blocks * lu.block_size);
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  uint64_t blocks = 0;
  if (auto e = DataOutBlocks(cmd, r.blocks, &blocks)) return CompleteSense(cmd, *e);
  if (blocks == 0) return Complete(cmd, std::move(cmd->response));
  const uint64_t bytes = blocks * lu.block_size;
  WithRangeLock(cmd, r.lba, blocks, [this, cmd, r, blocks, bytes]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    auto& store = *cmd->lu->store;
    store.Write(
        r.lba, static_cast<uint32_t>(blocks),
        absl::MakeConstSpan(cmd->task->data_out.data(), bytes), /*fua=*/true,
        [this, cmd, r, blocks, bytes](absl::Status status) {
          if (!status.ok()) return CompleteStorageError(cmd, status, true, r.lba);
          cmd->buffer.resize(bytes);
          cmd->lu->store->Read(
              r.lba, static_cast<uint32_t>(blocks), absl::MakeSpan(cmd->buffer),
              [this, cmd, r, bytes](absl::Status status) {
                if (!status.ok()) return CompleteStorageError(cmd, status, false, r.lba);
                const int64_t diff =
                    FirstDifference(cmd->buffer.data(), cmd->task->data_out.data(), bytes);
                if (diff >= 0) return CompleteSense(cmd, MiscompareAt(diff));
                Complete(cmd, std::move(cmd->response));
              });
        });
  });
}

void Engine::Impl::WriteSameChunks(const CommandPtr& cmd, uint64_t lba, uint64_t remaining,
                                   bool fua) {
  if (remaining == 0) return Complete(cmd, std::move(cmd->response));
  if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
  const uint32_t bs = cmd->lu->block_size;
  const uint64_t chunk = std::min<uint64_t>(remaining, cmd->buffer.size() / bs);
  cmd->lu->store->Write(lba, static_cast<uint32_t>(chunk),
                        absl::MakeConstSpan(cmd->buffer.data(), chunk * bs), fua,
                        [this, cmd, lba, remaining, chunk, fua](absl::Status status) {
                          if (!status.ok()) return CompleteStorageError(cmd, status, true, lba);
                          WriteSameChunks(cmd, lba + chunk, remaining - chunk, fua);
                        });
}

void Engine::Impl::WriteSame(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  const bool ws16 = cdb[0] == 0x93;
  const BlockRange r = DecodeRange(cdb);
  const bool unmap = r.flags & 0x08;
  const bool ndob = ws16 && (r.flags & 0x01);
  const uint32_t bs = lu.block_size;
  cmd->response.wanted_data_out_length = ndob ? 0 : bs;
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (r.flags & 0x10) return CompleteSense(cmd, InvalidFieldInCdb(1, 4));  // ANCHOR
  if (r.flags & 0x06) {
    return CompleteSense(cmd, InvalidFieldInCdb(1, (r.flags & 0x04) ? 2 : 1));  // PBDATA/LBDATA
  }
  if (ndob && !unmap) return CompleteSense(cmd, InvalidFieldInCdb(1, 0));
  if (r.blocks > MaxWriteSameBlocks(lu)) {
    return CompleteSense(cmd, InvalidFieldInCdb(r.length_byte));
  }
  const uint64_t capacity = lu.Capacity();
  if (r.lba > capacity || r.blocks > capacity - r.lba) return CompleteSense(cmd, LbaOutOfRange());
  if (r.blocks == 0) return CompleteSense(cmd, InvalidFieldInCdb(r.length_byte));  // WSNZ
  if (unmap && !lu.options.thin_provisioned) return CompleteSense(cmd, InvalidFieldInCdb(1, 3));
  // Write protection before the data-out, as for WRITE: a write-protected LU
  // refuses the command whatever was sent with it.
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  if (!ndob) {
    if (auto e = CheckDataOut(cmd, bs, true)) return CompleteSense(cmd, *e);
  }
  const uint8_t* pattern = ndob ? nullptr : cmd->task->data_out.data();
  const bool zero = ndob || std::all_of(pattern, pattern + bs, [](uint8_t b) { return b == 0; });
  const bool fua = !lu.write_cache_enabled;
  if (unmap && zero) {
    // Deallocated blocks read as zeros (LBPRZ=1), so unmapping writes the
    // pattern.
    return WithRangeLock(cmd, r.lba, r.blocks, [this, cmd, r]() {
      if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
      cmd->lu->store->Unmap(r.lba, r.blocks, [this, cmd, r](absl::Status status) {
        if (!status.ok()) return CompleteStorageError(cmd, status, true, r.lba);
        Complete(cmd, std::move(cmd->response));
      });
    });
  }
  constexpr uint64_t kChunkBytes = 1 << 20;
  const uint64_t chunk_blocks = std::max<uint64_t>(1, std::min<uint64_t>(r.blocks, kChunkBytes / bs));
  cmd->buffer.resize(chunk_blocks * bs);
  for (uint64_t i = 0; i < chunk_blocks; ++i) {
    if (ndob) {
      std::memset(cmd->buffer.data() + i * bs, 0, bs);
    } else {
      std::memcpy(cmd->buffer.data() + i * bs, pattern, bs);
    }
  }
  WithRangeLock(cmd, r.lba, r.blocks,
                [this, cmd, r, fua]() { WriteSameChunks(cmd, r.lba, r.blocks, fua); });
}

void Engine::Impl::Unmap(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  if (!lu.options.thin_provisioned) {
    return CompleteSense(cmd, IllegalRequest(asc::kInvalidCommandOperationCode));
  }
  if (cdb[1] & 0x01) return CompleteSense(cmd, InvalidFieldInCdb(1, 0));  // ANCHOR
  const uint32_t length = GetBe16(&cdb[7]);
  if (auto e = CheckDataOut(cmd, length, false)) return CompleteSense(cmd, *e);
  if (length == 0) return CompleteGood(cmd);
  if (length < 8) return CompleteSense(cmd, IllegalRequest(asc::kParameterListLengthError));
  const uint8_t* p = cmd->task->data_out.data();
  size_t descriptor_bytes = std::min<size_t>(GetBe16(&p[2]), length - 8);
  descriptor_bytes -= descriptor_bytes % 16;
  const size_t count = descriptor_bytes / 16;
  if (count > lu.options.max_unmap_descriptors) {
    return CompleteSense(cmd, InvalidFieldInParameterList(2));
  }
  const uint64_t capacity = lu.Capacity();
  struct Extent {
    uint64_t lba, blocks;
  };
  std::vector<Extent> extents;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* d = p + 8 + i * 16;
    const uint64_t lba = GetBe64(d);
    const uint64_t blocks = GetBe32(d + 8);
    if (lba > capacity || blocks > capacity - lba) return CompleteSense(cmd, LbaOutOfRange());
    if (blocks > lu.options.max_unmap_blocks) {
      return CompleteSense(cmd, InvalidFieldInParameterList(static_cast<uint16_t>(8 + i * 16 + 8)));
    }
    if (blocks == 0) continue;
    extents.push_back({lba, blocks});
    lo = std::min(lo, lba);
    hi = std::max(hi, lba + blocks);
  }
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  if (extents.empty()) return CompleteGood(cmd);
  WithRangeLock(cmd, lo, hi - lo, [this, cmd, extents = std::move(extents)]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    struct Pending {
      std::atomic<size_t> left;
      absl::Mutex mu;
      absl::Status first_error;
      uint64_t error_lba = 0;
    };
    auto pending = std::make_shared<Pending>();
    pending->left = extents.size();
    for (const auto& e : extents) {
      cmd->lu->store->Unmap(e.lba, e.blocks, [this, cmd, pending, lba = e.lba](absl::Status s) {
        if (!s.ok()) {
          absl::MutexLock lock(&pending->mu);
          if (pending->first_error.ok()) {
            pending->first_error = s;
            pending->error_lba = lba;
          }
        }
        if (pending->left.fetch_sub(1) != 1) return;
        if (!pending->first_error.ok()) {
          return CompleteStorageError(cmd, pending->first_error, true, pending->error_lba);
        }
        Complete(cmd, std::move(cmd->response));
      });
    }
  });
}

void Engine::Impl::GetLbaStatus(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  const uint64_t start = GetBe64(&cdb[2]);
  const uint32_t alloc = GetBe32(&cdb[10]);
  const uint64_t capacity = lu.Capacity();
  if (start >= capacity) return CompleteSense(cmd, LbaOutOfRange());
  const size_t max_descriptors =
      std::min<size_t>(1024, alloc < 24 ? 1 : (alloc - 8) / 16);
  std::vector<uint8_t> d(8, 0);
  ByteWriter w(d);
  uint64_t lba = start;
  for (size_t n = 0; n < max_descriptors && lba < capacity; ++n) {
    blockstore::AllocationExtent extent{lba, capacity - lba, true};
    if (lu.options.thin_provisioned) {
      auto queried = lu.store->QueryAllocation(lba);
      if (!queried.ok()) return CompleteStorageError(cmd, queried.status(), false, lba);
      extent = *queried;
    }
    const uint64_t blocks = std::min<uint64_t>(
        {std::max<uint64_t>(extent.num_blocks, 1), capacity - lba, 0xFFFFFFFFull});
    w.U64(lba);
    w.U32(static_cast<uint32_t>(blocks));
    w.U8(extent.mapped ? 0x00 : 0x01);  // mapped / deallocated
    w.Zeros(3);
    lba += blocks;
  }
  PutBe32(&d[0], static_cast<uint32_t>(d.size() - 4));
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::CompareAndWrite(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  const uint64_t lba = GetBe64(&cdb[2]);
  const uint64_t blocks = cdb[13];
  const uint32_t bs = lu.block_size;
  const uint64_t half = blocks * bs;
  cmd->response.wanted_data_out_length = static_cast<uint32_t>(2 * half);
  if (cdb[1] & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (blocks > lu.options.max_compare_and_write_blocks) {
    return CompleteSense(cmd, InvalidFieldInCdb(13));
  }
  if (auto e = CheckRange(cmd, lba, blocks, 13)) return CompleteSense(cmd, *e);
  // The data-out is exactly what NUMBER OF LOGICAL BLOCKS describes; when the
  // initiator sent something else, that field is what is wrong. (libiscsi asks
  // for 256 blocks with 512 blocks of data-out: the 8-bit field reads 0.)
  if (cmd->task->data_out.size() != 2 * half) return CompleteSense(cmd, InvalidFieldInCdb(13));
  if (blocks == 0) return CompleteGood(cmd);
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  const bool fua = (cdb[1] & kFua) || !lu.write_cache_enabled;
  WithRangeLock(cmd, lba, blocks, [this, cmd, lba, blocks, half, fua]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    cmd->buffer.resize(half);
    cmd->lu->store->Read(
        lba, static_cast<uint32_t>(blocks), absl::MakeSpan(cmd->buffer),
        [this, cmd, lba, blocks, half, fua](absl::Status status) {
          if (!status.ok()) return CompleteStorageError(cmd, status, false, lba);
          const int64_t diff =
              FirstDifference(cmd->buffer.data(), cmd->task->data_out.data(), half);
          if (diff >= 0) return CompleteSense(cmd, MiscompareAt(diff));
          cmd->lu->store->Write(
              lba, static_cast<uint32_t>(blocks),
              absl::MakeConstSpan(cmd->task->data_out.data() + half, half), fua,
              [this, cmd, lba](absl::Status status) {
                if (!status.ok()) return CompleteStorageError(cmd, status, true, lba);
                Complete(cmd, std::move(cmd->response));
              });
        });
  });
}

void Engine::Impl::WriteAtomic16(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  const uint64_t lba = GetBe64(&cdb[2]);
  const uint64_t blocks = GetBe16(&cdb[12]);
  const uint64_t bytes = blocks * lu.block_size;
  cmd->response.wanted_data_out_length = ClampToU32(bytes);
  if (cdb[1] & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  // MAXIMUM ATOMIC BOUNDARY SIZE is 0: only ATOMIC BOUNDARY 0 (the whole
  // transfer is one atomic write) is supported.
  if (GetBe16(&cdb[10]) != 0) return CompleteSense(cmd, InvalidFieldInCdb(10));
  if (blocks > MaxAtomicTransferBlocks(lu)) return CompleteSense(cmd, InvalidFieldInCdb(12));
  if (const uint32_t unit = AtomicUnitBlocks(lu); unit != 0) {
    if (lba % unit != 0) return CompleteSense(cmd, InvalidFieldInCdb(2));  // ATOMIC ALIGNMENT
    if (blocks % unit != 0) return CompleteSense(cmd, InvalidFieldInCdb(12));  // GRANULARITY
  }
  if (auto e = CheckRange(cmd, lba, blocks, 12)) return CompleteSense(cmd, *e);
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  // All or nothing: a short data-out writes nothing (a longer one is used up
  // to the CDB's length, as for WRITE).
  if (auto e = CheckDataOut(cmd, bytes, false)) return CompleteSense(cmd, *e);
  if (blocks == 0) return Complete(cmd, std::move(cmd->response));
  const bool fua = (cdb[1] & kFua) || !lu.write_cache_enabled;
  // One BlockStore write under the range lock of the whole span: every other
  // writer of these LBAs (WRITE, COMPARE AND WRITE, WRITE SAME, UNMAP, ...)
  // runs entirely before or after it.
  WithRangeLock(cmd, lba, blocks, [this, cmd, lba, blocks, bytes, fua]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    cmd->lu->store->Write(lba, static_cast<uint32_t>(blocks),
                          absl::MakeConstSpan(cmd->task->data_out.data(), bytes), fua,
                          [this, cmd, lba](absl::Status status) {
                            if (!status.ok()) return CompleteStorageError(cmd, status, true, lba);
                            Complete(cmd, std::move(cmd->response));
                          });
  });
}

void Engine::Impl::PreFetch(const CommandPtr& cmd) {
  const BlockRange r = DecodeRange(cmd->cdb());
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  // No cache to load into: SBC-3 says GOOD when the blocks may not all fit.
  CompleteGood(cmd);
}

void Engine::Impl::OrWrite(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const BlockRange r = DecodeRange(cmd->cdb());
  const uint64_t bytes = r.blocks * lu.block_size;
  cmd->response.wanted_data_out_length = static_cast<uint32_t>(std::min<uint64_t>(bytes, UINT32_MAX));
  if (r.flags & kProtectMask) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  if (auto e = CheckRange(cmd, r.lba, r.blocks, r.length_byte)) return CompleteSense(cmd, *e);
  if (WriteProtected(lu)) return CompleteSense(cmd, WriteProtectedSense());
  if (auto e = CheckDataOut(cmd, bytes, false)) return CompleteSense(cmd, *e);
  if (r.blocks == 0) return CompleteGood(cmd);
  const bool fua = (r.flags & kFua) || !lu.write_cache_enabled;
  WithRangeLock(cmd, r.lba, r.blocks, [this, cmd, r, bytes, fua]() {
    if (Aborted(cmd)) return Complete(cmd, TaskResponse{});
    cmd->buffer.resize(bytes);
    cmd->lu->store->Read(
        r.lba, static_cast<uint32_t>(r.blocks), absl::MakeSpan(cmd->buffer),
        [this, cmd, r, bytes, fua](absl::Status status) {
          if (!status.ok()) return CompleteStorageError(cmd, status, false, r.lba);
          for (uint64_t i = 0; i < bytes; ++i) cmd->buffer[i] |= cmd->task->data_out[i];
          cmd->lu->store->Write(r.lba, static_cast<uint32_t>(r.blocks),
                                absl::MakeConstSpan(cmd->buffer), fua,
                                [this, cmd, r](absl::Status status) {
                                  if (!status.ok()) {
                                    return CompleteStorageError(cmd, status, true, r.lba);
                                  }
                                  Complete(cmd, std::move(cmd->response));
                                });
        });
  });
}

void Engine::Impl::ReadDefectData(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  std::vector<uint8_t> d;
  if (cdb[0] == 0x37) {
    d = {0, static_cast<uint8_t>(cdb[2] & 0x1F), 0, 0};  // empty list
  } else {
    d = {0, static_cast<uint8_t>(cdb[1] & 0x1F), 0, 0, 0, 0, 0, 0};
  }
  CompleteData(cmd, std::move(d));
}

}  // namespace scsi
