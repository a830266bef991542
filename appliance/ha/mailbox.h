// Mailbox: each node's heartbeat record on shared storage, the second link
// (beside the interconnect) by which the nodes of a pair see each other.
//
// A node owns the file <shared_dir>/.ha/<own_node>.mailbox and writes only
// that one; it reads its partner's <shared_dir>/.ha/<partner_node>.mailbox.
// The file holds one fixed block of kMailboxBlockSize bytes at offset 0:
//
//   offset  size  field
//        0     4  magic "HAMB"
//        4     4  format version (1), little endian
//        8     4  payload length N (<= kMailboxMaxPayload), little endian
//       12     4  CRC32C (Castagnoli, as iSCSI) of bytes 0..11 and the payload
//       16     N  payload: a serialized MailboxRecord
//     16+N   ...  zeros up to kMailboxBlockSize
//
// A write replaces the whole block in place (pwrite, then fdatasync unless
// Options::sync is off), so there is never a second file to rename. A reader
// that races a write, or finds a block torn by a crash, sees a CRC mismatch
// and gets kDataLoss: it never accepts half a record. The caller simply reads
// again on its next beat.
//
// Thread-safe: every method may be called from any thread (WriteOwn calls are
// serialized by the caller; concurrent WriteOwn calls do not tear the block
// for readers, but which one lands last is unspecified).
#ifndef APPLIANCE_HA_MAILBOX_H_
#define APPLIANCE_HA_MAILBOX_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "appliance/ha/ha.pb.h"

namespace appliance::ha {

inline constexpr size_t kMailboxBlockSize = 4096;
inline constexpr size_t kMailboxHeaderSize = 16;
inline constexpr size_t kMailboxMaxPayload =
    kMailboxBlockSize - kMailboxHeaderSize;
inline constexpr uint32_t kMailboxFormatVersion = 1;

// The block for a record (exactly kMailboxBlockSize bytes), or
// kInvalidArgument when the serialized record exceeds kMailboxMaxPayload.
absl::StatusOr<std::string> EncodeMailboxBlock(const MailboxRecord& record);

// The record in a block. kDataLoss when the block is short, has a wrong magic,
// an unknown version, a length past the block, a CRC mismatch or a payload
// that does not parse. Never crashes on any input.
absl::StatusOr<MailboxRecord> DecodeMailboxBlock(
    absl::Span<const uint8_t> block);

// CRC32C (Castagnoli; "123456789" -> 0xE3069283), ISA-L's crc32_iscsi.
uint32_t MailboxCrc32c(absl::Span<const uint8_t> data);

struct MailboxOptions {
  // fdatasync after every write, so a record survives a crash of the node
  // (and a partner reading through another cache sees it). Tests may turn it
  // off for speed.
  bool sync = true;
};

class Mailbox {
 public:
  using Options = MailboxOptions;

  // Creates <shared_dir>/.ha if needed and opens (creating) this node's own
  // mailbox file; does not write a record. Node names must be non-empty file
  // name components ("node-a"), and differ. kInvalidArgument for bad names;
  // the errno's status for a directory or file that cannot be created.
  static absl::StatusOr<std::unique_ptr<Mailbox>> Open(
      absl::string_view shared_dir, absl::string_view own_node,
      absl::string_view partner_node, Options options = Options());

  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Replaces this node's record. record.node_name must be empty (it is then
  // filled in) or the own node's name (kInvalidArgument otherwise, or when
  // the record is too large). I/O errors come back as the errno's status.
  // durable: fdatasync after the write (when Options::sync); false for a
  // record whose loss in a crash does not matter (a plain heartbeat beat).
  absl::Status WriteOwn(const MailboxRecord& record, bool durable = true);

  // The partner's current record. kNotFound when the partner has not written
  // one yet (no file, or an empty file); kDataLoss for a torn, corrupt or short
  // block; kFailedPrecondition when the record names another node (two nodes
  // configured with the same name); other codes for I/O errors. The file is
  // opened for every read, so a partner that recreates it is followed.
  absl::StatusOr<MailboxRecord> ReadPartner() const;

  // This node's last record (what it wrote before a restart), with the same
  // error codes as ReadPartner.
  absl::StatusOr<MailboxRecord> ReadOwn() const;

  const std::string& own_node() const { return own_node_; }
  const std::string& partner_node() const { return partner_node_; }
  const std::string& own_path() const { return own_path_; }
  const std::string& partner_path() const { return partner_path_; }

  // <shared_dir>/.ha/<node>.mailbox
  static std::string PathFor(absl::string_view shared_dir,
                             absl::string_view node);

 private:
  Mailbox(std::string own_node, std::string partner_node, std::string own_path,
          std::string partner_path, int own_fd, Options options);

  // Reads and decodes the block of an open file; expected_node is checked
  // against the record's node_name.
  static absl::StatusOr<MailboxRecord> ReadBlock(
      int fd, absl::string_view path, absl::string_view expected_node);

  const std::string own_node_;
  const std::string partner_node_;
  const std::string own_path_;
  const std::string partner_path_;
  const int own_fd_;
  const Options options_;
};

}  // namespace appliance::ha

#endif  // APPLIANCE_HA_MAILBOX_H_
