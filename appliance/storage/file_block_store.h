// FileBlockStore: a logical unit backed by one sparse file on shared storage.
//
// The BlockStore the SCSI engine runs against on the node that owns a LUN. The
// LU's blocks are the file's bytes (LBA n at offset n * block_size); unwritten and
// unmapped blocks are holes that read as zeros. All data I/O goes through an
// injected FileIo (io_uring or a thread pool; see file_io_factory.h), so callbacks
// run on that FileIo's threads, also for requests rejected before any I/O.
//
// The file holds data only: block size and identity come from the caller (the
// configuration database), which also calls Create once and Open on every start
// or takeover.
//
// Errors follow blockstore/block_store.h: kOutOfRange for LBAs past the end,
// kInvalidArgument for a buffer of the wrong size, kDataLoss for EIO,
// kResourceExhausted for ENOSPC (and EDQUOT), kUnavailable once Close() has
// begun, kInternal with the errno text for anything else. Short transfers are
// resubmitted until complete; a request fails only on an error.
#ifndef APPLIANCE_STORAGE_FILE_BLOCK_STORE_H_
#define APPLIANCE_STORAGE_FILE_BLOCK_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/storage/file_io.h"
#include "appliance/storage/file_io_factory.h"
#include "blockstore/block_store.h"

namespace appliance::storage {

struct FileBlockStoreOptions {
  // Logical block size in bytes: 512 or 4096.
  uint32_t block_size = 512;
  // Identity reported by identity(); see identity.h. Kept by the caller, never
  // written to the file. May be empty in tests.
  blockstore::LunIdentity identity;
  // The engine to build when file_io is null.
  FileIoOptions io;
  // When set, used instead of building an engine (tests inject a
  // FaultInjectingFileIo; a daemon may share one engine between LUNs). Not
  // owned: it must outlive the store.
  FileIo* file_io = nullptr;
};

class FileBlockStore final : public blockstore::BlockStore {
 public:
  using Options = FileBlockStoreOptions;

  // Creates a new sparse backing file of size_bytes (a positive multiple of
  // options.block_size) and opens it. Fails with kAlreadyExists if path exists
  // (never overwrites), kInvalidArgument for a bad block size or size.
  static absl::StatusOr<std::unique_ptr<FileBlockStore>> Create(
      const std::string& path, uint64_t size_bytes, const Options& options);
  // Opens an existing backing file; the capacity is the file's size, which must
  // be a positive multiple of options.block_size (else kFailedPrecondition).
  // kNotFound if the file does not exist.
  static absl::StatusOr<std::unique_ptr<FileBlockStore>> Open(
      const std::string& path, const Options& options);

  // Close()s.
  ~FileBlockStore() override;

  FileBlockStore(const FileBlockStore&) = delete;
  FileBlockStore& operator=(const FileBlockStore&) = delete;

  // Rejects new requests with kUnavailable, waits until every accepted request
  // has completed and its callback has run, then closes the file. Idempotent.
  // Must not be called (nor the store destroyed) from one of its callbacks.
  void Close();

  const std::string& path() const { return path_; }
  // Name of the FileIo engine in use ("io_uring", "thread_pool", ...).
  absl::string_view io_engine() const { return io_->name(); }

  uint32_t block_size() const override { return block_size_; }
  uint64_t num_blocks() const override { return num_blocks_; }
  const blockstore::LunIdentity& identity() const override { return identity_; }

  void Read(uint64_t lba, uint32_t num_blocks, absl::Span<uint8_t> out,
            Callback done) override;
  void Write(uint64_t lba, uint32_t num_blocks, absl::Span<const uint8_t> data,
             bool fua, Callback done) override;
  void Flush(Callback done) override;
  void Unmap(uint64_t lba, uint64_t num_blocks, Callback done) override;
  absl::StatusOr<blockstore::AllocationExtent> QueryAllocation(
      uint64_t lba) override;

 private:
  struct Transfer;

  FileBlockStore(std::string path, int fd, uint64_t num_blocks,
                 const Options& options, std::unique_ptr<FileIo> owned_io,
                 FileIo* io);
  static absl::StatusOr<std::unique_ptr<FileBlockStore>> Make(
      const std::string& path, int fd, uint64_t size_bytes,
      const Options& options);

  // Admission: false once Close() has begun. Each true must be paired with
  // Finish() (or EndRequest() for synchronous calls).
  bool BeginRequest();
  void EndRequest();
  // Runs done(status) and ends the request.
  void Finish(Callback done, absl::Status status);
  // Reports status through the FileIo's threads (no I/O involved).
  void Reject(Callback done, absl::Status status, bool admitted);
  absl::Status CheckRange(uint64_t lba, uint64_t num_blocks) const;
  void Continue(std::unique_ptr<Transfer> transfer);
  void OnTransferred(std::unique_ptr<Transfer> transfer, int64_t result);

  const std::string path_;
  const int fd_;
  const uint32_t block_size_;
  const uint64_t num_blocks_;
  const blockstore::LunIdentity identity_;
  std::unique_ptr<FileIo> owned_io_;  // null when the FileIo was injected
  FileIo* const io_;

  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool fd_closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t requests_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Removes a backing file (the LUN's data). The store using it must be closed.
// kNotFound if it does not exist.
absl::Status DeleteBackingFile(const std::string& path);

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_FILE_BLOCK_STORE_H_
