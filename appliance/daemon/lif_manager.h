// LifManager: where each LIF of the pair is hosted now, and this node's
// physical ports.
//
// LIF definitions (address, relative target port id, portal group, home) come
// from the bootstrap and are the same on both nodes; their current placement
// lives in the configuration database and is replicated (config::LifPlacement;
// a LIF without a record is on its home node and port). A LIF moves when the
// management API asks (Migrate) or when the physical port under it goes down
// (SetPortDown, fault injection): the moving node commits the new placement,
// the replicator carries it to the partner, and on both nodes listeners hear
// the change (the daemon moves the iSCSI portal and raises the ALUA unit
// attention). The node that gains a LIF whose placement names no port of its
// own records the port it put it on.
//
// Port state (up/down) is in memory only: a restart brings every port up.
// Thread-safe.
#ifndef APPLIANCE_DAEMON_LIF_MANAGER_H_
#define APPLIANCE_DAEMON_LIF_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/config/config.pb.h"
#include "appliance/config/config_db.h"
#include "appliance/config/replicator.h"
#include "appliance/mgmt/api.pb.h"

namespace appliance::daemon {

// Read side: every LIF of the pair with current_node and current_port filled.
class LifView {
 public:
  virtual ~LifView() = default;
  virtual std::vector<config::Lif> Lifs() const = 0;
};

// Told (without LifManager's locks held) after a LIF changed node, whether
// this node or the partner moved it.
class LifPlacementListener {
 public:
  virtual ~LifPlacementListener() = default;
  virtual void LifMoved(const config::Lif& lif) = 0;
};

class LifManager : public LifView {
 public:
  struct Options {
    std::string node_name;
    std::string partner_name;  // empty: standalone (LIFs cannot move)
    // Every LIF of the pair, validated (config::ValidateAndFillBootstrap).
    std::vector<config::Lif> lifs;
    // This node's physical ports.
    std::vector<config::PhysicalPort> ports;
  };

  // Loads the stored placements. replicator (may be null: standalone) commits
  // and carries placement changes; not owned, must outlive the manager.
  static absl::StatusOr<std::unique_ptr<LifManager>> Create(
      Options options, std::shared_ptr<config::ConfigDb> db,
      config::ConfigReplicator* replicator);

  // Whether the partner can be reached now (the interconnect is up). Until
  // set, it cannot.
  void SetPartnerReachable(std::function<bool()> reachable);
  void AddListener(LifPlacementListener* listener);
  // After it returns, listener is not called any more.
  void RemoveListener(LifPlacementListener* listener);

  std::vector<config::Lif> Lifs() const override;

  // Moves LIF name to node. Returns its new placement. kNotFound: no such
  // LIF; kInvalidArgument: node is neither this node nor the partner;
  // kFailedPrecondition: it is there already, the partner is unreachable, or
  // (moving here) no physical port of this node is up.
  absl::StatusOr<config::Lif> Migrate(const std::string& name,
                                      const std::string& node);

  // HA: moves every LIF hosted on node from to node to, whether or not the
  // partner can be reached (takeover: from is fenced; giveback: home_only
  // moves just the LIFs whose home is to). Returns the LIFs moved.
  std::vector<config::Lif> MoveAll(const std::string& from,
                                   const std::string& to, bool home_only);

  // Fault injection: port goes down (LIFs on it move to the partner when it is
  // reachable; else they stay) or up (nothing moves back by itself).
  // kNotFound: no such port here.
  absl::StatusOr<mgmt::PortStatus> SetPortDown(const std::string& port,
                                               bool down);
  std::vector<mgmt::PortStatus> Ports() const;

  // The replicator stored a placement from the partner for LIF name.
  void PlacementReplicated(const std::string& name);

 private:
  struct Entry {
    config::Lif lif;  // current_node/current_port kept current
  };
  LifManager(Options options, std::shared_ptr<config::ConfigDb> db,
             config::ConfigReplicator* replicator);

  absl::Status Load();
  // The port this node would put a LIF on ("" when none is up).
  std::string PickPort(const config::Lif& lif) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Commits placement (through the replicator when there is one).
  absl::StatusOr<config::LifPlacement> Commit(config::LifPlacement placement);
  // Applies a stored placement to the table; returns the LIF when its node
  // changed.
  std::optional<config::Lif> ApplyPlacement(
      const config::LifPlacement& placement) ABSL_LOCKS_EXCLUDED(mu_);
  // force: move even when the partner cannot be reached (HA: it is fenced).
  absl::StatusOr<config::Lif> MoveLocked(const std::string& name,
                                         const std::string& node,
                                         bool force = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(move_mu_);
  void Tell(const config::Lif& lif);
  bool PartnerReachable() const;

  const Options options_;
  const std::shared_ptr<config::ConfigDb> db_;
  config::ConfigReplicator* const replicator_;

  // Serializes moves (read, check, commit).
  absl::Mutex move_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> lifs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> port_up_ ABSL_GUARDED_BY(mu_);
  std::function<bool()> partner_reachable_ ABSL_GUARDED_BY(mu_);
  std::vector<LifPlacementListener*> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_LIF_MANAGER_H_
