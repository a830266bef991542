// BlockStore: the logical-unit backing interface the SCSI engine executes
// against.
//
// It sits at the bottom of the dependency graph: target/scsi calls it, and
// appliance/storage (file-backed LUNs on shared storage) implements it. Every
// data operation is asynchronous; the callback runs exactly once, on an I/O
// thread of the implementation, and must not block. Buffers passed in must stay
// valid until the callback has run.
//
// Status codes carry retry meaning so the SCSI engine can map them to sense
// data:
//   kOutOfRange         LBA range beyond the end of the LU (ILLEGAL REQUEST)
//   kDataLoss           the medium failed (EIO)            -> MEDIUM ERROR
//   kResourceExhausted  no space to allocate (ENOSPC)      -> SPACE ALLOCATION
//   FAILED kUnavailable        the store is closed or fenced      -> retry
//   elsewhere kInternal           anything else
#ifndef BLOCKSTORE_BLOCK_STORE_H_
#define BLOCKSTORE_BLOCK_STORE_H_

#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace blockstore {

// Stable identity of a logical unit, reported through INQUIRY VPD pages.
struct LunIdentity {
  // NAA IEEE Registered Extended designator (NAA 6), 16 bytes as 32 hex digits.
  std::string naa_id;
  // Unit serial number (VPD 0x80), printable ASCII.
  std::string serial;
  // RFC 4122 UUID in canonical text form.
  std::string uuid;
};

// Whether a run of blocks holds data or has been deallocated (GET LBA STATUS).
struct AllocationExtent {
  uint64_t lba = 0;         // first block of the run
  uint64_t num_blocks = 0;  // length of the run (>= 1)
  bool mapped = false;  // true: holds data; false: deallocated (reads as zeros)
};

class BlockStore {
 public:
  using Callback = absl::AnyInvocable<void(absl::Status) &&>;

  virtual ~BlockStore() = default;

  // Logical block size in bytes (512 or 4096).
  virtual uint32_t block_size() const = 0;
  // Capacity in logical blocks.
  virtual uint64_t num_blocks() const = 0;
  virtual const LunIdentity& identity() const = 0;

  // Reads num_blocks blocks starting at lba into out (out.size() must equal
  // num_blocks * block_size()).
  virtual void Read(uint64_t lba, uint32_t num_blocks, absl::Span<uint8_t> out,
                    Callback done) = 0;
  // Writes data (num_blocks * block_size() bytes) at lba. With fua the data is
  // on stable storage when done reports OK.
  virtual void Write(uint64_t lba, uint32_t num_blocks,
                     absl::Span<const uint8_t> data, bool fua,
                     Callback done) = 0;
  // Makes every completed write durable (fdatasync).
  virtual void Flush(Callback done) = 0;
  // Deallocates the range; later reads return zeros.
  virtual void Unmap(uint64_t lba, uint64_t num_blocks, Callback done) = 0;
  // The run of equally-allocated blocks that starts at lba (synchronous,
  // cheap).
  virtual absl::StatusOr<AllocationExtent> QueryAllocation(uint64_t lba) = 0;
};

}  // namespace blockstore

#endif  // BLOCKSTORE_BLOCK_STORE_H_
