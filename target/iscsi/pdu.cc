#include "target/iscsi/pdu.h"

#include <isa-l.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace iscsi {

bool IsInitiatorOpcode(uint8_t op) {
  return op <= 0x06 || op == 0x10;
}

bool IsTargetOpcode(uint8_t op) {
  return (op >= 0x20 && op <= 0x26) || op == 0x31 || op == 0x32 || op == 0x3f;
}

uint32_t Crc32cUpdate(uint32_t crc, absl::Span<const uint8_t> data) {
  if (data.empty()) return crc;
  return crc32_iscsi(const_cast<unsigned char*>(data.data()),
                     static_cast<int>(data.size()), crc);
}

uint32_t Crc32c(absl::Span<const uint8_t> data) {
  return ~Crc32cUpdate(kCrc32cInit, data);
}

namespace {

// iSCSI carries the CRC32C least significant byte first (RFC 7143 B.4 lists
// 32 zero bytes -> aa 36 91 8a).
void PutDigest(uint32_t crc, std::vector<uint8_t>* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(crc >> (8 * i)));
}

uint32_t GetDigest(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}

absl::Status WrongOpcode(const Bhs& bhs, Opcode want) {
  return absl::InvalidArgumentError(absl::StrCat(
      "opcode 0x", absl::Hex(bhs.opcode()), " is not 0x",
      absl::Hex(static_cast<uint8_t>(want))));
}

Bhs Start(Opcode op, bool immediate = false) {
  Bhs b;
  b.bytes[0] = static_cast<uint8_t>(op) | (immediate ? 0x40 : 0);
  return b;
}

}  // namespace

// ---- AHS ----

absl::StatusOr<ParsedAhs> ParseAhs(absl::Span<const uint8_t> ahs) {
  ParsedAhs out;
  if (ahs.size() % 4 != 0) return absl::InvalidArgumentError("AHS not 4-aligned");
  size_t pos = 0;
  while (pos < ahs.size()) {
    if (ahs.size() - pos < 4) return absl::InvalidArgumentError("short AHS");
    const uint16_t len = static_cast<uint16_t>((ahs[pos] << 8) | ahs[pos + 1]);
    const uint8_t type = ahs[pos + 2];
    // AHSLength counts the AHS-specific bytes starting at the reserved byte 3.
    const size_t total = 3 + size_t{len};
    const size_t padded = (total + 3) & ~size_t{3};
    if (len == 0 || pos + padded > ahs.size()) {
      return absl::InvalidArgumentError("AHS length exceeds TotalAHSLength");
    }
    const uint8_t* specific = ahs.data() + pos + 4;  // after the reserved byte
    const size_t specific_len = len - 1;
    switch (static_cast<AhsType>(type)) {
      case AhsType::kExtendedCdb:
        if (!out.extended_cdb.empty()) {
          return absl::InvalidArgumentError("duplicate extended CDB AHS");
        }
        if (specific_len == 0 || specific_len > 260 - 16) {
          return absl::InvalidArgumentError("bad extended CDB length");
        }
        out.extended_cdb.assign(specific, specific + specific_len);
        break;
      case AhsType::kBidiReadLength:
        if (len != 5) return absl::InvalidArgumentError("bad bidi AHS length");
        out.bidi_read_length = (uint32_t{specific[0]} << 24) |
                               (uint32_t{specific[1]} << 16) |
                               (uint32_t{specific[2]} << 8) | specific[3];
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("unknown AHS type ", type));
    }
    pos += padded;
  }
  return out;
}

std::vector<uint8_t> BuildExtendedCdbAhs(absl::Span<const uint8_t> cdb_tail) {
  std::vector<uint8_t> out;
  const uint16_t len = static_cast<uint16_t>(cdb_tail.size() + 1);
  out.push_back(static_cast<uint8_t>(len >> 8));
  out.push_back(static_cast<uint8_t>(len));
  out.push_back(static_cast<uint8_t>(AhsType::kExtendedCdb));
  out.push_back(0);
  out.insert(out.end(), cdb_tail.begin(), cdb_tail.end());
  while (out.size() % 4) out.push_back(0);
  return out;
}

