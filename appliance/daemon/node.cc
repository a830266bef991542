#include "appliance/daemon/node.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "appliance/config/bootstrap.h"
#include "appliance/mgmt/api_validation.h"
#include "appliance/storage/identity.h"
#include "glog/logging.h"

namespace appliance::daemon {
namespace {

blockstore::LunIdentity IdentityOf(const config::LunDefinition& lun) {
  blockstore::LunIdentity identity;
  identity.naa_id = lun.naa_id();
  identity.serial = lun.serial();
  identity.uuid = lun.uuid();
  return identity;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Create(
    NodeOptions options, std::shared_ptr<config::ConfigDb> db,
    metrics::MetricsRegistry& metrics, config::ConfigReplicator* replicator) {
  std::unique_ptr<Node> node(new Node(std::move(options), std::move(db)));
  node->replicator_ = replicator;
  const config::NodeBootstrap& b = node->options_.bootstrap;
  LifManager::Options lif_options;
  lif_options.node_name = b.node_name();
  lif_options.partner_name = b.partner_name();
  lif_options.lifs.assign(b.lifs().begin(), b.lifs().end());
  lif_options.ports.assign(b.physical_ports().begin(), b.physical_ports().end());
  absl::StatusOr<std::unique_ptr<LifManager>> lifs =
      LifManager::Create(std::move(lif_options), node->db_, replicator);
  if (!lifs.ok()) return lifs.status();
  node->lifs_ = std::move(*lifs);
  if (absl::Status s = node->RegisterMetrics(metrics); !s.ok()) return s;
  absl::MutexLock lock(&node->mu_);
  if (absl::Status s = node->Seed(); !s.ok()) return s;
  if (absl::Status s = node->OpenOwnedLuns(); !s.ok()) return s;
  if (replicator != nullptr) replicator->SetListener(node.get());
  return node;
}

Node::Node(NodeOptions options, std::shared_ptr<config::ConfigDb> db)
    : options_(std::move(options)), started_(absl::Now()), db_(std::move(db)) {}

Node::~Node() {
  // Listeners may already be gone: only an explicit Shutdown() tells them.
  absl::MutexLock lock(&mu_);
  listeners_.clear();
  stores_.clear();
}

absl::Status Node::RegisterMetrics(metrics::MetricsRegistry& metrics) {
  absl::StatusOr<metrics::Counter*> created =
      metrics.AddCounter("appliance_luns_created_total",
                         "LUNs created through the management API");
  if (!created.ok()) return created.status();
  luns_created_ = *created;
  absl::StatusOr<metrics::Counter*> deleted =
      metrics.AddCounter("appliance_luns_deleted_total",
                         "LUNs deleted through the management API");
  if (!deleted.ok()) return deleted.status();
  luns_deleted_ = *deleted;
  if (absl::Status s = metrics.AddCallbackGauge(
          "appliance_luns_online", "LUNs this node owns and serves",
          [this] {
            absl::MutexLock lock(&mu_);
            return static_cast<double>(stores_.size());
          });
      !s.ok()) {
    return s;
  }
  return metrics.AddCallbackGauge(
      "appliance_uptime_seconds", "Seconds since this node started",
      [this] { return absl::ToDoubleSeconds(absl::Now() - started_); });
}

void Node::AddListener(LunListener* listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(listener);
  for (auto& [id, store] : stores_) {
    absl::StatusOr<config::LunDefinition> lun = db_->GetLun(id);
    if (lun.ok()) listener->LunOnline(*lun, store);
  }
}

void Node::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  for (auto& [id, store] : stores_) {
    for (LunListener* l : listeners_) l->LunOffline(id);
  }
  // Dropping the last references closes the files once in-flight I/O is done.
  stores_.clear();
}

std::string Node::BackingPath(const config::LunDefinition& lun) const {
  return absl::StrCat(options_.bootstrap.shared_storage_dir(), "/",
                      lun.backing_file());
}

storage::FileBlockStore::Options Node::StoreOptions(
    const config::LunDefinition& lun) const {
  storage::FileBlockStore::Options store_options;
  store_options.block_size = lun.block_size();
  store_options.identity = IdentityOf(lun);
  store_options.io = options_.io;
  return store_options;
}

void Node::Online(const config::LunDefinition& lun,
                  std::shared_ptr<blockstore::BlockStore> store) {
  stores_[lun.id()] = store;
  for (LunListener* l : listeners_) l->LunOnline(lun, store);
}

absl::Status Node::Seed() {
  absl::StatusOr<std::optional<config::NodeSettings>> settings =
      db_->GetNodeSettings();
  if (!settings.ok()) return settings.status();
  if (settings->has_value())
    return absl::OkStatus();  // seeded on an earlier start

  const config::NodeBootstrap& b = options_.bootstrap;
  for (const config::LunDefinition& seed : b.seed_luns()) {
    if (seed.home_node() != b.node_name())
      continue;  // the partner seeds its own
    if (db_->GetLun(seed.id()).ok()) continue;
    absl::StatusOr<config::LunDefinition> lun =
        Provision(seed, /*deterministic_identity=*/true);
    if (!lun.ok()) {
      return absl::Status(lun.status().code(),
                          absl::StrCat("seeding LUN '", seed.name(),
                                       "': ", lun.status().message()));
    }
    LOG(INFO) << "seeded LUN " << lun->id() << " '" << lun->name() << "' ("
              << lun->size_bytes() << " bytes) at " << BackingPath(*lun);
  }
  config::NodeSettings fresh;
  fresh.set_node_name(b.node_name());
  fresh.set_partner_name(b.partner_name());
  fresh.set_target_name(b.target_name());
  fresh.set_config_generation(1);
  return db_->PutNodeSettings(fresh);
}

absl::Status Node::OpenOwnedLuns() {
  absl::StatusOr<std::vector<config::LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) return luns.status();
  for (const config::LunDefinition& lun : *luns) {
    SetOwner(lun.id(), lun.owner_node());
    if (lun.owner_node() == options_.bootstrap.node_name()) OpenAndOnline(lun);
  }
  return absl::OkStatus();
}

void Node::OpenAndOnline(const config::LunDefinition& lun) {
  absl::StatusOr<std::unique_ptr<storage::FileBlockStore>> store =
      storage::FileBlockStore::Open(BackingPath(lun), StoreOptions(lun));
  if (!store.ok()) {
    LOG(ERROR) << "LUN " << lun.id() << " '" << lun.name()
               << "' stays offline: " << store.status();
    return;
  }
  LOG(INFO) << "LUN " << lun.id() << " '" << lun.name() << "' online ("
            << (*store)->io_engine() << ")";
  std::shared_ptr<blockstore::BlockStore> opened(std::move(*store));
  if (options_.wrap_store) opened = options_.wrap_store(lun, std::move(opened));
  Online(lun, std::move(opened));
}

void Node::Offline(uint64_t id) {
  auto it = stores_.find(id);
  if (it == stores_.end()) return;
  for (LunListener* l : listeners_) l->LunOffline(id);
  stores_.erase(it);
}

absl::StatusOr<config::LunDefinition> Node::Provision(
    config::LunDefinition lun, bool deterministic_identity) {
  absl::StatusOr<blockstore::LunIdentity> identity =
      deterministic_identity
          ? storage::MakeLunIdentityFromSeed(
                absl::StrCat(options_.bootstrap.target_name(), "/", lun.name()))
          : storage::MakeLunIdentity();
  if (!identity.ok()) return identity.status();
  lun.set_naa_id(identity->naa_id);
  lun.set_serial(identity->serial);
  lun.set_uuid(identity->uuid);
  lun.set_backing_file(absl::StrCat("lun", lun.id(), "-", lun.name(), ".img"));
  lun.set_created_unix_seconds(absl::ToUnixSeconds(absl::Now()));

  const std::string path = BackingPath(lun);
  bool created_file = true;
  absl::StatusOr<std::unique_ptr<storage::FileBlockStore>> store =
      storage::FileBlockStore::Create(path, lun.size_bytes(),
                                      StoreOptions(lun));
  if (!store.ok() &&
      store.status().code() == absl::StatusCode::kAlreadyExists &&
      deterministic_identity) {
    // A seed whose file survived (the database was reset): keep its data.
    created_file = false;
    store = storage::FileBlockStore::Open(path, StoreOptions(lun));
    if (store.ok() &&
        (*store)->num_blocks() * (*store)->block_size() != lun.size_bytes()) {
      return absl::FailedPreconditionError(
          absl::StrCat("existing backing file ", path,
                       " does not have the configured size"));
    }
  }
  if (!store.ok()) return store.status();
  absl::StatusOr<config::LunDefinition> stored = StoreRecord(lun);
  if (!stored.ok()) {
    (*store)->Close();
    if (created_file) {
      absl::Status removed = storage::DeleteBackingFile(path);
      if (!removed.ok()) LOG(ERROR) << "cleanup: " << removed;
    }
    return stored.status();
  }
  lun = *std::move(stored);
  SetOwner(lun.id(), lun.owner_node());
  if (lun.owner_node() == options_.bootstrap.node_name()) {
    std::shared_ptr<blockstore::BlockStore> opened(std::move(*store));
    if (options_.wrap_store) {
      opened = options_.wrap_store(lun, std::move(opened));
    }
    Online(lun, std::move(opened));
  } else {
    (*store)->Close();  // the owner opens it
  }
  return lun;
}

absl::StatusOr<mgmt::NodeInfo> Node::GetNode() {
  const config::NodeBootstrap& b = options_.bootstrap;
  mgmt::NodeInfo info;
  info.set_node_name(b.node_name());
  info.set_partner_name(b.partner_name());
  info.set_target_name(b.target_name());
  info.set_state("active");
  info.set_version(options_.version);
  info.set_uptime_seconds(absl::ToInt64Seconds(absl::Now() - started_));
  for (config::Lif& lif : lifs_->Lifs()) *info.add_lifs() = std::move(lif);
  *info.mutable_physical_ports() = b.physical_ports();
  for (mgmt::PortStatus& port : lifs_->Ports()) {
    *info.add_ports() = std::move(port);
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::vector<config::LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) return luns.status();
  info.set_lun_count(luns->size());
  return info;
}

absl::StatusOr<mgmt::LifList> Node::ListLifs() {
  mgmt::LifList list;
  for (config::Lif& lif : lifs_->Lifs()) *list.add_lifs() = std::move(lif);
  return list;
}

absl::StatusOr<config::Lif> Node::MigrateLif(const std::string& name,
                                             const std::string& node) {
  return lifs_->Migrate(name, node);
}

absl::StatusOr<mgmt::PortStatus> Node::SetPortFault(const std::string& port,
                                                    bool down) {
  return lifs_->SetPortDown(port, down);
}

void Node::LifPlacementChanged(const std::string& lif_name) {
  lifs_->PlacementReplicated(lif_name);
}

absl::StatusOr<mgmt::LunList> Node::ListLuns() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::vector<config::LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) return luns.status();
  mgmt::LunList list;
  for (config::LunDefinition& lun : *luns) *list.add_luns() = std::move(lun);
  return list;
}

