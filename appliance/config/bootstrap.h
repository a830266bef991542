// Bootstrap configuration: the textproto file a node reads at start.
//
// It names the node, its partner, its physical ports and LIFs, the interconnect
// and management addresses and the shared-storage directory. It only seeds the
// configuration database (config_db.h): after the first start, LUNs live there.
#ifndef APPLIANCE_CONFIG_BOOTSTRAP_H_
#define APPLIANCE_CONFIG_BOOTSTRAP_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "appliance/config/config.pb.h"

namespace appliance::config {

// Parses text-format NodeBootstrap. Errors name the line and column.
absl::StatusOr<NodeBootstrap> ParseBootstrap(const std::string& text);

// Reads and parses the file at path, then validates it.
absl::StatusOr<NodeBootstrap> LoadBootstrapFile(const std::string& path);

// Checks what a node needs to start: names, addresses of the form host:port,
// unique LIF names / relative target port ids / portal groups, LIF home nodes
// that are this node or its partner, valid seed LUNs. Defaults are filled in
// (LIF port 3260 when absent, current_node = home_node, seed LUN block size 512).
absl::Status ValidateAndFillBootstrap(NodeBootstrap& bootstrap);

inline constexpr uint64_t kMaxLunId = 16383;
inline constexpr size_t kMaxLunNameLength = 64;
// Largest physical block a LUN may report, in logical blocks.
inline constexpr uint32_t kMaxLogicalBlocksPerPhysical = 16;

// Checks a LUN definition's user-settable fields: id <= kMaxLunId, name of
// [A-Za-z0-9._-]{1,64}, block size 512 or 4096, size a positive multiple of it,
// physical block size 0 or the block size times a power of two up to
// kMaxLogicalBlocksPerPhysical.
// The one place these rules live (the REST API validates through it too).
absl::Status ValidateLunDefinition(const LunDefinition& lun);

// Splits "host:port" (IPv6 as "[addr]:port"). Port must be 0..65535.
absl::Status SplitHostPort(const std::string& address, std::string& host,
                           int& port);

}  // namespace appliance::config

#endif  // APPLIANCE_CONFIG_BOOTSTRAP_H_
