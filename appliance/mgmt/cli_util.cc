#include "appliance/mgmt/cli_util.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace appliance::mgmt {
namespace {

constexpr struct {
  char suffix;
  int shift;
} kUnits[] = {{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}, {'P', 50}};

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  absl::string_view digits = absl::StripAsciiWhitespace(text);
  const auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid size \"", text, "\": use bytes or a number with K, M, G or T"));
  };
  int shift = 0;
  std::string upper = absl::AsciiStrToUpper(digits);
  bool binary_suffix = false;  // "iB": needs a unit letter before it.
  if (absl::EndsWith(upper, "IB")) {
    upper.resize(upper.size() - 2);
    binary_suffix = true;
  } else if (absl::EndsWith(upper, "B")) {
    upper.pop_back();
  }
  if (!upper.empty() && !absl::ascii_isdigit(upper.back())) {
    bool known = false;
    for (const auto& unit : kUnits) {
      if (upper.back() == unit.suffix) {
        shift = unit.shift;
        known = true;
      }
    }
    if (!known) return invalid();
    upper.pop_back();
  } else if (binary_suffix) {
    return invalid();
  }
  if (upper.empty()) return invalid();
  for (char c : upper) {
    if (!absl::ascii_isdigit(c)) return invalid();
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(upper, &value)) return invalid();
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size \"", text, "\" is too large"));
  }
  return value << shift;
}

std::string FormatSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  for (auto it = std::rbegin(kUnits); it != std::rend(kUnits); ++it) {
    const uint64_t unit = uint64_t{1} << it->shift;
    if (bytes % unit == 0) return absl::StrCat(bytes / unit, std::string(1, it->suffix));
  }
  return absl::StrCat(bytes);
}

absl::StatusOr<ServerUrl> ParseServerUrl(absl::string_view url) {
  const auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --url \"", url, "\": ", why));
  };
  absl::string_view rest = url;
  if (!absl::StartsWithIgnoreCase(rest, "https://")) {
    return invalid("expected https://host:port");
  }
  rest.remove_prefix(8);
  if (absl::EndsWith(rest, "/")) rest.remove_suffix(1);
  if (absl::StrContains(rest, '/')) return invalid("no path allowed");
  ServerUrl result;
  absl::string_view port_text;
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return invalid("unterminated [");
    result.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return invalid("garbage after ]");
      port_text = rest.substr(1);
      if (port_text.empty()) return invalid("empty port");
    }
  } else {
    const size_t colon = rest.find(':');
    result.host = std::string(rest.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return invalid("empty port");
    }
  }
  if (result.host.empty()) return invalid("no host");
  if (!port_text.empty()) {
    int port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return invalid("bad port");
    }
    result.port = port;
  }
  return result;
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  const auto append_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      line += cell;
      if (i + 1 < widths.size()) line += std::string(widths[i] - cell.size() + 2, ' ');
    }
    out += line + "\n";
  };
  append_row(header);
  for (const auto& row : rows) append_row(row);
  return out;
}

}  // namespace appliance::mgmt
