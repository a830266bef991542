// Glue between the node's LUN inventory and the SCSI engine: keeps the engine's
// logical units in step with the LUNs this node owns, and derives each target
// port group's ALUA state from where its LIF is hosted and who owns the LUN
// (ARCHITECTURE.md §1: LIF on the owner -> active/optimized, on the partner ->
// active/non-optimized).
#ifndef APPLIANCE_DAEMON_SCSI_WIRING_H_
#define APPLIANCE_DAEMON_SCSI_WIRING_H_

#include <functional>
#include <vector>

#include "appliance/config/config.pb.h"
#include "appliance/daemon/lif_manager.h"
#include "appliance/daemon/node.h"
#include "target/scsi/engine.h"
#include "target/scsi/lun_directory.h"
#include "target/scsi/port_state.h"
#include "target/virtual_target/module.h"

namespace appliance::daemon {

// Adds each LUN that comes online here to the engine, removes it when it goes.
class EngineLunBinder : public LunListener {
 public:
  explicit EngineLunBinder(scsi::Engine& engine) : engine_(engine) {}
  void LunOnline(const config::LunDefinition& lun,
                 std::shared_ptr<blockstore::BlockStore> store) override;
  void LunOffline(uint64_t id) override;

 private:
  scsi::Engine& engine_;
};

// One target port group per LIF; its state for a LUN follows from the LIF's
// current node (read from lifs at every call: LIFs move) and the LUN's owner:
// on the owner active/optimized; on the other node active/non-optimized while
// the interconnect is up, unavailable while it is down (that node cannot
// proxy).
class LifPortStateProvider : public scsi::PortStateProvider {
 public:
  LifPortStateProvider(const LifView& lifs,
                       const virtual_target::OwnershipView& ownership,
                       std::function<bool()> link_up)
      : lifs_(lifs),
        ownership_(ownership),
        link_up_(std::move(link_up)) {}
  std::vector<scsi::TargetPortGroupState> TargetPortGroups(
      uint64_t lun) const override;

 private:
  const LifView& lifs_;
  const virtual_target::OwnershipView& ownership_;
  const std::function<bool()> link_up_;
};

// REPORT LUNS lists every LUN of the pair, whichever node owns it.
class NodeLunDirectory : public scsi::LunDirectory {
 public:
  explicit NodeLunDirectory(const Node& node) : node_(node) {}
  std::vector<uint64_t> ReportedLuns() const override {
    return node_.KnownLuns();
  }

 private:
  const Node& node_;
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_SCSI_WIRING_H_