absl::StatusOr<config::LunDefinition> Node::GetLun(uint64_t id) {
  absl::MutexLock lock(&mu_);
  return db_->GetLun(id);
}

absl::StatusOr<config::LunDefinition> Node::CreateLun(
    const mgmt::CreateLunRequest& request) {
  absl::StatusOr<config::LunDefinition> created = DoCreateLun(request);
  if (created.ok()) InventoryChanged();
  return created;
}

absl::Status Node::DeleteLun(uint64_t id) {
  absl::Status deleted = DoDeleteLun(id);
  // A deletion whose file removal failed still changed the inventory.
  if (deleted.ok() || deleted.code() == absl::StatusCode::kInternal) {
    InventoryChanged();
  }
  return deleted;
}

absl::StatusOr<config::LunDefinition> Node::DoCreateLun(
    const mgmt::CreateLunRequest& request) {
  if (absl::Status s = mgmt::ValidateCreateLunRequest(request); !s.ok())
    return s;
  const config::NodeBootstrap& b = options_.bootstrap;
  config::LunDefinition lun;
  lun.set_name(request.name());
  lun.set_size_bytes(request.size_bytes());
  lun.set_block_size(mgmt::EffectiveBlockSize(request));
  lun.set_physical_block_size(request.physical_block_size());
  lun.set_read_only(request.read_only());
  lun.set_home_node(request.owner_node().empty() ? b.node_name()
                                                 : request.owner_node());
  lun.set_owner_node(lun.home_node());
  if (lun.owner_node() != b.node_name() &&
      (b.partner_name().empty() || lun.owner_node() != b.partner_name())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "owner '", lun.owner_node(), "' is neither this node nor its partner"));
  }

  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("node is shutting down");
  absl::StatusOr<std::vector<config::LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) return luns.status();
  std::set<uint64_t> ids;
  for (const config::LunDefinition& other : *luns) {
    if (other.name() == lun.name()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a LUN named '", lun.name(), "' exists (id ", other.id(), ")"));
    }
    ids.insert(other.id());
  }
  if (request.has_id()) {
    if (ids.count(request.id()) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("LUN id ", request.id(), " is in use"));
    }
    lun.set_id(request.id());
  } else {
    uint64_t id = 0;
    while (ids.count(id) != 0) ++id;
    if (id > mgmt::kMaxLunId) {
      return absl::ResourceExhaustedError("no free LUN id");
    }
    lun.set_id(id);
  }
  if (absl::Status s = config::ValidateLunDefinition(lun); !s.ok()) return s;
  absl::StatusOr<config::LunDefinition> created =
      Provision(lun, /*deterministic_identity=*/false);
  if (!created.ok()) return created.status();
  luns_created_->Increment();
  LOG(INFO) << "created LUN " << created->id() << " '" << created->name()
            << "' (" << created->size_bytes() << " bytes, owner "
            << created->owner_node() << ")";
  return created;
}

