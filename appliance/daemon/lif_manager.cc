#include "appliance/daemon/lif_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace appliance::daemon {

absl::StatusOr<std::unique_ptr<LifManager>> LifManager::Create(
    Options options, std::shared_ptr<config::ConfigDb> db,
    config::ConfigReplicator* replicator) {
  std::unique_ptr<LifManager> manager(
      new LifManager(std::move(options), std::move(db), replicator));
  if (absl::Status s = manager->Load(); !s.ok()) return s;
  return manager;
}

LifManager::LifManager(Options options, std::shared_ptr<config::ConfigDb> db,
                       config::ConfigReplicator* replicator)
    : options_(std::move(options)), db_(std::move(db)), replicator_(replicator) {}

absl::Status LifManager::Load() {
  absl::StatusOr<std::vector<config::LifPlacement>> stored =
      db_->ListLifPlacements();
  if (!stored.ok()) return stored.status();
  absl::MutexLock lock(&mu_);
  for (const config::PhysicalPort& port : options_.ports) {
    port_up_[port.name()] = true;
  }
  for (const config::Lif& lif : options_.lifs) {
    Entry& entry = lifs_[lif.name()];
    entry.lif = lif;
    if (entry.lif.current_node().empty()) {
      entry.lif.set_current_node(lif.home_node());
    }
    if (entry.lif.current_node() == lif.home_node()) {
      entry.lif.set_current_port(lif.home_port());
    }
  }
  for (const config::LifPlacement& p : *stored) {
    auto it = lifs_.find(p.lif_name());
    if (it == lifs_.end()) {
      LOG(WARNING) << "placement of unknown LIF '" << p.lif_name()
                   << "' ignored";
      continue;
    }
    it->second.lif.set_current_node(p.current_node());
    it->second.lif.set_current_port(p.current_port());
  }
  return absl::OkStatus();
}

void LifManager::SetPartnerReachable(std::function<bool()> reachable) {
  absl::MutexLock lock(&mu_);
  partner_reachable_ = std::move(reachable);
}

void LifManager::AddListener(LifPlacementListener* listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(listener);
}

void LifManager::RemoveListener(LifPlacementListener* listener) {
  // move_mu_ is held around every Tell(): none is running once we have it.
  absl::MutexLock move(&move_mu_);
  absl::MutexLock lock(&mu_);
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), listener),
                   listeners_.end());
}

bool LifManager::PartnerReachable() const {
  std::function<bool()> reachable;
  {
    absl::ReaderMutexLock lock(&mu_);
    reachable = partner_reachable_;
  }
  return reachable && reachable();
}

std::vector<config::Lif> LifManager::Lifs() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<config::Lif> lifs;
  lifs.reserve(lifs_.size());
  for (const auto& [name, entry] : lifs_) lifs.push_back(entry.lif);
  return lifs;
}

std::string LifManager::PickPort(const config::Lif& lif) const {
  auto up = [this](const std::string& port) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = port_up_.find(port);
    return it != port_up_.end() && it->second;
  };
  if (lif.home_node() == options_.node_name && up(lif.home_port())) {
    return lif.home_port();
  }
  for (const config::PhysicalPort& port : options_.ports) {
    if (up(port.name())) return port.name();
  }
  return "";
}

absl::StatusOr<config::LifPlacement> LifManager::Commit(
    config::LifPlacement placement) {
  if (replicator_ != nullptr) {
    return replicator_->CommitLifPlacement(std::move(placement));
  }
  placement.set_revision(placement.revision() + 1);
  if (absl::Status s = db_->PutLifPlacement(placement); !s.ok()) return s;
  return placement;
}

std::optional<config::Lif> LifManager::ApplyPlacement(
    const config::LifPlacement& placement) {
  absl::MutexLock lock(&mu_);
  auto it = lifs_.find(placement.lif_name());
  if (it == lifs_.end()) return std::nullopt;
  config::Lif& lif = it->second.lif;
  const bool moved = lif.current_node() != placement.current_node();
  lif.set_current_node(placement.current_node());
  lif.set_current_port(placement.current_port());
  if (!moved) return std::nullopt;
  return lif;
}

void LifManager::Tell(const config::Lif& lif) {
  std::vector<LifPlacementListener*> listeners;
  {
    absl::ReaderMutexLock lock(&mu_);
    listeners = listeners_;
  }
  LOG(INFO) << "LIF " << lif.name() << " (" << lif.address() << ") now on "
            << lif.current_node()
            << (lif.current_port().empty() ? "" : "/" + lif.current_port());
  for (LifPlacementListener* l : listeners) l->LifMoved(lif);
}

absl::StatusOr<config::Lif> LifManager::Migrate(const std::string& name,
                                                const std::string& node) {
  absl::MutexLock move(&move_mu_);
  return MoveLocked(name, node);
}