std::vector<uint8_t> BuildBidiReadLengthAhs(uint32_t length) {
  return {0x00, 0x05, static_cast<uint8_t>(AhsType::kBidiReadLength), 0x00,
          static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
}

// ---- Serialization ----

absl::Status SerializePduHeader(const Bhs& bhs_in, absl::Span<const uint8_t> ahs,
                                size_t data_length, bool header_digest,
                                std::vector<uint8_t>* out) {
  if (ahs.size() % 4 != 0 || ahs.size() > 255 * 4) {
    return absl::InvalidArgumentError("AHS must be 4-aligned and <= 1020 bytes");
  }
  if (data_length > kMaxDataSegmentLength) {
    return absl::InvalidArgumentError("data segment longer than 2^24-1");
  }
  Bhs bhs = bhs_in;
  bhs.bytes[4] = static_cast<uint8_t>(ahs.size() / 4);
  bhs.set_data_segment_length(static_cast<uint32_t>(data_length));
  const size_t start = out->size();
  out->insert(out->end(), bhs.bytes.begin(), bhs.bytes.end());
  out->insert(out->end(), ahs.begin(), ahs.end());
  if (header_digest) {
    PutDigest(Crc32c(absl::MakeConstSpan(out->data() + start, out->size() - start)),
              out);
  }
  return absl::OkStatus();
}

void SerializePduTrailer(absl::Span<const uint8_t> data, bool data_digest,
                         std::vector<uint8_t>* out) {
  if (data.empty()) return;
  static constexpr uint8_t kZeros[4] = {0, 0, 0, 0};
  const auto padding =
      absl::MakeConstSpan(kZeros, PaddingFor(static_cast<uint32_t>(data.size())));
  out->insert(out->end(), padding.begin(), padding.end());
  if (data_digest) {
    PutDigest(~Crc32cUpdate(Crc32cUpdate(kCrc32cInit, data), padding), out);
  }
}

absl::Status SerializePdu(const Pdu& pdu, bool header_digest, bool data_digest,
                          std::vector<uint8_t>* out) {
  if (absl::Status s = SerializePduHeader(pdu.bhs, pdu.ahs, pdu.data.size(),
                                          header_digest, out);
      !s.ok()) {
    return s;
  }
  out->insert(out->end(), pdu.data.begin(), pdu.data.end());
  SerializePduTrailer(pdu.data, data_digest, out);
  return absl::OkStatus();
}

std::vector<uint8_t> SerializePduOrDie(const Pdu& pdu, bool header_digest,
                                       bool data_digest) {
  std::vector<uint8_t> out;
  absl::Status s = SerializePdu(pdu, header_digest, data_digest, &out);
  if (!s.ok()) abort();  // programming error: our own PDUs are well-formed
  return out;
}

// ---- LUN ----

uint64_t DecodeLun(uint64_t field) {
  const uint8_t method = static_cast<uint8_t>(field >> 62);
  const uint16_t first = static_cast<uint16_t>(field >> 48);
  switch (method) {
    case 0:  // peripheral device addressing: bus 0 -> LUN in byte 1
      return (first >> 8) == 0 ? (first & 0xff) : (first & 0x3fff);
    case 1:  // flat space addressing
      return first & 0x3fff;
    default:
      return first;
  }
}

uint64_t EncodeLun(uint64_t lun) {
  if (lun < 256) return lun << 48;
  return ((0x4000 | (lun & 0x3fff)) & 0xffff) << 48;
}

// ---- Initiator opcodes ----

absl::Status Decode(const Bhs& b, NopOut* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kNopOut)) {
    return WrongOpcode(b, Opcode::kNopOut);
  }
  if (!b.final_bit()) return absl::InvalidArgumentError("NOP-Out without F bit");
  o->immediate = b.immediate();
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  return absl::OkStatus();
}

