#include "target/scsi/sense.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "target/scsi/bytes.h"

namespace scsi {
namespace {

constexpr uint8_t kFixedCurrent = 0x70;
constexpr uint8_t kDescriptorCurrent = 0x72;
constexpr uint8_t kInformationDescriptor = 0x00;
constexpr uint8_t kSenseKeySpecificDescriptor = 0x02;

// The three sense-key-specific bytes of a field pointer.
void EncodeFieldPointer(const FieldPointer& fp, uint8_t* sks) {
  sks[0] = 0x80;  // SKSV
  if (fp.in_cdb) sks[0] |= 0x40;
  if (fp.bit.has_value()) sks[0] |= 0x08 | (*fp.bit & 0x07);
  PutBe16(sks + 1, fp.byte);
}

std::optional<FieldPointer> DecodeFieldPointer(SenseKey key, const uint8_t* sks) {
  if (!(sks[0] & 0x80) || key != SenseKey::kIllegalRequest) return std::nullopt;
  FieldPointer fp;
  fp.in_cdb = (sks[0] & 0x40) != 0;
  if (sks[0] & 0x08) fp.bit = sks[0] & 0x07;
  fp.byte = GetBe16(sks + 1);
  return fp;
}

}  // namespace

std::string SenseData::ToString() const {
  std::string s = absl::StrFormat("key=0x%x asc=0x%02x ascq=0x%02x",
                                  static_cast<int>(key), code.asc, code.ascq);
  if (information) absl::StrAppendFormat(&s, " info=%u", *information);
  if (field_pointer) {
    absl::StrAppendFormat(&s, " field=%s byte %d", field_pointer->in_cdb ? "cdb" : "data",
                          field_pointer->byte);
    if (field_pointer->bit) absl::StrAppendFormat(&s, " bit %d", *field_pointer->bit);
  }
  return s;
}

std::vector<uint8_t> BuildSense(const SenseData& sense, SenseFormat format) {
  std::vector<uint8_t> out;
  if (format == SenseFormat::kFixed) {
    out.assign(18, 0);
    out[0] = kFixedCurrent;
    out[2] = static_cast<uint8_t>(sense.key) & 0x0F;
    if (sense.information.has_value()) {
      if (*sense.information <= 0xFFFFFFFFull) out[0] |= 0x80;  // VALID
      PutBe32(&out[3], static_cast<uint32_t>(*sense.information));
    }
    out[7] = 10;  // additional sense length
    out[12] = sense.code.asc;
    out[13] = sense.code.ascq;
    if (sense.field_pointer.has_value()) {
      EncodeFieldPointer(*sense.field_pointer, &out[15]);
    }
    return out;
  }
  out.assign(8, 0);
  out[0] = kDescriptorCurrent;
  out[1] = static_cast<uint8_t>(sense.key) & 0x0F;
  out[2] = sense.code.asc;
  out[3] = sense.code.ascq;
  if (sense.information.has_value()) {
    uint8_t d[12] = {kInformationDescriptor, 0x0A, 0x80, 0};
    PutBe64(d + 4, *sense.information);
    out.insert(out.end(), d, d + sizeof(d));
  }
  if (sense.field_pointer.has_value()) {
    uint8_t d[8] = {kSenseKeySpecificDescriptor, 0x06, 0, 0};
    EncodeFieldPointer(*sense.field_pointer, d + 4);
    out.insert(out.end(), d, d + sizeof(d));
  }
  out[7] = static_cast<uint8_t>(out.size() - 8);
  return out;
}

absl::StatusOr<SenseData> ParseSense(absl::Span<const uint8_t> b) {
  if (b.empty()) return absl::InvalidArgumentError("empty sense");
  const uint8_t response_code = b[0] & 0x7F;
  SenseData sense;
  if (response_code == 0x70 || response_code == 0x71) {
    if (b.size() < 14) return absl::InvalidArgumentError("short fixed sense");
    sense.key = static_cast<SenseKey>(b[2] & 0x0F);
    if (b[0] & 0x80) sense.information = GetBe32(&b[3]);
    sense.code = Asc{b[12], b[13]};
    if (b.size() >= 18) sense.field_pointer = DecodeFieldPointer(sense.key, &b[15]);
    return sense;
  }
  if (response_code == 0x72 || response_code == 0x73) {
    if (b.size() < 8) return absl::InvalidArgumentError("short descriptor sense");
    sense.key = static_cast<SenseKey>(b[1] & 0x0F);
    sense.code = Asc{b[2], b[3]};
    size_t end = std::min<size_t>(b.size(), 8u + b[7]);
    size_t pos = 8;
    while (pos + 2 <= end) {
      const uint8_t type = b[pos];
      const size_t len = b[pos + 1];
      if (pos + 2 + len > end) break;
      if (type == kInformationDescriptor && len >= 0x0A && (b[pos + 2] & 0x80)) {
        sense.information = GetBe64(&b[pos + 4]);
      } else if (type == kSenseKeySpecificDescriptor && len >= 6) {
        sense.field_pointer = DecodeFieldPointer(sense.key, &b[pos + 4]);
      }
      pos += 2 + len;
    }
    return sense;
  }
  return absl::InvalidArgumentError("unknown sense response code");
}

SenseData InvalidFieldInCdb(uint16_t byte, std::optional<uint8_t> bit) {
  SenseData s;
  s.key = SenseKey::kIllegalRequest;
  s.code = asc::kInvalidFieldInCdb;
  s.field_pointer = FieldPointer{true, byte, bit};
  return s;
}

SenseData InvalidFieldInParameterList(uint16_t byte, std::optional<uint8_t> bit) {
  SenseData s;
  s.key = SenseKey::kIllegalRequest;
  s.code = asc::kInvalidFieldInParameterList;
  s.field_pointer = FieldPointer{false, byte, bit};
  return s;
}

SenseData IllegalRequest(Asc code) {
  SenseData s;
  s.key = SenseKey::kIllegalRequest;
  s.code = code;
  return s;
}

SenseData LbaOutOfRange() { return IllegalRequest(asc::kLogicalBlockAddressOutOfRange); }

SenseData UnitAttention(Asc code) {
  SenseData s;
  s.key = SenseKey::kUnitAttention;
  s.code = code;
  return s;
}

}  // namespace scsi
