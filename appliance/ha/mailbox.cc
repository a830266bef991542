#include "appliance/ha/mailbox.h"

#include <errno.h>
#include <fcntl.h>
#include <isa-l.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace appliance::ha {
namespace {

constexpr uint8_t kMagic[4] = {'H', 'A', 'M', 'B'};

void PutLe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

uint32_t GetLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
         uint32_t{p[3]} << 24;
}

// The CRC covers the first 12 header bytes (magic, version, length) and the
// payload, so a torn length field cannot select a different valid-looking
// payload.
uint32_t BlockCrc(const uint8_t* block, size_t payload_len) {
  uint32_t crc = 0xFFFFFFFFu;
  crc = crc32_iscsi(const_cast<uint8_t*>(block), 12, crc);
  if (payload_len > 0) {
    crc = crc32_iscsi(const_cast<uint8_t*>(block + kMailboxHeaderSize),
                      static_cast<int>(payload_len), crc);
  }
  return ~crc;
}

bool ValidNodeName(absl::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == absl::string_view::npos &&
         name.find('\0') == absl::string_view::npos;
}

absl::Status Errno(int err, absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

}  // namespace

uint32_t MailboxCrc32c(absl::Span<const uint8_t> data) {
  if (data.empty()) return 0;
  return ~crc32_iscsi(const_cast<uint8_t*>(data.data()),
                      static_cast<int>(data.size()), 0xFFFFFFFFu);
}

absl::StatusOr<std::string> EncodeMailboxBlock(const MailboxRecord& record) {
  std::string payload;
  if (!record.SerializeToString(&payload)) {
    return absl::InvalidArgumentError("mailbox record does not serialize");
  }
  if (payload.size() > kMailboxMaxPayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("mailbox record is ", payload.size(), " bytes, at most ",
                     kMailboxMaxPayload, " fit"));
  }
  std::string block(kMailboxBlockSize, '\0');
  auto* b = reinterpret_cast<uint8_t*>(block.data());
  std::memcpy(b, kMagic, 4);
  PutLe32(b + 4, kMailboxFormatVersion);
  PutLe32(b + 8, static_cast<uint32_t>(payload.size()));
  std::memcpy(b + kMailboxHeaderSize, payload.data(), payload.size());
  PutLe32(b + 12, BlockCrc(b, payload.size()));
  return block;
}

absl::StatusOr<MailboxRecord> DecodeMailboxBlock(
    absl::Span<const uint8_t> block) {
  if (block.size() < kMailboxBlockSize) {
    return absl::DataLossError(
        absl::StrCat("mailbox block is short: ", block.size(), " of ",
                     kMailboxBlockSize, " bytes"));
  }
  const uint8_t* b = block.data();
  if (std::memcmp(b, kMagic, 4) != 0) {
    return absl::DataLossError("mailbox block has no magic");
  }
  const uint32_t version = GetLe32(b + 4);
  if (version != kMailboxFormatVersion) {
    return absl::DataLossError(
        absl::StrCat("mailbox block has unknown format version ", version));
  }
  const uint32_t len = GetLe32(b + 8);
  if (len > kMailboxMaxPayload) {
    return absl::DataLossError(
        absl::StrCat("mailbox payload length ", len, " exceeds the block"));
  }
  const uint32_t want = GetLe32(b + 12);
  const uint32_t got = BlockCrc(b, len);
  if (want != got) {
    return absl::DataLossError("mailbox block CRC mismatch (torn or corrupt)");
  }
  MailboxRecord record;
  if (!record.ParseFromArray(b + kMailboxHeaderSize, static_cast<int>(len))) {
    return absl::DataLossError("mailbox payload does not parse");
  }
  return record;
}

std::string Mailbox::PathFor(absl::string_view shared_dir,
                             absl::string_view node) {
  return absl::StrCat(shared_dir, "/.ha/", node, ".mailbox");
}