Bhs Encode(const NopOut& o) {
  Bhs b = Start(Opcode::kNopOut, o.immediate);
  b.bytes[1] = 0x80;
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  return b;
}

absl::Status Decode(const Bhs& b, ScsiCommand* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kScsiCommand)) {
    return WrongOpcode(b, Opcode::kScsiCommand);
  }
  o->immediate = b.immediate();
  o->final_bit = b.final_bit();
  o->read = (b.bytes[1] & 0x40) != 0;
  o->write = (b.bytes[1] & 0x20) != 0;
  o->attribute = b.bytes[1] & 0x07;
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->expected_data_transfer_length = b.Get32(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  std::memcpy(o->cdb.data(), b.bytes.data() + 32, 16);
  if (o->itt == kReservedTag) return absl::InvalidArgumentError("reserved ITT");
  return absl::OkStatus();
}

Bhs Encode(const ScsiCommand& o) {
  Bhs b = Start(Opcode::kScsiCommand, o.immediate);
  b.bytes[1] = (o.final_bit ? 0x80 : 0) | (o.read ? 0x40 : 0) |
               (o.write ? 0x20 : 0) | (o.attribute & 0x07);
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.expected_data_transfer_length);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  std::memcpy(b.bytes.data() + 32, o.cdb.data(), 16);
  return b;
}

absl::Status Decode(const Bhs& b, TaskMgmtRequest* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kTaskMgmtRequest)) {
    return WrongOpcode(b, Opcode::kTaskMgmtRequest);
  }
  if (!b.final_bit()) return absl::InvalidArgumentError("TMF without F bit");
  o->immediate = b.immediate();
  o->function = b.bytes[1] & 0x7f;
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->referenced_task_tag = b.Get32(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  o->ref_cmd_sn = b.Get32(32);
  o->exp_data_sn = b.Get32(36);
  return absl::OkStatus();
}

Bhs Encode(const TaskMgmtRequest& o) {
  Bhs b = Start(Opcode::kTaskMgmtRequest, o.immediate);
  b.bytes[1] = 0x80 | (o.function & 0x7f);
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.referenced_task_tag);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  b.Put32(32, o.ref_cmd_sn);
  b.Put32(36, o.exp_data_sn);
  return b;
}

absl::Status Decode(const Bhs& b, LoginRequest* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kLoginRequest)) {
    return WrongOpcode(b, Opcode::kLoginRequest);
  }
  o->transit = (b.bytes[1] & 0x80) != 0;
  o->continue_bit = (b.bytes[1] & 0x40) != 0;
  o->csg = (b.bytes[1] >> 2) & 0x3;
  o->nsg = b.bytes[1] & 0x3;
  o->version_max = b.bytes[2];
  o->version_min = b.bytes[3];
  std::memcpy(o->isid.data(), b.bytes.data() + 8, 6);
  o->tsih = b.Get16(14);
  o->itt = b.itt();
  o->cid = b.Get16(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  if (o->transit && o->continue_bit) {
    return absl::InvalidArgumentError("login request with both T and C");
  }
  if (o->csg == 2 || (o->transit && (o->nsg == 2 || o->nsg <= o->csg))) {
    return absl::InvalidArgumentError("invalid login stage transition");
  }
  return absl::OkStatus();
}

Bhs Encode(const LoginRequest& o) {
  Bhs b = Start(Opcode::kLoginRequest, /*immediate=*/true);
  b.bytes[1] = (o.transit ? 0x80 : 0) | (o.continue_bit ? 0x40 : 0) |
               ((o.csg & 3) << 2) | (o.nsg & 3);
  b.bytes[2] = o.version_max;
  b.bytes[3] = o.version_min;
  std::memcpy(b.bytes.data() + 8, o.isid.data(), 6);
  b.Put16(14, o.tsih);
  b.Put32(16, o.itt);
  b.Put16(20, o.cid);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  return b;
}

