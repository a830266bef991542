// iSCSI text key=value data (RFC 7143 §6.1): the data segment of Login and Text
// PDUs is a sequence of "key=value\0" pairs. Pure functions over bytes.
#ifndef TARGET_ISCSI_TEXT_H_
#define TARGET_ISCSI_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace iscsi {

struct KeyValue {
  std::string key;
  std::string value;
  bool operator==(const KeyValue& o) const { return key == o.key && value == o.value; }
};
using KeyValueList = std::vector<KeyValue>;

// Limits from RFC 7143 §6.1: key names up to 63 bytes; values up to 255 bytes
// except binary-valued keys (CHAP challenges/responses), which we bound at 8192.
inline constexpr size_t kMaxKeyNameLength = 63;
inline constexpr size_t kMaxValueLength = 8192;

// Parses the pairs in order. Empty strings between NULs (padding) are skipped.
// Errors: a pair without '=', a bad key name, an over-long key or value, or a
// final pair without its terminating NUL. Duplicate keys are returned as-is; the
// negotiation layer decides (re-negotiation is a protocol error).
absl::StatusOr<KeyValueList> ParseTextKeys(absl::Span<const uint8_t> data);

// Serializes "key=value\0" for every pair.
std::vector<uint8_t> BuildTextKeys(const KeyValueList& pairs);
void AppendTextKey(std::string_view key, std::string_view value,
                   std::vector<uint8_t>* out);

// First value for key, if present.
std::optional<std::string> FindKey(const KeyValueList& pairs, std::string_view key);

// Splits a comma-separated list value ("CRC32C,None").
std::vector<std::string> SplitListValue(std::string_view value);

// Numerical values: decimal, or hex with 0x (RFC 7143 §6.1 "numerical value").
std::optional<uint64_t> ParseNumber(std::string_view value);

}  // namespace iscsi

#endif  // TARGET_ISCSI_TEXT_H_
