#include "target/iscsi/text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace iscsi {
namespace {

bool ValidKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         c == '+' || c == '@' || c == '_';
}

}  // namespace

absl::StatusOr<KeyValueList> ParseTextKeys(absl::Span<const uint8_t> data) {
  KeyValueList out;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = pos;
    while (end < data.size() && data[end] != 0) ++end;
    if (end == data.size()) {
      return absl::InvalidArgumentError("text key without terminating NUL");
    }
    if (end == pos) {  // padding / empty string
      ++pos;
      continue;
    }
    std::string_view pair(reinterpret_cast<const char*>(data.data() + pos), end - pos);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError("text key without '='");
    }
    std::string_view key = pair.substr(0, eq);
    std::string_view value = pair.substr(eq + 1);
    if (key.empty() || key.size() > kMaxKeyNameLength) {
      return absl::InvalidArgumentError("bad text key name length");
    }
    for (char c : key) {
      if (!ValidKeyChar(c)) return absl::InvalidArgumentError("bad text key name");
    }
    if (value.size() > kMaxValueLength) {
      return absl::InvalidArgumentError("text value too long");
    }
    out.push_back({std::string(key), std::string(value)});
    pos = end + 1;
  }
  return out;
}

void AppendTextKey(std::string_view key, std::string_view value,
                   std::vector<uint8_t>* out) {
  out->insert(out->end(), key.begin(), key.end());
  out->push_back('=');
  out->insert(out->end(), value.begin(), value.end());
  out->push_back(0);
}

std::vector<uint8_t> BuildTextKeys(const KeyValueList& pairs) {
  std::vector<uint8_t> out;
  for (const auto& kv : pairs) AppendTextKey(kv.key, kv.value, &out);
  return out;
}

std::optional<std::string> FindKey(const KeyValueList& pairs, std::string_view key) {
  for (const auto& kv : pairs) {
    if (kv.key == key) return kv.value;
  }
  return std::nullopt;
}

std::vector<std::string> SplitListValue(std::string_view value) {
  return absl::StrSplit(absl::string_view(value.data(), value.size()), ',');
}

std::optional<uint64_t> ParseNumber(std::string_view value) {
  if (value.empty() || value.size() > 20) return std::nullopt;
  uint64_t v = 0;
  if (value.size() > 2 && value[0] == '0' && (value[1] == 'x' || value[1] == 'X')) {
    if (!absl::SimpleHexAtoi(absl::string_view(value.data() + 2, value.size() - 2), &v)) return std::nullopt;
    return v;
  }
  for (char c : value) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  if (!absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &v)) return std::nullopt;
  return v;
}

}  // namespace iscsi