absl::Status Decode(const Bhs& b, TextRequest* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kTextRequest)) {
    return WrongOpcode(b, Opcode::kTextRequest);
  }
  o->immediate = b.immediate();
  o->final_bit = b.final_bit();
  o->continue_bit = (b.bytes[1] & 0x40) != 0;
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  if (o->final_bit && o->continue_bit) {
    return absl::InvalidArgumentError("text request with both F and C");
  }
  return absl::OkStatus();
}

Bhs Encode(const TextRequest& o) {
  Bhs b = Start(Opcode::kTextRequest, o.immediate);
  b.bytes[1] = (o.final_bit ? 0x80 : 0) | (o.continue_bit ? 0x40 : 0);
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  return b;
}

absl::Status Decode(const Bhs& b, DataOut* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kDataOut)) {
    return WrongOpcode(b, Opcode::kDataOut);
  }
  o->final_bit = b.final_bit();
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->exp_stat_sn = b.Get32(28);
  o->data_sn = b.Get32(36);
  o->buffer_offset = b.Get32(40);
  return absl::OkStatus();
}

Bhs Encode(const DataOut& o) {
  Bhs b = Start(Opcode::kDataOut);
  b.bytes[1] = o.final_bit ? 0x80 : 0;
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(28, o.exp_stat_sn);
  b.Put32(36, o.data_sn);
  b.Put32(40, o.buffer_offset);
  return b;
}

absl::Status Decode(const Bhs& b, LogoutRequest* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kLogoutRequest)) {
    return WrongOpcode(b, Opcode::kLogoutRequest);
  }
  if (!b.final_bit()) return absl::InvalidArgumentError("logout without F bit");
  o->immediate = b.immediate();
  o->reason = b.bytes[1] & 0x7f;
  o->itt = b.itt();
  o->cid = b.Get16(20);
  o->cmd_sn = b.Get32(24);
  o->exp_stat_sn = b.Get32(28);
  if (o->reason > 2) return absl::InvalidArgumentError("bad logout reason");
  return absl::OkStatus();
}

Bhs Encode(const LogoutRequest& o) {
  Bhs b = Start(Opcode::kLogoutRequest, o.immediate);
  b.bytes[1] = 0x80 | (o.reason & 0x7f);
  b.Put32(16, o.itt);
  b.Put16(20, o.cid);
  b.Put32(24, o.cmd_sn);
  b.Put32(28, o.exp_stat_sn);
  return b;
}

absl::Status Decode(const Bhs& b, SnackRequest* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kSnackRequest)) {
    return WrongOpcode(b, Opcode::kSnackRequest);
  }
  o->type = b.bytes[1] & 0x0f;
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->exp_stat_sn = b.Get32(28);
  o->beg_run = b.Get32(40);
  o->run_length = b.Get32(44);
  return absl::OkStatus();
}

Bhs Encode(const SnackRequest& o) {
  Bhs b = Start(Opcode::kSnackRequest);
  b.bytes[1] = 0x80 | (o.type & 0x0f);
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(28, o.exp_stat_sn);
  b.Put32(40, o.beg_run);
  b.Put32(44, o.run_length);
  return b;
}

// ---- Target opcodes ----

absl::Status Decode(const Bhs& b, NopIn* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kNopIn)) {
    return WrongOpcode(b, Opcode::kNopIn);
  }
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  return absl::OkStatus();
}

Bhs Encode(const NopIn& o) {
  Bhs b = Start(Opcode::kNopIn);
  b.bytes[1] = 0x80;
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  return b;
}

absl::Status Decode(const Bhs& b, ScsiResponse* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kScsiResponse)) {
    return WrongOpcode(b, Opcode::kScsiResponse);
  }
  const uint8_t f = b.bytes[1];
  o->bidi_overflow = f & 0x10;
  o->bidi_underflow = f & 0x08;
  o->overflow = f & 0x04;
  o->underflow = f & 0x02;
  o->response = b.bytes[2];
  o->status = b.bytes[3];
  o->itt = b.itt();
  o->snack_tag = b.Get32(20);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->exp_data_sn = b.Get32(36);
  o->bidi_read_residual_count = b.Get32(40);
  o->residual_count = b.Get32(44);
  if ((o->overflow && o->underflow) || (o->bidi_overflow && o->bidi_underflow)) {
    return absl::InvalidArgumentError("both overflow and underflow set");
  }
  return absl::OkStatus();
}