absl::Status Node::DoDeleteLun(uint64_t id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<config::LunDefinition> lun = db_->GetLun(id);
  if (!lun.ok()) return lun.status();
  Offline(id);
  // The record goes first: an orphaned file is harmless, a record without its
  // file would be a LUN that cannot come online.
  if (absl::Status s = replicator_ != nullptr ? replicator_->CommitDelete(id)
                                              : db_->DeleteLun(id);
      !s.ok()) {
    return s;
  }
  SetOwner(id, std::nullopt);
  if (absl::Status s = db_->DeletePrState(lun->naa_id()); !s.ok()) {
    LOG(WARNING) << "LUN " << id << ": reservation record not removed: " << s;
  }
  luns_deleted_->Increment();
  absl::Status removed = storage::DeleteBackingFile(BackingPath(*lun));
  if (!removed.ok()) {
    return absl::InternalError(absl::StrCat(
        "LUN ", id, " is deleted but its backing file was not removed: ",
        removed.message()));
  }
  LOG(INFO) << "deleted LUN " << id << " '" << lun->name() << "'";
  return absl::OkStatus();
}

absl::StatusOr<config::LunDefinition> Node::StoreRecord(
    config::LunDefinition lun) {
  if (replicator_ != nullptr) return replicator_->CommitLun(std::move(lun));
  if (absl::Status s = db_->PutLun(lun); !s.ok()) return s;
  return lun;
}

