// HaBackend: the high-availability calls of the REST endpoint (a paired
// node's HA controller implements it). Status codes map to HTTP as in
// backend.h; kFailedPrecondition (409) when the state does not allow the
// action (e.g. takeover while the partner already is taken over, giveback
// while the partner is unreachable).
#ifndef APPLIANCE_MGMT_HA_BACKEND_H_
#define APPLIANCE_MGMT_HA_BACKEND_H_

#include "absl/status/statusor.h"
#include "appliance/mgmt/api.pb.h"

namespace appliance::mgmt {

class HaBackend {
 public:
  virtual ~HaBackend() = default;

  virtual HaStatus GetHaStatus() = 0;
  // Planned takeover of the partner's LUNs and LIFs (maintenance). Returns
  // when done.
  virtual absl::StatusOr<HaStatus> Takeover() = 0;
  // Gives the partner its LUNs and LIFs back. Returns when done.
  virtual absl::StatusOr<HaStatus> Giveback() = 0;
  virtual absl::StatusOr<HaStatus> ClearOffline(
      const HaClearOfflineRequest& request) = 0;
  // Fault injection: stops or resumes this node's mailbox writes.
  virtual absl::StatusOr<HaStatus> SetMailboxFault(bool stopped) = 0;
};

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_HA_BACKEND_H_
