#include "appliance/daemon/scsi_wiring.h"

#include "glog/logging.h"

namespace appliance::daemon {

void EngineLunBinder::LunOnline(const config::LunDefinition& lun,
                                std::shared_ptr<blockstore::BlockStore> store) {
  scsi::LogicalUnitOptions options;
  options.identity = store->identity();
  options.read_only = lun.read_only();
  options.physical_block_bytes = lun.physical_block_size();  // 0: block size
  absl::Status s = engine_.AddLogicalUnit(lun.id(), std::move(store), options);
  if (!s.ok()) LOG(ERROR) << "LUN " << lun.id() << " not served: " << s;
}

void EngineLunBinder::LunOffline(uint64_t id) {
  absl::Status s = engine_.RemoveLogicalUnit(id);
  if (!s.ok()) LOG(WARNING) << "removing LUN " << id << ": " << s;
}

std::vector<scsi::TargetPortGroupState> LifPortStateProvider::TargetPortGroups(
    uint64_t lun) const {
  std::optional<std::string> owner = ownership_.OwnerOf(lun);
  const bool link_up = link_up_();
  const std::vector<config::Lif> lifs = lifs_.Lifs();
  std::vector<scsi::TargetPortGroupState> groups;
  groups.reserve(lifs.size());
  for (const config::Lif& lif : lifs) {
    scsi::TargetPortGroupState group;
    group.group_id = static_cast<uint16_t>(lif.target_portal_group());
    const bool on_owner = !owner.has_value() || lif.current_node() == *owner;
    group.state = on_owner  ? scsi::AluaState::kActiveOptimized
                  : link_up ? scsi::AluaState::kActiveNonOptimized
                            : scsi::AluaState::kUnavailable;
    group.preferred = on_owner;
    group.relative_target_port_ids.push_back(
        static_cast<uint16_t>(lif.relative_target_port_id()));
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace appliance::daemon