void Node::SetInventoryChangedCallback(std::function<void()> callback) {
  absl::MutexLock lock(&callback_mu_);
  inventory_changed_ = std::move(callback);
}

void Node::InventoryChanged() {
  absl::MutexLock lock(&callback_mu_);
  if (inventory_changed_) inventory_changed_();
}

void Node::LunChanged(uint64_t id) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    absl::StatusOr<config::LunDefinition> lun = db_->GetLun(id);
    const bool exists = lun.ok();
    if (!exists && lun.status().code() != absl::StatusCode::kNotFound) {
      LOG(ERROR) << "replicated LUN " << id << ": " << lun.status();
      return;
    }
    SetOwner(id, exists ? std::optional<std::string>(lun->owner_node())
                        : std::nullopt);
    const bool mine = exists && lun->owner_node() == options_.bootstrap.node_name();
    const bool open_here = stores_.count(id) != 0;
    if (mine && !open_here) {
      OpenAndOnline(*lun);
    } else if (!mine && open_here) {
      Offline(id);
      LOG(INFO) << "LUN " << id << " no longer served here (replicated)";
    }
    if (exists) {
      LOG(INFO) << "replicated LUN " << id << " '" << lun->name() << "' (owner "
                << lun->owner_node() << ")";
    } else {
      LOG(INFO) << "replicated deletion of LUN " << id;
    }
  }
  InventoryChanged();
}

