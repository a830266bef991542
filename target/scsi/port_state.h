// PortStateProvider: where the engine learns the ALUA (asymmetric logical unit
// access, SPC-4 5.16) state of each target port group for a logical unit.
//
// The engine never stores ALUA state: it asks the provider on every REPORT
// TARGET PORT GROUPS and when it checks whether a command may run through the
// port it arrived on. In the appliance, the HA layer backs this from LUN
// ownership and LIF placement (owner -> active/optimized, partner ->
// active/non-optimized, interconnect down -> unavailable, takeover/giveback ->
// transitioning). When a state changes, whoever changed it calls
// Engine::NotifyAsymmetricAccessStateChanged() so initiators get the unit
// attention. Implementations must be thread-safe and must not block.
#ifndef TARGET_SCSI_PORT_STATE_H_
#define TARGET_SCSI_PORT_STATE_H_

#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace scsi {

// SPC-4 Table 170: ASYMMETRIC ACCESS STATE.
enum class AluaState : uint8_t {
  kActiveOptimized = 0x0,
  kActiveNonOptimized = 0x1,
  kStandby = 0x2,
  kUnavailable = 0x3,
  kOffline = 0xE,
  kTransitioning = 0xF,
};

struct TargetPortGroupState {
  uint16_t group_id = 1;
  AluaState state = AluaState::kActiveOptimized;
  // PREF bit: this group is the preferred path.
  bool preferred = false;
  // STATUS CODE (0: no status; 1: changed by SET TPGS; 2: implicit change).
  uint8_t status_code = 0;
  // Relative target port identifiers of the ports (LIFs) in the group.
  std::vector<uint16_t> relative_target_port_ids;
};

class PortStateProvider {
 public:
  virtual ~PortStateProvider() = default;

  // Every target port group of the target, with its state for logical unit lun.
  // Every port must answer identically, so this must not depend on which port
  // asks.
  virtual std::vector<TargetPortGroupState> TargetPortGroups(uint64_t lun) const = 0;

  // IMPLICIT TRANSITION TIME (seconds) reported in the extended RTPG header.
  virtual uint8_t implicit_transition_time_seconds() const { return 10; }
};

// A provider holding a fixed list of groups whose states tests or a simple
// daemon set by hand; the same states apply to every LU.
class StaticPortStateProvider : public PortStateProvider {
 public:
  // Default: one group (id 1) holding relative target port 1, active/optimized.
  StaticPortStateProvider();
  explicit StaticPortStateProvider(std::vector<TargetPortGroupState> groups);

  std::vector<TargetPortGroupState> TargetPortGroups(uint64_t lun) const override;

  // Changes one group's state (status code becomes 2, implicit change).
  // Returns false when the group does not exist.
  bool SetState(uint16_t group_id, AluaState state);

 private:
  mutable absl::Mutex mu_;
  std::vector<TargetPortGroupState> groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace scsi

#endif  // TARGET_SCSI_PORT_STATE_H_
