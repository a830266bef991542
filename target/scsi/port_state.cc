#include "target/scsi/port_state.h"

#include <utility>

namespace scsi {

StaticPortStateProvider::StaticPortStateProvider()
    : StaticPortStateProvider({TargetPortGroupState{
          1, AluaState::kActiveOptimized, false, 0, {1}}}) {}

StaticPortStateProvider::StaticPortStateProvider(
    std::vector<TargetPortGroupState> groups)
    : groups_(std::move(groups)) {}

std::vector<TargetPortGroupState> StaticPortStateProvider::TargetPortGroups(
    uint64_t) const {
  absl::MutexLock lock(&mu_);
  return groups_;
}

bool StaticPortStateProvider::SetState(uint16_t group_id, AluaState state) {
  absl::MutexLock lock(&mu_);
  for (auto& g : groups_) {
    if (g.group_id == group_id) {
      g.state = state;
      g.status_code = 2;
      return true;
    }
  }
  return false;
}

}  // namespace scsi
