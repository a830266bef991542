// ConfigDb: the node's configuration database (RocksDB).
//
// Holds the records that must survive a restart: LUN definitions, LIF
// placements and node settings. Every write is synced before it returns, so a record acknowledged
// to an administrator is on disk. Records are protobuf messages under typed
// keys
// ("lun/<20-digit id>", "lif/<name>", "node/settings"). Thread-safe.
#ifndef APPLIANCE_CONFIG_CONFIG_DB_H_
#define APPLIANCE_CONFIG_CONFIG_DB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/config/config.pb.h"

namespace rocksdb {
class DB;
}

namespace appliance::config {

class ConfigDb {
 public:
  // Opens (creating when absent) the database in directory path.
  static absl::StatusOr<std::unique_ptr<ConfigDb>> Open(
      const std::string& path);
  ~ConfigDb();

  ConfigDb(const ConfigDb&) = delete;
  ConfigDb& operator=(const ConfigDb&) = delete;

  // LUNs ordered by id.
  absl::StatusOr<std::vector<LunDefinition>> ListLuns() const;
  // kNotFound when no LUN has this id.
  absl::StatusOr<LunDefinition> GetLun(uint64_t id) const;
  // Inserts or replaces the LUN with lun.id().
  absl::Status PutLun(const LunDefinition& lun);
  // kNotFound when no LUN has this id.
  absl::Status DeleteLun(uint64_t id);
  // Removes the LUN (when present) and records a tombstone with revision, in one
  // atomic batch; PutLun of the same id later removes the tombstone.
  absl::Status DeleteLunWithTombstone(uint64_t id, uint64_t revision);
  // Tombstones ordered by id.
  absl::StatusOr<std::vector<LunTombstone>> ListTombstones() const;
  absl::StatusOr<std::optional<LunTombstone>> GetTombstone(uint64_t id) const;

  // Persistent reservation state (APTPL) of the LU with NAA id lu_key. PutPrState
  // keeps the record with the highest sequence (saves may arrive out of order).
  absl::StatusOr<std::optional<PrStateRecord>> GetPrState(
      const std::string& lu_key) const;
  absl::Status PutPrState(const std::string& lu_key, const PrStateRecord& record);
  // Removes it (no error when absent).
  absl::Status DeletePrState(const std::string& lu_key);

  // Where LIF name is hosted; empty when never moved (it is on its home).
  absl::StatusOr<std::optional<LifPlacement>> GetLifPlacement(
      const std::string& name) const;
  // Inserts or replaces the placement of placement.lif_name().
  absl::Status PutLifPlacement(const LifPlacement& placement);
  // Every stored placement, ordered by LIF name.
  absl::StatusOr<std::vector<LifPlacement>> ListLifPlacements() const;

  // Empty until first stored.
  absl::StatusOr<std::optional<NodeSettings>> GetNodeSettings() const;
  absl::Status PutNodeSettings(const NodeSettings& settings);

 private:
  explicit ConfigDb(std::unique_ptr<rocksdb::DB> db);

  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) const;
  // The record at key parsed as Message; empty when there is none; kDataLoss
  // naming `what` when it does not parse.
  template <typename Message>
  absl::StatusOr<std::optional<Message>> GetMessage(const std::string& key,
                                                    const std::string& what) const;
  // Every record whose key starts with prefix, in key order, parsed as Message.
  template <typename Message>
  absl::StatusOr<std::vector<Message>> ListMessages(const std::string& prefix,
                                                    const std::string& what) const;
  absl::Status Put(const std::string& key, const std::string& value);

  std::unique_ptr<rocksdb::DB> db_;
  // Serializes PutPrState's read-compare-write.
  absl::Mutex pr_mu_;
};

}  // namespace appliance::config

#endif  // APPLIANCE_CONFIG_CONFIG_DB_H_