std::optional<std::string> Node::OwnerOf(uint64_t lun) const {
  absl::ReaderMutexLock lock(&owners_mu_);
  auto it = owners_.find(lun);
  if (it == owners_.end()) return std::nullopt;
  return it->second;
}

std::vector<uint64_t> Node::KnownLuns() const {
  absl::ReaderMutexLock lock(&owners_mu_);
  std::vector<uint64_t> ids;
  ids.reserve(owners_.size());
  for (const auto& [id, owner] : owners_) ids.push_back(id);
  return ids;
}

void Node::SetOwner(uint64_t id, std::optional<std::string> owner) {
  absl::MutexLock lock(&owners_mu_);
  if (owner.has_value()) {
    owners_[id] = *owner;
  } else {
    owners_.erase(id);
  }
}

std::shared_ptr<blockstore::BlockStore> Node::store(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = stores_.find(id);
  return it == stores_.end() ? nullptr : it->second;
}

std::vector<config::LunDefinition> Node::LunsOwnedBy(
    const std::string& node) const {
  std::vector<config::LunDefinition> out;
  absl::StatusOr<std::vector<config::LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) {
    LOG(ERROR) << "listing LUNs: " << luns.status();
    return out;
  }
  for (config::LunDefinition& lun : *luns) {
    if (lun.owner_node() == node) out.push_back(std::move(lun));
  }
  return out;
}

absl::StatusOr<std::shared_ptr<blockstore::BlockStore>> Node::OpenForReplay(
    const config::LunDefinition& lun) const {
  absl::StatusOr<std::unique_ptr<storage::FileBlockStore>> store =
      storage::FileBlockStore::Open(BackingPath(lun), StoreOptions(lun));
  if (!store.ok()) return store.status();
  return std::shared_ptr<blockstore::BlockStore>(std::move(*store));
}

absl::Status Node::AssumeOwnership(
    const config::LunDefinition& lun,
    std::shared_ptr<blockstore::BlockStore> store) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("node is shutting down");
    config::LunDefinition mine = lun;
    mine.set_owner_node(options_.bootstrap.node_name());
    absl::StatusOr<config::LunDefinition> stored = StoreRecord(mine);
    if (!stored.ok()) return stored.status();
    SetOwner(lun.id(), stored->owner_node());
    if (store != nullptr && stores_.count(lun.id()) == 0) {
      if (options_.wrap_store) store = options_.wrap_store(*stored, store);
      Online(*stored, std::move(store));
    }
    LOG(WARNING) << "HA: LUN " << lun.id() << " '" << lun.name()
                 << "' taken over from " << lun.owner_node()
                 << (stores_.count(lun.id()) ? "" : " (kept offline)");
  }
  InventoryChanged();
  return absl::OkStatus();
}

absl::Status Node::HandOver(uint64_t id, const std::string& to) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("node is shutting down");
    absl::StatusOr<config::LunDefinition> lun = db_->GetLun(id);
    if (!lun.ok()) return lun.status();
    Offline(id);
    lun->set_owner_node(to);
    absl::StatusOr<config::LunDefinition> stored = StoreRecord(*lun);
    if (!stored.ok()) return stored.status();
    SetOwner(id, to);
    LOG(WARNING) << "HA: LUN " << id << " '" << lun->name() << "' given back to "
                 << to;
  }
  InventoryChanged();
  return absl::OkStatus();
}

}  // namespace appliance::daemon
