// ManagementBackend: what the REST endpoint (and so appliancectl) can ask of a node.
//
// The REST server maps HTTP requests onto these calls and their absl::Status codes
// onto HTTP statuses:
//   kInvalidArgument -> 400, kUnauthenticated -> 401, kNotFound -> 404,
//   kAlreadyExists / kFailedPrecondition -> 409, kUnavailable -> 503, else 500.
// The daemon implements it (appliance/daemon); tests use a fake.
#ifndef APPLIANCE_MGMT_BACKEND_H_
#define APPLIANCE_MGMT_BACKEND_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "appliance/mgmt/api.pb.h"

namespace appliance::mgmt {

class ManagementBackend {
 public:
  virtual ~ManagementBackend() = default;

  virtual absl::StatusOr<NodeInfo> GetNode() = 0;
  virtual absl::StatusOr<LunList> ListLuns() = 0;
  virtual absl::StatusOr<config::LunDefinition> GetLun(uint64_t id) = 0;
  // Validates request fully before changing anything: a rejected request leaves
  // no trace (no record, no backing file).
  virtual absl::StatusOr<config::LunDefinition> CreateLun(
      const CreateLunRequest& request) = 0;
  // Removes the LUN's record and its backing file.
  virtual absl::Status DeleteLun(uint64_t id) = 0;

  // Every LIF of the pair with its current node and port.
  virtual absl::StatusOr<LifList> ListLifs() = 0;
  // Moves LIF name to node (this node or its partner); returns its new
  // placement. kNotFound: no such LIF; kInvalidArgument: node is neither this
  // node nor the partner; kFailedPrecondition: already there, the partner is
  // unreachable, or the node has no physical port up.
  virtual absl::StatusOr<config::Lif> MigrateLif(const std::string& name,
                                                 const std::string& node) = 0;
  // Fault injection: takes this node's physical port down or up. A port going
  // down moves the LIFs on it to the partner when it is reachable. kNotFound:
  // no such port on this node.
  virtual absl::StatusOr<PortStatus> SetPortFault(const std::string& port,
                                                  bool down) = 0;
};

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_BACKEND_H_