Bhs Encode(const ScsiResponse& o) {
  Bhs b = Start(Opcode::kScsiResponse);
  b.bytes[1] = 0x80 | (o.bidi_overflow ? 0x10 : 0) | (o.bidi_underflow ? 0x08 : 0) |
               (o.overflow ? 0x04 : 0) | (o.underflow ? 0x02 : 0);
  b.bytes[2] = o.response;
  b.bytes[3] = o.status;
  b.Put32(16, o.itt);
  b.Put32(20, o.snack_tag);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.Put32(36, o.exp_data_sn);
  b.Put32(40, o.bidi_read_residual_count);
  b.Put32(44, o.residual_count);
  return b;
}

absl::Status Decode(const Bhs& b, TaskMgmtResponse* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kTaskMgmtResponse)) {
    return WrongOpcode(b, Opcode::kTaskMgmtResponse);
  }
  o->response = b.bytes[2];
  o->itt = b.itt();
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  return absl::OkStatus();
}

Bhs Encode(const TaskMgmtResponse& o) {
  Bhs b = Start(Opcode::kTaskMgmtResponse);
  b.bytes[1] = 0x80;
  b.bytes[2] = o.response;
  b.Put32(16, o.itt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  return b;
}

absl::Status Decode(const Bhs& b, LoginResponse* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kLoginResponse)) {
    return WrongOpcode(b, Opcode::kLoginResponse);
  }
  o->transit = (b.bytes[1] & 0x80) != 0;
  o->continue_bit = (b.bytes[1] & 0x40) != 0;
  o->csg = (b.bytes[1] >> 2) & 0x3;
  o->nsg = b.bytes[1] & 0x3;
  o->version_max = b.bytes[2];
  o->version_active = b.bytes[3];
  std::memcpy(o->isid.data(), b.bytes.data() + 8, 6);
  o->tsih = b.Get16(14);
  o->itt = b.itt();
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->status_class = b.bytes[36];
  o->status_detail = b.bytes[37];
  return absl::OkStatus();
}

Bhs Encode(const LoginResponse& o) {
  Bhs b = Start(Opcode::kLoginResponse);
  b.bytes[1] = (o.transit ? 0x80 : 0) | (o.continue_bit ? 0x40 : 0) |
               ((o.csg & 3) << 2) | (o.nsg & 3);
  b.bytes[2] = o.version_max;
  b.bytes[3] = o.version_active;
  std::memcpy(b.bytes.data() + 8, o.isid.data(), 6);
  b.Put16(14, o.tsih);
  b.Put32(16, o.itt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.bytes[36] = o.status_class;
  b.bytes[37] = o.status_detail;
  return b;
}

absl::Status Decode(const Bhs& b, TextResponse* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kTextResponse)) {
    return WrongOpcode(b, Opcode::kTextResponse);
  }
  o->final_bit = b.final_bit();
  o->continue_bit = (b.bytes[1] & 0x40) != 0;
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  return absl::OkStatus();
}

Bhs Encode(const TextResponse& o) {
  Bhs b = Start(Opcode::kTextResponse);
  b.bytes[1] = (o.final_bit ? 0x80 : 0) | (o.continue_bit ? 0x40 : 0);
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  return b;
}

absl::Status Decode(const Bhs& b, DataIn* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kDataIn)) {
    return WrongOpcode(b, Opcode::kDataIn);
  }
  const uint8_t f = b.bytes[1];
  o->final_bit = f & 0x80;
  o->acknowledge = f & 0x40;
  o->overflow = f & 0x04;
  o->underflow = f & 0x02;
  o->status_present = f & 0x01;
  o->status = b.bytes[3];
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->data_sn = b.Get32(36);
  o->buffer_offset = b.Get32(40);
  o->residual_count = b.Get32(44);
  if (o->status_present && !o->final_bit) {
    return absl::InvalidArgumentError("Data-In with S but without F");
  }
  return absl::OkStatus();
}

