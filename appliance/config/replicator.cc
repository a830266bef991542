#include "appliance/config/replicator.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"

namespace appliance::config {
namespace {

// Deterministic order for records with equal revisions (both nodes must pick
// the same winner): a deletion beats a definition, else the larger encoding.
bool Beats(const ConfigRecord& incoming,
           const std::optional<LunDefinition>& current_def) {
  if (incoming.has_deleted()) return current_def.has_value();
  if (!current_def.has_value()) return false;  // equal-revision tombstone wins
  return incoming.lun().SerializeAsString() > current_def->SerializeAsString();
}

// The same tie-break for LIF placements: the larger encoding wins.
bool Beats(const LifPlacement& incoming,
           const std::optional<LifPlacement>& current) {
  if (!current.has_value()) return true;
  LifPlacement a = incoming, b = *current;
  a.set_revision(0);
  b.set_revision(0);
  return a.SerializeAsString() > b.SerializeAsString();
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

}  // namespace

ConfigReplicator::ConfigReplicator(std::shared_ptr<ConfigDb> db,
                                   ReplicatorOptions options)
    : db_(std::move(db)), options_(std::move(options)) {}

ConfigReplicator::~ConfigReplicator() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (pusher_.joinable()) pusher_.join();
}

void ConfigReplicator::SetListener(ReplicationListener* listener) {
  absl::MutexLock lock(&apply_mu_);
  listener_ = listener;
}

void ConfigReplicator::SetPartnerChannel(std::shared_ptr<grpc::Channel> channel) {
  absl::MutexLock lock(&mu_);
  channel_ = std::move(channel);
  dirty_ = true;
  if (!pusher_.joinable()) pusher_ = std::thread([this] { PushLoop(); });
}

uint64_t ConfigReplicator::NextRevision() {
  const uint64_t now = static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  last_revision_ = std::max(now, last_revision_ + 1);
  return last_revision_;
}

absl::StatusOr<std::pair<uint64_t, std::optional<LunDefinition>>>
ConfigReplicator::Current(uint64_t id) const {
  uint64_t revision = 0;
  std::optional<LunDefinition> def;
  absl::StatusOr<LunDefinition> lun = db_->GetLun(id);
  if (lun.ok()) {
    revision = lun->revision();
    def = *std::move(lun);
  } else if (lun.status().code() != absl::StatusCode::kNotFound) {
    return lun.status();
  }
  absl::StatusOr<std::optional<LunTombstone>> tomb = db_->GetTombstone(id);
  if (!tomb.ok()) return tomb.status();
  if (tomb->has_value()) revision = std::max(revision, (*tomb)->revision());
  return std::make_pair(revision, std::move(def));
}

absl::StatusOr<LunDefinition> ConfigReplicator::CommitLun(LunDefinition lun) {
  ConfigRecord record;
  {
    absl::MutexLock apply(&apply_mu_);
    {
      absl::MutexLock lock(&mu_);
      lun.set_revision(NextRevision());
    }
    if (absl::Status s = db_->PutLun(lun); !s.ok()) return s;
  }
  record.set_lun_id(lun.id());
  record.set_revision(lun.revision());
  *record.mutable_lun() = lun;
  Enqueue(std::move(record));
  return lun;
}

absl::Status ConfigReplicator::CommitDelete(uint64_t id) {
  ConfigRecord record;
  {
    absl::MutexLock apply(&apply_mu_);
    absl::StatusOr<LunDefinition> lun = db_->GetLun(id);
    if (!lun.ok()) return lun.status();
    uint64_t revision;
    {
      absl::MutexLock lock(&mu_);
      revision = NextRevision();
    }
    if (absl::Status s = db_->DeleteLunWithTombstone(id, revision); !s.ok()) {
      return s;
    }
    record.set_revision(revision);
  }
  record.set_lun_id(id);
  record.set_deleted(true);
  Enqueue(std::move(record));
  return absl::OkStatus();
}

absl::StatusOr<LifPlacement> ConfigReplicator::CommitLifPlacement(
    LifPlacement placement) {
  if (placement.lif_name().empty() || placement.current_node().empty()) {
    return absl::InvalidArgumentError(
        "a LIF placement needs a LIF name and a node");
  }
  {
    absl::MutexLock apply(&apply_mu_);
    {
      absl::MutexLock lock(&mu_);
      placement.set_revision(NextRevision());
    }
    if (absl::Status s = db_->PutLifPlacement(placement); !s.ok()) return s;
  }
  ConfigRecord record;
  record.set_revision(placement.revision());
  *record.mutable_lif_placement() = placement;
  Enqueue(std::move(record));
  return placement;
}

absl::StatusOr<bool> ConfigReplicator::ApplyLifPlacement(
    const ConfigRecord& record) {
  const LifPlacement& incoming = record.lif_placement();
  if (incoming.lif_name().empty() || incoming.current_node().empty()) {
    return absl::InvalidArgumentError("malformed LIF placement record");
  }
  ReplicationListener* listener;
  {
    absl::MutexLock apply(&apply_mu_);
    {
      absl::MutexLock lock(&mu_);
      last_revision_ = std::max(last_revision_, record.revision());
    }
    absl::StatusOr<std::optional<LifPlacement>> current =
        db_->GetLifPlacement(incoming.lif_name());
    if (!current.ok()) return current.status();
    const uint64_t revision =
        current->has_value() ? (*current)->revision() : 0;
    const bool wins = record.revision() > revision ||
                      (record.revision() == revision && Beats(incoming, *current));
    if (!wins) return false;
    LifPlacement placement = incoming;
    placement.set_revision(record.revision());
    if (absl::Status s = db_->PutLifPlacement(placement); !s.ok()) return s;
    listener = listener_;
  }
  if (listener != nullptr) listener->LifPlacementChanged(incoming.lif_name());
  return true;
}

absl::StatusOr<bool> ConfigReplicator::Apply(const ConfigRecord& record) {
  if (record.revision() != 0 && record.has_lif_placement()) {
    return ApplyLifPlacement(record);
  }
  if (record.revision() == 0 ||
      (!record.has_lun() && !record.has_deleted()) ||
      (record.has_lun() && record.lun().id() != record.lun_id())) {
    return absl::InvalidArgumentError("malformed configuration record");
  }
  ReplicationListener* listener;
  {
    absl::MutexLock apply(&apply_mu_);
    {
      absl::MutexLock lock(&mu_);
      last_revision_ = std::max(last_revision_, record.revision());
    }
    absl::StatusOr<std::pair<uint64_t, std::optional<LunDefinition>>> current =
        Current(record.lun_id());
    if (!current.ok()) return current.status();
    const auto& [revision, def] = *current;
    const bool wins = record.revision() > revision ||
                      (record.revision() == revision && Beats(record, def));
    if (!wins) return false;
    if (record.has_deleted()) {
      if (absl::Status s =
              db_->DeleteLunWithTombstone(record.lun_id(), record.revision());
          !s.ok()) {
        return s;
      }
    } else {
      LunDefinition lun = record.lun();
      lun.set_revision(record.revision());
      if (absl::Status s = db_->PutLun(lun); !s.ok()) return s;
    }
    listener = listener_;
  }
  if (listener != nullptr) listener->LunChanged(record.lun_id());
  return true;
}

absl::StatusOr<ConfigSnapshot> ConfigReplicator::Snapshot() const {
  absl::MutexLock apply(&apply_mu_);
  ConfigSnapshot snapshot;
  snapshot.set_node_name(options_.node_name);
  absl::StatusOr<std::vector<LunDefinition>> luns = db_->ListLuns();
  if (!luns.ok()) return luns.status();
  for (LunDefinition& lun : *luns) {
    // Records written before replication existed carry no revision: they
    // travel as revision 1, which any later edit beats.
    if (lun.revision() == 0) lun.set_revision(1);
    ConfigRecord* r = snapshot.add_records();
    r->set_lun_id(lun.id());
    r->set_revision(lun.revision());
    *r->mutable_lun() = std::move(lun);
  }
  absl::StatusOr<std::vector<LunTombstone>> tombs = db_->ListTombstones();
  if (!tombs.ok()) return tombs.status();
  for (const LunTombstone& t : *tombs) {
    ConfigRecord* r = snapshot.add_records();
    r->set_lun_id(t.id());
    r->set_revision(t.revision());
    r->set_deleted(true);
  }
  absl::StatusOr<std::vector<LifPlacement>> placements =
      db_->ListLifPlacements();
  if (!placements.ok()) return placements.status();
  for (LifPlacement& p : *placements) {
    ConfigRecord* r = snapshot.add_records();
    r->set_revision(p.revision());
    *r->mutable_lif_placement() = std::move(p);
  }
  return snapshot;
}

absl::Status ConfigReplicator::Merge(const ConfigSnapshot& snapshot) {
  for (const ConfigRecord& record : snapshot.records()) {
    absl::StatusOr<bool> applied = Apply(record);
    if (!applied.ok()) {
      LOG(WARNING) << "replication: record for "
                   << (record.has_lif_placement()
                           ? "LIF " + record.lif_placement().lif_name()
                           : absl::StrCat("LUN ", record.lun_id()))
                   << " from " << snapshot.node_name()
                   << " ignored: " << applied.status();
    }
  }
  return absl::OkStatus();
}

void ConfigReplicator::Enqueue(ConfigRecord record) {
  absl::MutexLock lock(&mu_);
  if (channel_ == nullptr) {
    dirty_ = true;  // delivered by the first reconciliation
    return;
  }
  outbox_.push_back(std::move(record));
}

bool ConfigReplicator::dirty() const {
  absl::MutexLock lock(&mu_);
  return dirty_ || !outbox_.empty() || in_flight_ != 0;
}

bool ConfigReplicator::WaitClean(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](const ConfigReplicator* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
               self->mu_) { return !self->dirty_ && self->outbox_.empty() &&
                      self->in_flight_ == 0;
          },
          this),
      timeout);
}

