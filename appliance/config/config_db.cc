#include "appliance/config/config_db.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace appliance::config {
namespace {

constexpr char kLunPrefix[] = "lun/";
constexpr char kNodeSettingsKey[] = "node/settings";
constexpr char kLifPlacementPrefix[] = "lif/";
std::string LifPlacementKey(const std::string& name) {
  return kLifPlacementPrefix + name;
}

std::string PrKey(const std::string& lu_key) { return "pr/" + lu_key; }

std::string LunKey(uint64_t id) {
  return absl::StrFormat("%s%020u", kLunPrefix, id);
}
constexpr char kTombstonePrefix[] = "tomb/lun/";
std::string TombstoneKey(uint64_t id) {
  return absl::StrFormat("%s%020u", kTombstonePrefix, id);
}

absl::Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(what);
  if (s.IsIOError()) {
    return absl::UnavailableError(absl::StrCat(what, ": ", s.ToString()));
  }
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", s.ToString()));
}

rocksdb::WriteOptions SyncedWrite() {
  rocksdb::WriteOptions options;
  options.sync = true;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConfigDb>> ConfigDb::Open(
    const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.keep_log_file_num = 4;
  options.max_open_files = 64;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("open configuration database ", path));
  }
  return std::unique_ptr<ConfigDb>(
      new ConfigDb(std::unique_ptr<rocksdb::DB>(raw)));
}

ConfigDb::ConfigDb(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

ConfigDb::~ConfigDb() {
  if (db_ != nullptr) db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::optional<std::string>> ConfigDb::Get(
    const std::string& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, absl::StrCat("read ", key));
  return std::optional<std::string>(std::move(value));
}

template <typename Message>
absl::StatusOr<std::optional<Message>> ConfigDb::GetMessage(
    const std::string& key, const std::string& what) const {
  absl::StatusOr<std::optional<std::string>> value = Get(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<Message>();
  Message message;
  if (!message.ParseFromString(**value)) {
    return absl::DataLossError(absl::StrCat(what, " does not parse"));
  }
  return std::optional<Message>(std::move(message));
}

template <typename Message>
absl::StatusOr<std::vector<Message>> ConfigDb::ListMessages(
    const std::string& prefix, const std::string& what) const {
  std::vector<Message> messages;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    Message message;
    if (!message.ParseFromArray(it->value().data(),
                                static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          what, " record ", it->key().ToString(), " does not parse"));
    }
    messages.push_back(std::move(message));
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), absl::StrCat("list ", what, " records"));
  }
  return messages;
}

absl::Status ConfigDb::Put(const std::string& key, const std::string& value) {
  return FromRocks(db_->Put(SyncedWrite(), key, value),
                   absl::StrCat("write ", key));
}

absl::StatusOr<std::vector<LunDefinition>> ConfigDb::ListLuns() const {
  return ListMessages<LunDefinition>(kLunPrefix, "LUN");
}

absl::StatusOr<LunDefinition> ConfigDb::GetLun(uint64_t id) const {
  absl::StatusOr<std::optional<LunDefinition>> lun = GetMessage<LunDefinition>(
      LunKey(id), absl::StrCat("LUN ", id, " record"));
  if (!lun.ok()) return lun.status();
  if (!lun->has_value()) {
    return absl::NotFoundError(absl::StrCat("LUN ", id, " does not exist"));
  }
  return **std::move(lun);
}

absl::Status ConfigDb::PutLun(const LunDefinition& lun) {
  rocksdb::WriteBatch batch;
  batch.Put(LunKey(lun.id()), lun.SerializeAsString());
  batch.Delete(TombstoneKey(lun.id()));
  return FromRocks(db_->Write(SyncedWrite(), &batch),
                   absl::StrCat("write LUN ", lun.id()));
}

absl::Status ConfigDb::DeleteLunWithTombstone(uint64_t id, uint64_t revision) {
  LunTombstone tombstone;
  tombstone.set_id(id);
  tombstone.set_revision(revision);
  rocksdb::WriteBatch batch;
  batch.Delete(LunKey(id));
  batch.Put(TombstoneKey(id), tombstone.SerializeAsString());
  return FromRocks(db_->Write(SyncedWrite(), &batch),
                   absl::StrCat("delete LUN ", id));
}

absl::StatusOr<std::vector<LunTombstone>> ConfigDb::ListTombstones() const {
  return ListMessages<LunTombstone>(kTombstonePrefix, "tombstone");
}

absl::StatusOr<std::optional<LunTombstone>> ConfigDb::GetTombstone(
    uint64_t id) const {
  return GetMessage<LunTombstone>(TombstoneKey(id),
                                  absl::StrCat("tombstone ", id));
}

absl::Status ConfigDb::DeleteLun(uint64_t id) {
  absl::StatusOr<std::optional<std::string>> value = Get(LunKey(id));
  if (!value.ok()) return value.status();
  if (!value->has_value()) {
    return absl::NotFoundError(absl::StrCat("LUN ", id, " does not exist"));
  }
  return FromRocks(db_->Delete(SyncedWrite(), LunKey(id)),
                   absl::StrCat("delete LUN ", id));
}

absl::StatusOr<std::optional<PrStateRecord>> ConfigDb::GetPrState(
    const std::string& lu_key) const {
  return GetMessage<PrStateRecord>(
      PrKey(lu_key), absl::StrCat("reservation record of ", lu_key));
}

absl::Status ConfigDb::PutPrState(const std::string& lu_key,
                                  const PrStateRecord& record) {
  absl::MutexLock lock(&pr_mu_);
  absl::StatusOr<std::optional<PrStateRecord>> current = GetPrState(lu_key);
  if (!current.ok()) return current.status();
  if (current->has_value() && (*current)->sequence() >= record.sequence()) {
    return absl::OkStatus();  // a newer state is already stored
  }
  return Put(PrKey(lu_key), record.SerializeAsString());
}

absl::Status ConfigDb::DeletePrState(const std::string& lu_key) {
  return FromRocks(db_->Delete(SyncedWrite(), PrKey(lu_key)),
                   absl::StrCat("delete reservation record of ", lu_key));
}

absl::StatusOr<std::optional<LifPlacement>> ConfigDb::GetLifPlacement(
    const std::string& name) const {
  return GetMessage<LifPlacement>(
      LifPlacementKey(name), absl::StrCat("placement record of LIF ", name));
}

absl::Status ConfigDb::PutLifPlacement(const LifPlacement& placement) {
  if (placement.lif_name().empty()) {
    return absl::InvalidArgumentError("LIF placement without a LIF name");
  }
  return Put(LifPlacementKey(placement.lif_name()),
             placement.SerializeAsString());
}

absl::StatusOr<std::vector<LifPlacement>> ConfigDb::ListLifPlacements() const {
  return ListMessages<LifPlacement>(kLifPlacementPrefix, "LIF placement");
}

absl::StatusOr<std::optional<NodeSettings>> ConfigDb::GetNodeSettings() const {
  return GetMessage<NodeSettings>(kNodeSettingsKey, "node settings record");
}

absl::Status ConfigDb::PutNodeSettings(const NodeSettings& settings) {
  return Put(kNodeSettingsKey, settings.SerializeAsString());
}

}  // namespace appliance::config