Bhs Encode(const DataIn& o) {
  Bhs b = Start(Opcode::kDataIn);
  b.bytes[1] = (o.final_bit ? 0x80 : 0) | (o.acknowledge ? 0x40 : 0) |
               (o.overflow ? 0x04 : 0) | (o.underflow ? 0x02 : 0) |
               (o.status_present ? 0x01 : 0);
  b.bytes[3] = o.status_present ? o.status : 0;
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.status_present ? o.stat_sn : 0);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.Put32(36, o.data_sn);
  b.Put32(40, o.buffer_offset);
  b.Put32(44, o.residual_count);
  return b;
}

absl::Status Decode(const Bhs& b, LogoutResponse* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kLogoutResponse)) {
    return WrongOpcode(b, Opcode::kLogoutResponse);
  }
  o->response = b.bytes[2];
  o->itt = b.itt();
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->time2wait = b.Get16(40);
  o->time2retain = b.Get16(42);
  return absl::OkStatus();
}

Bhs Encode(const LogoutResponse& o) {
  Bhs b = Start(Opcode::kLogoutResponse);
  b.bytes[1] = 0x80;
  b.bytes[2] = o.response;
  b.Put32(16, o.itt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.Put16(40, o.time2wait);
  b.Put16(42, o.time2retain);
  return b;
}

absl::Status Decode(const Bhs& b, R2t* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kR2t)) {
    return WrongOpcode(b, Opcode::kR2t);
  }
  o->lun = b.Get64(8);
  o->itt = b.itt();
  o->ttt = b.Get32(20);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->r2t_sn = b.Get32(36);
  o->buffer_offset = b.Get32(40);
  o->desired_data_transfer_length = b.Get32(44);
  if (o->desired_data_transfer_length == 0) {
    return absl::InvalidArgumentError("R2T with zero length");
  }
  return absl::OkStatus();
}

Bhs Encode(const R2t& o) {
  Bhs b = Start(Opcode::kR2t);
  b.bytes[1] = 0x80;
  b.Put64(8, o.lun);
  b.Put32(16, o.itt);
  b.Put32(20, o.ttt);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.Put32(36, o.r2t_sn);
  b.Put32(40, o.buffer_offset);
  b.Put32(44, o.desired_data_transfer_length);
  return b;
}

absl::Status Decode(const Bhs& b, AsyncMessage* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kAsyncMessage)) {
    return WrongOpcode(b, Opcode::kAsyncMessage);
  }
  o->lun = b.Get64(8);
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->async_event = b.bytes[36];
  o->async_vcode = b.bytes[37];
  o->parameter1 = b.Get16(38);
  o->parameter2 = b.Get16(40);
  o->parameter3 = b.Get16(42);
  return absl::OkStatus();
}

Bhs Encode(const AsyncMessage& o) {
  Bhs b = Start(Opcode::kAsyncMessage);
  b.bytes[1] = 0x80;
  b.Put64(8, o.lun);
  b.Put32(16, kReservedTag);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.bytes[36] = o.async_event;
  b.bytes[37] = o.async_vcode;
  b.Put16(38, o.parameter1);
  b.Put16(40, o.parameter2);
  b.Put16(42, o.parameter3);
  return b;
}

absl::Status Decode(const Bhs& b, Reject* o) {
  if (b.opcode() != static_cast<uint8_t>(Opcode::kReject)) {
    return WrongOpcode(b, Opcode::kReject);
  }
  o->reason = b.bytes[2];
  o->stat_sn = b.Get32(24);
  o->exp_cmd_sn = b.Get32(28);
  o->max_cmd_sn = b.Get32(32);
  o->data_sn = b.Get32(36);
  return absl::OkStatus();
}