std::vector<config::Lif> LifManager::MoveAll(const std::string& from,
                                             const std::string& to,
                                             bool home_only) {
  absl::MutexLock move(&move_mu_);
  std::vector<std::string> names;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, entry] : lifs_) {
      if (entry.lif.current_node() != from) continue;
      if (home_only && entry.lif.home_node() != to) continue;
      names.push_back(name);
    }
  }
  std::vector<config::Lif> moved;
  for (const std::string& name : names) {
    absl::StatusOr<config::Lif> lif = MoveLocked(name, to, /*force=*/true);
    if (lif.ok()) {
      moved.push_back(*lif);
    } else {
      LOG(ERROR) << "HA: LIF " << name << " stays on " << from << ": "
                 << lif.status();
    }
  }
  return moved;
}

absl::StatusOr<config::Lif> LifManager::MoveLocked(const std::string& name,
                                                   const std::string& node,
                                                   bool force) {
  config::LifPlacement placement;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = lifs_.find(name);
    if (it == lifs_.end()) {
      return absl::NotFoundError(absl::StrCat("no LIF named '", name, "'"));
    }
    const config::Lif& lif = it->second.lif;
    if (node != options_.node_name &&
        (options_.partner_name.empty() || node != options_.partner_name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node, "' is neither this node nor its partner"));
    }
    if (lif.current_node() == node) {
      return absl::FailedPreconditionError(
          absl::StrCat("LIF '", name, "' is already on ", node));
    }
    placement.set_lif_name(name);
    placement.set_current_node(node);
    if (node == options_.node_name) {
      placement.set_current_port(PickPort(lif));
      if (placement.current_port().empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "no physical port of ", node, " is up to host LIF '", name, "'"));
      }
    }
  }
  // Both nodes must take part: the old host releases the address, the new one
  // binds it.
  if (!force && !PartnerReachable()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "partner ", options_.partner_name, " is unreachable; LIF '", name,
        "' stays where it is"));
  }
  absl::StatusOr<config::LifPlacement> stored = Commit(std::move(placement));
  if (!stored.ok()) return stored.status();
  std::optional<config::Lif> moved = ApplyPlacement(*stored);
  if (moved.has_value()) Tell(*moved);
  absl::ReaderMutexLock lock(&mu_);
  return lifs_.at(name).lif;
}

absl::StatusOr<mgmt::PortStatus> LifManager::SetPortDown(
    const std::string& port, bool down) {
  absl::MutexLock move(&move_mu_);
  std::vector<std::string> on_port;
  {
    absl::MutexLock lock(&mu_);
    auto it = port_up_.find(port);
    if (it == port_up_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no physical port '", port, "' on ", options_.node_name));
    }
    it->second = !down;
    for (const auto& [name, entry] : lifs_) {
      if (entry.lif.current_node() == options_.node_name &&
          entry.lif.current_port() == port) {
        on_port.push_back(name);
      }
    }
  }
  LOG(WARNING) << "fault injection: physical port " << port
               << (down ? " down" : " up");
  if (down) {
    for (const std::string& name : on_port) {
      absl::StatusOr<config::Lif> moved =
          MoveLocked(name, options_.partner_name);
      if (!moved.ok()) {
        LOG(ERROR) << "LIF " << name << " stays on failed port " << port
                   << ": " << moved.status();
      }
    }
  }
  for (mgmt::PortStatus& status : Ports()) {
    if (status.name() == port) return status;
  }
  return absl::InternalError("port vanished");
}

std::vector<mgmt::PortStatus> LifManager::Ports() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<mgmt::PortStatus> ports;
  for (const config::PhysicalPort& port : options_.ports) {
    mgmt::PortStatus status;
    status.set_name(port.name());
    status.set_address(port.address());
    status.set_up(port_up_.at(port.name()));
    for (const auto& [name, entry] : lifs_) {
      if (entry.lif.current_node() == options_.node_name &&
          entry.lif.current_port() == port.name()) {
        status.add_lifs(name);
      }
    }
    ports.push_back(std::move(status));
  }
  return ports;
}

void LifManager::PlacementReplicated(const std::string& name) {
  absl::MutexLock move(&move_mu_);
  absl::StatusOr<std::optional<config::LifPlacement>> stored =
      db_->GetLifPlacement(name);
  if (!stored.ok() || !stored->has_value()) {
    LOG(ERROR) << "replicated placement of LIF " << name << ": "
               << (stored.ok() ? absl::NotFoundError("absent") : stored.status());
    return;
  }
  config::LifPlacement placement = **stored;
  std::optional<config::Lif> moved = ApplyPlacement(placement);
  if (moved.has_value()) Tell(*moved);
  if (placement.current_node() != options_.node_name) return;
  // Moved here by the partner, which does not know this node's ports: record
  // the one it sits on.
  {
    absl::ReaderMutexLock lock(&mu_);
    if (port_up_.count(placement.current_port()) != 0) return;
    placement.set_current_port(PickPort(lifs_.at(name).lif));
  }
  if (placement.current_port().empty()) {
    LOG(ERROR) << "LIF " << name << " moved here but no physical port is up";
    return;
  }
  absl::StatusOr<config::LifPlacement> recorded = Commit(placement);
  if (!recorded.ok()) {
    LOG(ERROR) << "recording the port of LIF " << name << ": "
               << recorded.status();
    return;
  }
  (void)ApplyPlacement(*recorded);
}

}  // namespace appliance::daemon
