// Parsing and formatting helpers of appliancectl, kept apart from main() so
// they are unit-tested.
#ifndef APPLIANCE_MGMT_CLI_UTIL_H_
#define APPLIANCE_MGMT_CLI_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace appliance::mgmt {

// A size such as "64M", "1G", "512K", "2T" (binary multiples, case-insensitive,
// optional trailing "B" or "iB": "64MiB", "1gb") or plain bytes ("1048576").
// "0" parses (the server rejects it). InvalidArgument on anything else or on
// overflow.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// The shortest exact form of `bytes` in the units ParseSize accepts ("64M",
// "1G", "1536K", "1000").
std::string FormatSize(uint64_t bytes);

struct ServerUrl {
  std::string host;  // Without brackets for IPv6 literals.
  int port = 443;
};

// "https://host[:port][/]"; IPv6 literals in brackets. Only https is accepted:
// the endpoint does not speak plain HTTP.
absl::StatusOr<ServerUrl> ParseServerUrl(absl::string_view url);

// Left-aligned columns separated by two spaces, header row first.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_CLI_UTIL_H_
