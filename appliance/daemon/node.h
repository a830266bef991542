// Node: one controller's LUN inventory and identity, behind the management API.
//
// It keeps the configuration database and the opened backing stores in step:
// a LUN created through the API gets a backing file on shared storage and a
// record in the database (in that order, undone on failure), and a deleted one
// loses its record and its file. On start it seeds the database from the
// bootstrap file the first time, then opens every LUN this node owns.
//
// Listeners (the SCSI engine, through the daemon's wiring) hear about every LUN
// that comes online or goes away. The node's LifManager keeps the pair's LIF
// placements (see lif_manager.h); the management API reaches it through here.
#ifndef APPLIANCE_DAEMON_NODE_H_
#define APPLIANCE_DAEMON_NODE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/config/config.pb.h"
#include "appliance/config/config_db.h"
#include "appliance/config/replicator.h"
#include "appliance/daemon/lif_manager.h"
#include "appliance/mgmt/backend.h"
#include "appliance/storage/file_block_store.h"
#include "blockstore/block_store.h"
#include "common/metrics.h"
#include "target/virtual_target/module.h"

namespace appliance::daemon {

// Told when a LUN owned by this node comes online (store opened) or goes away.
class LunListener {
 public:
  virtual ~LunListener() = default;
  virtual void LunOnline(const config::LunDefinition& lun,
                         std::shared_ptr<blockstore::BlockStore> store) = 0;
  virtual void LunOffline(uint64_t id) = 0;
};

struct NodeOptions {
  // The validated bootstrap configuration (see config/bootstrap.h).
  config::NodeBootstrap bootstrap;
  // Options for every backing store this node opens (I/O engine, queue depth).
  storage::FileIoOptions io;
  // Reported by GET /api/v1/node.
  std::string version = "0.1.0";
  // Wraps the store of every LUN brought online here before the listeners
  // see it (in a pair: the NVLOG journal); empty: stores are used as opened.
  std::function<std::shared_ptr<blockstore::BlockStore>(
      const config::LunDefinition&, std::shared_ptr<blockstore::BlockStore>)>
      wrap_store;
};

class Node : public mgmt::ManagementBackend,
             public virtual_target::OwnershipView,
             public config::ReplicationListener {
 public:
  // Seeds db on first start, then opens every LUN this node owns. A LUN whose
  // backing file cannot be opened is logged and reported offline; it does not
  // stop the node.
  // replicator (may be null for a standalone node) carries LUN changes to the
  // partner; the node registers itself as its listener. Not owned.
  static absl::StatusOr<std::unique_ptr<Node>> Create(
      NodeOptions options, std::shared_ptr<config::ConfigDb> db,
      metrics::MetricsRegistry& metrics,
      config::ConfigReplicator* replicator = nullptr);
  ~Node() override;

  // Adds a listener and tells it about every LUN already online.
  void AddListener(LunListener* listener);

  // Tells listeners every LUN goes offline and closes every store (waiting for
  // in-flight I/O). Idempotent. Call it while the listeners still exist; the
  // destructor closes stores without telling anyone.
  void Shutdown();

  // mgmt::ManagementBackend
  absl::StatusOr<mgmt::NodeInfo> GetNode() override;
  absl::StatusOr<mgmt::LunList> ListLuns() override;
  absl::StatusOr<config::LunDefinition> GetLun(uint64_t id) override;
  absl::StatusOr<config::LunDefinition> CreateLun(
      const mgmt::CreateLunRequest& request) override;
  absl::Status DeleteLun(uint64_t id) override;
  absl::StatusOr<mgmt::LifList> ListLifs() override;
  absl::StatusOr<config::Lif> MigrateLif(const std::string& name,
                                         const std::string& node) override;
  absl::StatusOr<mgmt::PortStatus> SetPortFault(const std::string& port,
                                                bool down) override;

  // Where the pair's LIFs are hosted; this node's physical ports.
  LifManager& lifs() { return *lifs_; }

  // virtual_target::OwnershipView: every LUN of the pair that this node's
  // database knows, with its current owner.
  std::optional<std::string> OwnerOf(uint64_t lun) const override;

  // config::ReplicationListener: a LUN changed on the partner's side; opens or
  // closes its store here as ownership says.
  void LunChanged(uint64_t id) override;
  void LifPlacementChanged(const std::string& lif_name) override;

  // Every LUN of the pair this node knows (any owner), unordered.
  std::vector<uint64_t> KnownLuns() const;

  // Called (without locks held) whenever the pair's LUN inventory changes.
  void SetInventoryChangedCallback(std::function<void()> callback);

  // The opened store of a LUN this node owns; null when not online here.
  std::shared_ptr<blockstore::BlockStore> store(uint64_t id);

  // --- HA (the daemon's HaController) ---

  // Every LUN of the pair whose current owner is node.
  std::vector<config::LunDefinition> LunsOwnedBy(const std::string& node) const;
  // Opens lun's backing file as it is (not journaled): takeover replays the
  // partner's NVLOG into it before it goes online.
  absl::StatusOr<std::shared_ptr<blockstore::BlockStore>> OpenForReplay(
      const config::LunDefinition& lun) const;
  // Takeover: lun becomes this node's (ownership committed and replicated);
  // brought online on store (wrapped like any other) unless store is null
  // (taken over but kept offline, e.g. an inconsistent NVLOG).
  absl::Status AssumeOwnership(const config::LunDefinition& lun,
                               std::shared_ptr<blockstore::BlockStore> store);
  // Giveback: takes LUN id offline here (waiting for its in-flight commands)
  // and commits to as its owner.
  absl::Status HandOver(uint64_t id, const std::string& to);

 private:
  Node(NodeOptions options, std::shared_ptr<config::ConfigDb> db);

  absl::Status Seed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpenOwnedLuns() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RegisterMetrics(metrics::MetricsRegistry& metrics);
  // Creates the backing file and the record for lun (identity filled in here).
  absl::StatusOr<config::LunDefinition> Provision(config::LunDefinition lun,
                                                  bool deterministic_identity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string BackingPath(const config::LunDefinition& lun) const;
  // Stores lun: through the replicator when there is one.
  absl::StatusOr<config::LunDefinition> StoreRecord(config::LunDefinition lun)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InventoryChanged();
  absl::StatusOr<config::LunDefinition> DoCreateLun(
      const mgmt::CreateLunRequest& request);
  absl::Status DoDeleteLun(uint64_t id);
  storage::FileBlockStore::Options StoreOptions(
      const config::LunDefinition& lun) const;
  // Opens lun's backing file and brings it online; logs and leaves it offline
  // when the file cannot be opened.
  void OpenAndOnline(const config::LunDefinition& lun)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells listeners the LUN goes offline here and drops its store (no-op when
  // it is not online here).
  void Offline(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Online(const config::LunDefinition& lun,
              std::shared_ptr<blockstore::BlockStore> store)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const NodeOptions options_;
  const absl::Time started_;
  absl::Mutex mu_;
  // Thread-safe itself; mu_ orders the node's read-modify-write sequences.
  const std::shared_ptr<config::ConfigDb> db_;
  std::map<uint64_t, std::shared_ptr<blockstore::BlockStore>> stores_
      ABSL_GUARDED_BY(mu_);
  std::vector<LunListener*> listeners_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  config::ConfigReplicator* replicator_ = nullptr;
  std::unique_ptr<LifManager> lifs_;
  absl::Mutex callback_mu_;
  std::function<void()> inventory_changed_ ABSL_GUARDED_BY(callback_mu_);
  void SetOwner(uint64_t id, std::optional<std::string> owner);

  // Kept apart from mu_: read on every command's path.
  mutable absl::Mutex owners_mu_;
  std::map<uint64_t, std::string> owners_ ABSL_GUARDED_BY(owners_mu_);
  metrics::Counter* luns_created_ = nullptr;
  metrics::Counter* luns_deleted_ = nullptr;
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_NODE_H_
