// ConfigReplicator: keeps the pair's LUN definitions and LIF placements the
// same on both nodes.
//
// Local changes are committed to this node's database with a fresh revision (a
// hybrid clock: max(now in microseconds, last revision + 1)) and pushed to the
// partner at once. A push that cannot be delivered marks the pair dirty; while
// dirty, the replicator periodically reconciles by exchanging whole snapshots
// (definitions and tombstones), after which both nodes hold, for every LUN id,
// the record with the highest revision (for every LIF name, the placement with
// the highest revision). Incoming changes are applied to the database and
// reported to a listener (the node opens or closes stores, moves portals).
//
// The gRPC service (ConfigReplication) is served on the interconnect; the
// channel to the partner is provided by whoever owns the interconnect.
#ifndef APPLIANCE_CONFIG_REPLICATOR_H_
#define APPLIANCE_CONFIG_REPLICATOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/config/config.pb.h"
#include "appliance/config/config_db.h"
#include "appliance/config/replication.grpc.pb.h"
#include "grpcpp/channel.h"

namespace appliance::config {

// Told about changes that arrived from the partner (not about local commits).
// Called without the replicator's locks held, possibly out of order with other
// notifications for the same id: the listener re-reads the database for id.
class ReplicationListener {
 public:
  virtual ~ReplicationListener() = default;
  virtual void LunChanged(uint64_t id) = 0;
  // The placement of LIF lif_name changed (re-read it from the database).
  virtual void LifPlacementChanged(const std::string& lif_name) {}
};

struct ReplicatorOptions {
  // This node's name (reported in snapshots).
  std::string node_name;
  // Deadline of one push or reconcile call.
  absl::Duration rpc_timeout = absl::Seconds(2);
  // How often a dirty pair retries reconciliation.
  absl::Duration reconcile_interval = absl::Milliseconds(500);
};

class ConfigReplicator : public ConfigReplication::Service {
 public:
  ConfigReplicator(std::shared_ptr<ConfigDb> db, ReplicatorOptions options);
  // Stops the background pusher.
  ~ConfigReplicator() override;

  // Must be set before the service starts serving; not owned.
  void SetListener(ReplicationListener* listener);
  // The channel to the partner's ConfigReplication service (null: standalone).
  // Starts the background pusher on first call; the pair starts dirty, so the
  // first connection reconciles.
  void SetPartnerChannel(std::shared_ptr<grpc::Channel> channel);

  // Local changes: stamp a revision, store, push. Return the stored record.
  absl::StatusOr<LunDefinition> CommitLun(LunDefinition lun);
  absl::Status CommitDelete(uint64_t id);
  // Stamps a revision on placement, stores it, pushes it. Returns it stored.
  absl::StatusOr<LifPlacement> CommitLifPlacement(LifPlacement placement);

  // Applies a record (from a push or a snapshot). Returns whether it changed
  // this node's state; tells the listener when it did.
  absl::StatusOr<bool> Apply(const ConfigRecord& record);
  absl::StatusOr<ConfigSnapshot> Snapshot() const;
  absl::Status Merge(const ConfigSnapshot& snapshot);

  // True when a change may not have reached the partner.
  bool dirty() const;
  // Blocks until the pair is clean or timeout passes (tests, shutdown).
  bool WaitClean(absl::Duration timeout) const;

  // ConfigReplication::Service
  grpc::Status Push(grpc::ServerContext* context, const ConfigRecord* request,
                    PushReply* reply) override;
  grpc::Status Reconcile(grpc::ServerContext* context,
                         const ConfigSnapshot* request,
                         ConfigSnapshot* reply) override;

 private:
  uint64_t NextRevision() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Enqueue(ConfigRecord record);
  void PushLoop();
  absl::StatusOr<bool> ApplyLifPlacement(const ConfigRecord& record);
  // Revision and definition this node holds for id (revision 0: nothing).
  absl::StatusOr<std::pair<uint64_t, std::optional<LunDefinition>>> Current(
      uint64_t id) const;

  const std::shared_ptr<ConfigDb> db_;
  const ReplicatorOptions options_;

  // Orders every read-compare-write of the database.
  mutable absl::Mutex apply_mu_;
  ReplicationListener* listener_ = nullptr;

  mutable absl::Mutex mu_;
  uint64_t last_revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<ConfigRecord> outbox_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  // Records taken from outbox_ whose push has not finished.
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::thread pusher_;
};

}  // namespace appliance::config

#endif  // APPLIANCE_CONFIG_REPLICATOR_H_
