// Big-endian field access for CDBs and parameter data (SCSI is big-endian).
#ifndef TARGET_SCSI_BYTES_H_
#define TARGET_SCSI_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace scsi {

inline uint16_t GetBe16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline uint32_t GetBe24(const uint8_t* p) {
  return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
}
inline uint32_t GetBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | p[3];
}
inline uint64_t GetBe64(const uint8_t* p) {
  return (uint64_t{GetBe32(p)} << 32) | GetBe32(p + 4);
}
inline void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void PutBe24(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 16);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void PutBe64(uint8_t* p, uint64_t v) {
  PutBe32(p, static_cast<uint32_t>(v >> 32));
  PutBe32(p + 4, static_cast<uint32_t>(v));
}

// Hex digits to bytes ("600a09" -> {0x60, 0x0a, 0x09}); empty on a bad digit.
inline std::vector<uint8_t> HexToBytes(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<uint8_t>((hi << 4) | lo));
  }
  return out;
}

// Appends to a growing parameter-data buffer.
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}
  void U8(uint8_t v) { out_.push_back(v); }
  void U16(uint16_t v) { out_.resize(out_.size() + 2); PutBe16(&out_[out_.size() - 2], v); }
  void U32(uint32_t v) { out_.resize(out_.size() + 4); PutBe32(&out_[out_.size() - 4], v); }
  void U64(uint64_t v) { out_.resize(out_.size() + 8); PutBe64(&out_[out_.size() - 8], v); }
  void Zeros(size_t n) { out_.resize(out_.size() + n, 0); }
  // Space-padded (or truncated) ASCII field of exactly n bytes.
  void Padded(std::string_view s, size_t n) {
    for (size_t i = 0; i < n; ++i) out_.push_back(i < s.size() ? s[i] : ' ');
  }
  void Bytes(const uint8_t* p, size_t n) { out_.insert(out_.end(), p, p + n); }
  size_t size() const { return out_.size(); }

 private:
  std::vector<uint8_t>& out_;
};

}  // namespace scsi

#endif  // TARGET_SCSI_BYTES_H_