void ConfigReplicator::PushLoop() {
  for (;;) {
    std::deque<ConfigRecord> batch;
    std::shared_ptr<grpc::Channel> channel;
    bool reconcile;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !outbox_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.reconcile_interval);
      if (stopping_) return;
      batch.swap(outbox_);
      in_flight_ = batch.size();
      channel = channel_;
      reconcile = dirty_;
    }
    // Whatever happens below, the batch is no longer in flight afterwards.
    struct InFlightDone {
      ConfigReplicator* self;
      ~InFlightDone() {
        absl::MutexLock lock(&self->mu_);
        self->in_flight_ = 0;
      }
    } in_flight_done{this};
    if (channel == nullptr) continue;
    std::unique_ptr<ConfigReplication::Stub> stub =
        ConfigReplication::NewStub(channel);
    bool failed = false;
    for (const ConfigRecord& record : batch) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
      PushReply reply;
      grpc::Status s = stub->Push(&context, record, &reply);
      if (!s.ok()) {
        failed = true;
        break;  // the rest travels with the next reconciliation
      }
    }
    if (failed) {
      absl::MutexLock lock(&mu_);
      dirty_ = true;
      continue;
    }
    if (!reconcile) continue;
    absl::StatusOr<ConfigSnapshot> mine = Snapshot();
    if (!mine.ok()) {
      LOG(ERROR) << "replication: snapshot failed: " << mine.status();
      continue;
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    ConfigSnapshot theirs;
    grpc::Status s = stub->Reconcile(&context, *mine, &theirs);
    if (!s.ok()) continue;  // still dirty; retried after reconcile_interval
    (void)Merge(theirs);
    LOG(INFO) << "replication: reconciled with " << theirs.node_name() << " ("
              << theirs.records_size() << " records)";
    absl::MutexLock lock(&mu_);
    dirty_ = false;
  }
}

grpc::Status ConfigReplicator::Push(grpc::ServerContext* context,
                                    const ConfigRecord* request,
                                    PushReply* reply) {
  absl::StatusOr<bool> applied = Apply(*request);
  if (!applied.ok()) return ToGrpc(applied.status());
  reply->set_applied(*applied);
  return grpc::Status::OK;
}

grpc::Status ConfigReplicator::Reconcile(grpc::ServerContext* context,
                                         const ConfigSnapshot* request,
                                         ConfigSnapshot* reply) {
  if (absl::Status s = Merge(*request); !s.ok()) return ToGrpc(s);
  absl::StatusOr<ConfigSnapshot> mine = Snapshot();
  if (!mine.ok()) return ToGrpc(mine.status());
  *reply = *std::move(mine);
  return grpc::Status::OK;
}

}  // namespace appliance::config