absl::StatusOr<std::unique_ptr<Mailbox>> Mailbox::Open(
    absl::string_view shared_dir, absl::string_view own_node,
    absl::string_view partner_node, Options options) {
  if (!ValidNodeName(own_node) || !ValidNodeName(partner_node)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mailbox node names must be file name components: '",
                     own_node, "', '", partner_node, "'"));
  }
  if (own_node == partner_node) {
    return absl::InvalidArgumentError(
        absl::StrCat("mailbox: node and partner are both '", own_node, "'"));
  }
  if (shared_dir.empty()) {
    return absl::InvalidArgumentError("mailbox: empty shared directory");
  }
  const std::string dir = absl::StrCat(shared_dir, "/.ha");
  bool created_dir = false;
  if (::mkdir(dir.c_str(), 0755) == 0) {
    created_dir = true;
  } else if (errno != EEXIST) {
    return Errno(errno, "mkdir", dir);
  }
  std::string own_path = PathFor(shared_dir, own_node);
  std::string partner_path = PathFor(shared_dir, partner_node);

  bool created_file = false;
  int fd = ::open(own_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    fd = ::open(own_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    created_file = fd >= 0;
  }
  if (fd < 0) return Errno(errno, "open", own_path);

  // Make a new directory entry durable, so a partner (or a restart) finds the
  // file even after a crash right after the first write.
  if ((created_dir || created_file) && options.sync) {
    for (const std::string& d : {std::string(shared_dir), dir}) {
      int dfd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd < 0) continue;
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }
  return std::unique_ptr<Mailbox>(
      new Mailbox(std::string(own_node), std::string(partner_node),
                  std::move(own_path), std::move(partner_path), fd, options));
}

Mailbox::Mailbox(std::string own_node, std::string partner_node,
                 std::string own_path, std::string partner_path, int own_fd,
                 Options options)
    : own_node_(std::move(own_node)),
      partner_node_(std::move(partner_node)),
      own_path_(std::move(own_path)),
      partner_path_(std::move(partner_path)),
      own_fd_(own_fd),
      options_(options) {}

Mailbox::~Mailbox() { ::close(own_fd_); }

absl::Status Mailbox::WriteOwn(const MailboxRecord& record, bool durable) {
  if (!record.node_name().empty() && record.node_name() != own_node_) {
    return absl::InvalidArgumentError(absl::StrCat("mailbox of ", own_node_,
                                                   " cannot hold a record of ",
                                                   record.node_name()));
  }
  absl::StatusOr<std::string> block;
  if (record.node_name().empty()) {
    MailboxRecord named = record;
    named.set_node_name(own_node_);
    block = EncodeMailboxBlock(named);
  } else {
    block = EncodeMailboxBlock(record);
  }
  if (!block.ok()) return block.status();

  size_t done = 0;
  while (done < block->size()) {
    ssize_t n = ::pwrite(own_fd_, block->data() + done, block->size() - done,
                         static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "pwrite", own_path_);
    }
    if (n == 0) return absl::DataLossError("pwrite wrote nothing");
    done += static_cast<size_t>(n);
  }
  if (options_.sync && durable) {
    while (::fdatasync(own_fd_) != 0) {
      if (errno != EINTR) return Errno(errno, "fdatasync", own_path_);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MailboxRecord> Mailbox::ReadBlock(
    int fd, absl::string_view path, absl::string_view expected_node) {
  uint8_t block[kMailboxBlockSize];
  size_t got = 0;
  while (got < sizeof(block)) {
    ssize_t n =
        ::pread(fd, block + got, sizeof(block) - got, static_cast<off_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "pread", path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == 0) {
    return absl::NotFoundError(absl::StrCat(path, " holds no record yet"));
  }
  absl::StatusOr<MailboxRecord> record =
      DecodeMailboxBlock(absl::MakeConstSpan(block, got));
  if (!record.ok()) {
    return absl::Status(record.status().code(),
                        absl::StrCat(path, ": ", record.status().message()));
  }
  if (record->node_name() != expected_node) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds a record of '", record->node_name(),
                     "', expected '", expected_node, "'"));
  }
  return record;
}

absl::StatusOr<MailboxRecord> Mailbox::ReadPartner() const {
  int fd = ::open(partner_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(partner_path_, " does not exist"));
    }
    return Errno(errno, "open", partner_path_);
  }
  absl::StatusOr<MailboxRecord> record =
      ReadBlock(fd, partner_path_, partner_node_);
  ::close(fd);
  return record;
}

absl::StatusOr<MailboxRecord> Mailbox::ReadOwn() const {
  return ReadBlock(own_fd_, own_path_, own_node_);
}

}  // namespace appliance::ha