Bhs Encode(const Reject& o) {
  Bhs b = Start(Opcode::kReject);
  b.bytes[1] = 0x80;
  b.bytes[2] = o.reason;
  b.Put32(16, kReservedTag);
  b.Put32(24, o.stat_sn);
  b.Put32(28, o.exp_cmd_sn);
  b.Put32(32, o.max_cmd_sn);
  b.Put32(36, o.data_sn);
  return b;
}

// ---- PduReader ----

absl::Status PduReader::OnBhsComplete() {
  const Bhs& bhs = current_.bhs;
  const uint8_t op = bhs.opcode();
  if (limits_.from_initiator ? !IsInitiatorOpcode(op) : !IsTargetOpcode(op)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected opcode 0x", absl::Hex(op)));
  }
  const uint32_t dsl = bhs.data_segment_length();
  if (dsl > limits_.max_data_segment_length) {
    return absl::OutOfRangeError(absl::StrCat(
        "DataSegmentLength ", dsl, " exceeds the negotiated limit ",
        limits_.max_data_segment_length));
  }
  data_wire_length_ = dsl + PaddingFor(dsl);
  current_.ahs.clear();
  current_.ahs.resize(size_t{bhs.total_ahs_words()} * 4);  // <= 1020 bytes
  return absl::OkStatus();
}

absl::Status PduReader::OnHeaderComplete() {
  current_.data.clear();
  current_.data.resize(data_wire_length_);
  return absl::OkStatus();
}

absl::StatusOr<PduReader::Result> PduReader::Feed(absl::Span<const uint8_t> in) {
  Result result;
  size_t pos = 0;
  while (true) {
    // Transitions that need no input.
    if (filled_ == needed_) {
      switch (state_) {
        case State::kBhs: {
          if (pending_limits_) {
            limits_ = *pending_limits_;
            pending_limits_.reset();
          }
          absl::Status s = OnBhsComplete();
          if (!s.ok()) return s;
          state_ = State::kAhs;
          needed_ = current_.ahs.size();
          filled_ = 0;
          continue;
        }
        case State::kAhs:
          state_ = State::kHeaderDigest;
          needed_ = limits_.header_digest ? kDigestLength : 0;
          filled_ = 0;
          continue;
        case State::kHeaderDigest: {
          if (limits_.header_digest) {
            uint32_t crc = Crc32cUpdate(kCrc32cInit, current_.bhs.bytes);
            crc = ~Crc32cUpdate(crc, current_.ahs);
            if (crc != GetDigest(digest_.data())) {
              return absl::DataLossError("header digest mismatch");
            }
          }
          absl::Status s = OnHeaderComplete();
          if (!s.ok()) return s;
          state_ = State::kData;
          needed_ = data_wire_length_;
          filled_ = 0;
          continue;
        }
        case State::kData:
          state_ = State::kDataDigest;
          needed_ = (limits_.data_digest && data_wire_length_ > 0) ? kDigestLength : 0;
          filled_ = 0;
          continue;
        case State::kDataDigest: {
          current_.data_digest_error =
              needed_ > 0 && Crc32c(current_.data) != GetDigest(digest_.data());
          current_.data.resize(current_.bhs.data_segment_length());
          result.pdu = std::move(current_);
          current_ = Pdu();
          state_ = State::kBhs;
          needed_ = kBhsLength;
          filled_ = 0;
          result.consumed = pos;
          return result;
        }
      }
    }
    if (pos == in.size()) break;
    const size_t n = std::min(needed_ - filled_, in.size() - pos);
    uint8_t* dst = nullptr;
    switch (state_) {
      case State::kBhs: dst = current_.bhs.bytes.data(); break;
      case State::kAhs: dst = current_.ahs.data(); break;
      case State::kData: dst = current_.data.data(); break;
      case State::kHeaderDigest:
      case State::kDataDigest: dst = digest_.data(); break;
    }
    std::memcpy(dst + filled_, in.data() + pos, n);
    filled_ += n;
    pos += n;
  }
  result.consumed = pos;
  return result;
}

}  // namespace iscsi
