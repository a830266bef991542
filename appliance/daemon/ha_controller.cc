#include "appliance/daemon/ha_controller.h"

#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "appliance/nvlog/replay.h"
#include "glog/logging.h"

namespace appliance::daemon {
namespace {

std::string StateName(ha::HaState state) {
  switch (state) {
    case ha::HA_ACTIVE: return "active";
    case ha::HA_STANDBY: return "standby";
    case ha::HA_FAILED: return "failed";
    case ha::HA_RECOVERED: return "recovered";
    case ha::HA_TAKEOVER_IN_PROGRESS: return "takeover_in_progress";
    case ha::HA_IN_TAKEOVER: return "in_takeover";
    case ha::HA_GIVEBACK_IN_PROGRESS: return "giveback_in_progress";
    case ha::HA_WAITING_FOR_GIVEBACK: return "waiting_for_giveback";
    default: return "unknown";
  }
}

std::string VerdictName(ha::PartnerVerdict verdict) {
  switch (verdict) {
    case ha::PartnerVerdict::kAlive: return "alive";
    case ha::PartnerVerdict::kInterconnectLost: return "interconnect_lost";
    case ha::PartnerVerdict::kMailboxLost: return "mailbox_lost";
    case ha::PartnerVerdict::kDead: return "dead";
    case ha::PartnerVerdict::kUnknown: break;
  }
  return "unknown";
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

}  // namespace

HaController::HaController(Options options, Parts parts)
    : options_(std::move(options)), parts_(std::move(parts)) {}

HaController::~HaController() { Stop(); }

void HaController::Attach(ha::MailboxHeartbeat* mailbox, LifPortals* portals) {
  mailbox_ = mailbox;
  portals_ = portals;
  // A survivor that restarts while fencing its partner is still in takeover.
  if (mailbox_->fence().has_value()) {
    absl::MutexLock l(&mu_);
    state_ = ha::HA_IN_TAKEOVER;
    fence_epoch_ = mailbox_->fence()->epoch();
    LOG(WARNING) << "HA: restarted while fencing " << options_.partner_name
                 << ": in takeover";
  }
  // A node the partner fences does not serve until giveback, restart or not.
  absl::StatusOr<ha::MailboxRecord> partner = mailbox_->mailbox().ReadPartner();
  if (partner.ok() && partner->has_fence() &&
      partner->fence().fenced_node() == options_.node_name) {
    LOG(WARNING) << "HA: fenced by " << options_.partner_name << " ("
                 << partner->fence().reason()
                 << "): not serving until giveback";
    portals_->SetSuspended(true);
    absl::MutexLock l(&mu_);
    fenced_ = true;
    state_ = ha::HA_WAITING_FOR_GIVEBACK;
  }
  mailbox_->AddListener([this] {
    absl::MutexLock l(&mu_);
    wake_ = true;
  });
}

void HaController::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void HaController::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

ha::HaState HaController::state() const {
  absl::MutexLock l(&mu_);
  return state_;
}

void HaController::SetState(ha::HaState state) {
  absl::MutexLock l(&mu_);
  if (state_ != state) {
    LOG(WARNING) << "HA: " << StateName(state_) << " -> " << StateName(state);
  }
  state_ = state;
}

void HaController::Loop() {
  while (true) {
    {
      absl::MutexLock l(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || wake_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), options_.poll_interval);
      if (stopping_) return;
      wake_ = false;
    }
    Evaluate();
  }
}

bool HaController::PartnerWaitingForGiveback() const {
  std::optional<ha::MailboxRecord> partner = mailbox_->partner_record();
  return partner.has_value() && !partner->shutting_down() &&
         partner->state() == ha::HA_WAITING_FOR_GIVEBACK &&
         mailbox_->verdict() == ha::PartnerVerdict::kAlive;
}

void HaController::Evaluate() {
  absl::MutexLock action(&action_mu_);
  const std::optional<ha::Fence> fenced_by = mailbox_->fenced_by_partner();
  const bool isolated = mailbox_->self_isolated();
  const ha::PartnerVerdict verdict = mailbox_->verdict();
  bool partner_seen_alive = false;
  {
    absl::MutexLock l(&mu_);
    if (verdict == ha::PartnerVerdict::kAlive) partner_seen_alive_ = true;
    partner_seen_alive = partner_seen_alive_;
  }
  switch (state()) {
    case ha::HA_ACTIVE:
      if (fenced_by.has_value()) {
        LOG(WARNING) << "HA: fenced by " << options_.partner_name << " ("
                     << fenced_by->reason() << ")";
        Fence(true);
        SetState(ha::HA_WAITING_FOR_GIVEBACK);
      } else if (isolated) {
        LOG(WARNING) << "HA: isolated (own mailbox writes failing, "
                        "interconnect down): stop serving";
        Fence(true);
        SetState(ha::HA_STANDBY);
      } else if (verdict == ha::PartnerVerdict::kDead &&
                 options_.auto_takeover && partner_seen_alive) {
        // Only a partner seen up on both links since this node started:
        // one that never came up (a pair starting, one node slower) has
        // served nothing and mirrored nothing here.
        absl::Status s = DoTakeover(
            false, "partner dead: interconnect and mailbox silent");
        if (!s.ok()) LOG(ERROR) << "HA: takeover failed: " << s;
      }
      return;
    case ha::HA_STANDBY:
      if (fenced_by.has_value()) {
        SetState(ha::HA_WAITING_FOR_GIVEBACK);
      } else if (!isolated) {
        Fence(false);
        SetState(ha::HA_ACTIVE);
      }
      return;
    case ha::HA_WAITING_FOR_GIVEBACK:
      // The partner cleared its fence: giveback is done.
      if (!fenced_by.has_value() && mailbox_->partner_record().has_value() &&
          !isolated) {
        Fence(false);
        SetState(ha::HA_ACTIVE);
      }
      return;
    case ha::HA_IN_TAKEOVER: {
      // A planned takeover (maintenance) waits for a manual giveback.
      const bool waiting = options_.auto_giveback &&
                           PartnerWaitingForGiveback() &&
                           parts_.interconnect_up();
      absl::Time since;
      {
        absl::MutexLock l(&mu_);
        if (last_takeover_.planned()) return;
        if (!waiting) {
          partner_waiting_since_ = absl::InfiniteFuture();
          return;
        }
        if (partner_waiting_since_ == absl::InfiniteFuture()) {
          partner_waiting_since_ = absl::Now();
        }
        since = partner_waiting_since_;
      }
      if (absl::Now() - since >= options_.giveback_delay) {
        absl::Status s = DoGiveback(true);
        if (!s.ok()) LOG(ERROR) << "HA: automatic giveback failed: " << s;
      }
      return;
    }
    default:
      return;
  }
}

void HaController::Fence(bool fenced) {
  portals_->SetSuspended(fenced);
  {
    absl::MutexLock l(&mu_);
    fenced_ = fenced;
  }
  if (parts_.access_changed) parts_.access_changed();
}

absl::Status HaController::DoTakeover(bool planned, const std::string& reason) {
  if (state() != ha::HA_ACTIVE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "takeover needs state active, this node is ", StateName(state())));
  }
  const absl::Time started = absl::Now();
  const std::string& partner = options_.partner_name;
  std::vector<config::LunDefinition> luns = parts_.node->LunsOwnedBy(partner);
  ha::Fence fence;
  {
    absl::MutexLock l(&mu_);
    state_ = ha::HA_TAKEOVER_IN_PROGRESS;
    for (const config::LunDefinition& lun : luns) transitioning_.insert(lun.id());
    fence.set_epoch(++fence_epoch_);
  }
  LOG(WARNING) << "HA: takeover of " << partner << " (" << reason << "), "
               << luns.size() << " LUNs";
  if (parts_.access_changed) parts_.access_changed();
  fence.set_fenced_node(partner);
  fence.set_reason(reason);
  fence.set_since_unix_micros(absl::ToUnixMicros(started));
  mailbox_->SetFence(fence);

  if (planned) {
    // The partner reads the fence and stops serving; its state says so.
    const absl::Time deadline = absl::Now() + options_.planned_timeout;
    while (true) {
      std::optional<ha::MailboxRecord> p = mailbox_->partner_record();
      if (mailbox_->verdict() == ha::PartnerVerdict::kDead ||
          (p.has_value() && (p->state() == ha::HA_WAITING_FOR_GIVEBACK))) {
        break;
      }
      if (absl::Now() > deadline) {
        mailbox_->SetFence(std::nullopt);
        absl::MutexLock l(&mu_);
        state_ = ha::HA_ACTIVE;
        transitioning_.clear();
        return absl::UnavailableError(absl::StrCat(
            "partner ", partner, " did not stop serving within ",
            absl::FormatDuration(options_.planned_timeout),
            "; takeover abandoned"));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  // A partner that is alive but cut off has stopped serving by now (it
  // isolates itself before our detection time ran out, or reads the fence).
  absl::SleepFor(options_.fence_grace);

  // The partner's NVLOG copy: frozen, checked, replayed.
  nvlog::NvlogReplica& log = *parts_.partner_log;
  log.Freeze();
  absl::Status consistency = log.CheckConsistency();
  std::vector<nvlog::NvlogEntry> held = log.Held();
  std::map<uint64_t, std::shared_ptr<blockstore::BlockStore>> stores;
  std::map<uint64_t, std::string> problems;
  mgmt::TakeoverReport report;
  report.set_partner(partner);
  report.set_reason(reason);
  report.set_planned(planned);
  report.set_started_unix_micros(absl::ToUnixMicros(started));
  uint64_t uncommitted = 0;
  for (const nvlog::NvlogEntry& e : held) {
    if (!e.committed && !e.retired) uncommitted++;
  }
  if (consistency.ok()) {
    for (const config::LunDefinition& lun : luns) {
      absl::StatusOr<std::shared_ptr<blockstore::BlockStore>> store =
          parts_.node->OpenForReplay(lun);
      if (store.ok()) {
        stores[lun.id()] = *store;
      } else {
        problems[lun.id()] = absl::StrCat("cannot open backing store: ",
                                          store.status().message());
      }
    }
    absl::StatusOr<nvlog::ReplayStats> replayed = nvlog::Replay(
        held, [&stores](uint64_t lun) -> blockstore::BlockStore* {
          auto it = stores.find(lun);
          return it == stores.end() ? nullptr : it->second.get();
        });
    if (replayed.ok()) {
      report.set_replayed_entries(replayed->written);
      report.set_dropped_uncommitted(replayed->dropped_uncommitted);
    } else {
      consistency = absl::DataLossError(absl::StrCat(
          "replay of the partner's NVLOG failed: ", replayed.status().message()));
    }
  }
  report.set_log_consistent(consistency.ok());
  if (!consistency.ok()) {
    report.set_log_problem(std::string(consistency.message()));
    report.set_dropped_uncommitted(uncommitted);
    LOG(ERROR) << "HA: partner's NVLOG cannot be trusted (" << consistency
               << "): its LUNs stay offline until an operator clears them";
    for (const config::LunDefinition& lun : luns) {
      problems[lun.id()] = absl::StrCat(
          "taken over with an inconsistent NVLOG copy: ", consistency.message());
    }
    stores.clear();
  }
  for (const config::LunDefinition& lun : luns) {
    auto it = stores.find(lun.id());
    std::shared_ptr<blockstore::BlockStore> store =
        problems.count(lun.id()) || it == stores.end() ? nullptr : it->second;
    if (absl::Status s = parts_.node->AssumeOwnership(lun, store); !s.ok()) {
      problems[lun.id()] = absl::StrCat("ownership: ", s.message());
    }
    report.add_luns(lun.id());
  }
  for (const config::Lif& lif :
       parts_.lifs->MoveAll(partner, options_.node_name, false)) {
    report.add_lifs(lif.name());
  }
  log.Clear();  // replayed; stays frozen until giveback
  report.set_duration_micros(Micros(absl::Now() - started));
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, why] : problems) offline_[id] = why;
    transitioning_.clear();
    state_ = ha::HA_IN_TAKEOVER;
    takeovers_++;
    replayed_total_ += report.replayed_entries();
    dropped_total_ += report.dropped_uncommitted();
    partner_waiting_since_ = absl::InfiniteFuture();
    last_takeover_ = report;
  }
  if (parts_.access_changed) parts_.access_changed();
  LOG(WARNING) << "HA: takeover of " << partner << " done in "
               << absl::FormatDuration(absl::Now() - started) << ": "
               << report.replayed_entries() << " NVLOG entries replayed, "
               << report.dropped_uncommitted() << " uncommitted dropped, LUNs "
               << absl::StrJoin(report.luns(), ",") << ", LIFs "
               << absl::StrJoin(report.lifs(), ",");
  return absl::OkStatus();
}

absl::Status HaController::DoGiveback(bool automatic) {
  if (state() != ha::HA_IN_TAKEOVER) {
    return absl::FailedPreconditionError(absl::StrCat(
        "giveback needs state in_takeover, this node is ", StateName(state())));
  }
  const std::string& partner = options_.partner_name;
  if (!parts_.interconnect_up()) {
    return absl::FailedPreconditionError(
        absl::StrCat("partner ", partner, " is unreachable"));
  }
  if (!PartnerWaitingForGiveback()) {
    std::optional<ha::MailboxRecord> p = mailbox_->partner_record();
    return absl::FailedPreconditionError(absl::StrCat(
        "partner ", partner, " is not waiting for giveback (its state: ",
        p.has_value() ? StateName(p->state()) : "unknown", ")"));
  }
  const absl::Time started = absl::Now();
  std::vector<config::LunDefinition> luns;
  for (config::LunDefinition& lun : parts_.node->LunsOwnedBy(options_.node_name)) {
    if (lun.home_node() == partner) luns.push_back(std::move(lun));
  }
  {
    absl::MutexLock l(&mu_);
    state_ = ha::HA_GIVEBACK_IN_PROGRESS;
    for (const config::LunDefinition& lun : luns) transitioning_.insert(lun.id());
  }
  LOG(WARNING) << "HA: giveback to " << partner << " (" << luns.size()
               << " LUNs)";
  if (parts_.access_changed) parts_.access_changed();
  // New commands now get the transition sense; let the writes in flight
  // finish, make everything durable and retired, then hand over.
  for (const config::LunDefinition& lun : luns) {
    if (!parts_.journal->WaitIdle(lun.id(), options_.drain_timeout)) {
      LOG(WARNING) << "HA: writes to LUN " << lun.id()
                   << " still in flight after "
                   << absl::FormatDuration(options_.drain_timeout);
    }
  }
  if (absl::Status s = parts_.journal->RetireAll(); !s.ok()) {
    absl::MutexLock l(&mu_);
    state_ = ha::HA_IN_TAKEOVER;
    transitioning_.clear();
    return absl::Status(s.code(), absl::StrCat("giveback abandoned: flush: ",
                                               s.message()));
  }
  mgmt::GivebackReport report;
  report.set_partner(partner);
  report.set_automatic(automatic);
  report.set_started_unix_micros(absl::ToUnixMicros(started));
  for (const config::LunDefinition& lun : luns) {
    if (absl::Status s = parts_.node->HandOver(lun.id(), partner); !s.ok()) {
      LOG(ERROR) << "HA: LUN " << lun.id() << " not handed over: " << s;
      continue;
    }
    report.add_luns(lun.id());
  }
  for (const config::Lif& lif :
       parts_.lifs->MoveAll(options_.node_name, partner, true)) {
    report.add_lifs(lif.name());
  }
  if (parts_.replicator != nullptr &&
      !parts_.replicator->WaitClean(absl::Seconds(5))) {
    LOG(WARNING) << "HA: giveback: configuration not yet on " << partner;
  }
  // The partner mirrors into a fresh copy from its next session on.
  parts_.partner_log->Clear();
  parts_.partner_log->Thaw();
  mailbox_->SetFence(std::nullopt);
  report.set_duration_micros(Micros(absl::Now() - started));
  {
    absl::MutexLock l(&mu_);
    for (const config::LunDefinition& lun : luns) offline_.erase(lun.id());
    transitioning_.clear();
    state_ = ha::HA_ACTIVE;
    givebacks_++;
    last_giveback_ = report;
  }
  if (parts_.access_changed) parts_.access_changed();
  LOG(WARNING) << "HA: giveback to " << partner << " done in "
               << absl::FormatDuration(absl::Now() - started);
  return absl::OkStatus();
}

virtual_target::Access HaController::AccessFor(uint64_t lun) const {
  absl::ReaderMutexLock l(&mu_);
  if (fenced_) return virtual_target::Access::kUnavailable;
  if (transitioning_.count(lun) != 0) {
    return virtual_target::Access::kTransitioning;
  }
  if (offline_.count(lun) != 0) return virtual_target::Access::kNeedsOperator;
  return virtual_target::Access::kServe;
}

mgmt::HaStatus HaController::GetHaStatus() {
  mgmt::HaStatus status;
  status.set_node_name(options_.node_name);
  status.set_partner_name(options_.partner_name);
  const ha::PartnerVerdict verdict = mailbox_->verdict();
  status.set_partner_verdict(VerdictName(verdict));
  status.set_interconnect_up(parts_.interconnect_up());
  status.set_mailbox_writes_stopped(mailbox_->writes_stopped());
  status.set_self_isolated(mailbox_->self_isolated());
  if (std::optional<ha::Fence> f = mailbox_->fenced_by_partner()) {
    status.set_fenced_by(options_.partner_name);
  }
  status.set_fencing_partner(mailbox_->fence().has_value());
  status.set_takeover_possible(parts_.journal->log().mirrored());
  status.set_unmirrored_writes(parts_.journal->stats().unmirrored_writes);
  // Served: owned, online and not refused by the gate (a fenced node serves
  // nothing even while its stale configuration still names it the owner).
  for (const config::LunDefinition& lun :
       parts_.node->LunsOwnedBy(options_.node_name)) {
    if (parts_.node->store(lun.id()) != nullptr &&
        AccessFor(lun.id()) == virtual_target::Access::kServe) {
      status.add_luns_served(lun.id());
    }
  }
  status.set_auto_giveback(options_.auto_giveback);
  status.set_giveback_delay_ms(absl::ToInt64Milliseconds(options_.giveback_delay));
  status.set_detection_time_ms(absl::ToInt64Milliseconds(
      mailbox_->options().detector.detection_time));
  std::optional<ha::MailboxRecord> partner = mailbox_->partner_record();
  absl::MutexLock l(&mu_);
  status.set_state(StateName(state_));
  if (verdict == ha::PartnerVerdict::kDead) {
    status.set_partner_state("failed");
  } else if (partner.has_value()) {
    status.set_partner_state(
        state_ == ha::HA_IN_TAKEOVER &&
                partner->state() == ha::HA_WAITING_FOR_GIVEBACK
            ? "recovered"
            : StateName(partner->state()));
  } else {
    status.set_partner_state("unknown");
  }
  for (const auto& [id, why] : offline_) {
    mgmt::HaOfflineLun* o = status.add_offline_luns();
    o->set_id(id);
    o->set_reason(why);
  }
  status.set_takeovers(takeovers_);
  status.set_givebacks(givebacks_);
  *status.mutable_last_takeover() = last_takeover_;
  *status.mutable_last_giveback() = last_giveback_;
  return status;
}

absl::StatusOr<mgmt::HaStatus> HaController::Takeover() {
  {
    absl::MutexLock action(&action_mu_);
    if (!parts_.interconnect_up() &&
        mailbox_->verdict() != ha::PartnerVerdict::kDead) {
      return absl::FailedPreconditionError(
          "the interconnect is down but the partner's mailbox is alive: a "
          "planned takeover needs the partner to answer");
    }
    if (absl::Status s = DoTakeover(true, "planned takeover (management)");
        !s.ok()) {
      return s;
    }
  }
  return GetHaStatus();
}

absl::StatusOr<mgmt::HaStatus> HaController::Giveback() {
  {
    absl::MutexLock action(&action_mu_);
    if (absl::Status s = DoGiveback(false); !s.ok()) return s;
  }
  return GetHaStatus();
}

absl::StatusOr<mgmt::HaStatus> HaController::ClearOffline(
    const mgmt::HaClearOfflineRequest& request) {
  {
    absl::MutexLock action(&action_mu_);
    std::vector<uint64_t> ids;
    {
      absl::MutexLock l(&mu_);
      if (request.luns().empty()) {
        for (const auto& [id, why] : offline_) ids.push_back(id);
      } else {
        for (uint64_t id : request.luns()) {
          if (offline_.count(id) == 0) {
            return absl::NotFoundError(
                absl::StrCat("LUN ", id, " is not kept offline"));
          }
          ids.push_back(id);
        }
      }
    }
    for (uint64_t id : ids) {
      absl::StatusOr<config::LunDefinition> lun = parts_.node->GetLun(id);
      if (!lun.ok()) return lun.status();
      absl::StatusOr<std::shared_ptr<blockstore::BlockStore>> store =
          parts_.node->OpenForReplay(*lun);
      if (!store.ok()) return store.status();
      if (absl::Status s = parts_.node->AssumeOwnership(*lun, *store); !s.ok()) {
        return s;
      }
      LOG(WARNING) << "HA: operator cleared LUN " << id << ": online";
      absl::MutexLock l(&mu_);
      offline_.erase(id);
    }
  }
  if (parts_.access_changed) parts_.access_changed();
  return GetHaStatus();
}

absl::StatusOr<mgmt::HaStatus> HaController::SetMailboxFault(bool stopped) {
  LOG(WARNING) << "fault injection: mailbox writes "
               << (stopped ? "stopped" : "resumed");
  mailbox_->SetWritesStopped(stopped);
  return GetHaStatus();
}

absl::Status HaController::RegisterMetrics(metrics::MetricsRegistry& metrics) {
  const std::vector<std::tuple<std::string, std::string,
                               std::function<double()>>>
      gauges = {
          {"appliance_ha_state",
           "This node's HA state (appliance.ha.HaState number: 1 active, "
           "2 standby, 5 takeover in progress, 6 in takeover, 7 giveback in "
           "progress, 8 waiting for giveback)",
           [this] { return static_cast<double>(state()); }},
          {"appliance_ha_fenced", "1 while this node serves nothing (fenced)",
           [this] {
             absl::MutexLock l(&mu_);
             return fenced_ ? 1.0 : 0.0;
           }},
          {"appliance_ha_partner_dead",
           "1 while the failure detector declares the partner dead",
           [this] {
             return mailbox_->verdict() == ha::PartnerVerdict::kDead ? 1.0
                                                                     : 0.0;
           }},
          {"appliance_ha_takeovers_total", "Takeovers done by this node",
           [this] {
             absl::MutexLock l(&mu_);
             return static_cast<double>(takeovers_);
           }},
          {"appliance_ha_givebacks_total", "Givebacks done by this node",
           [this] {
             absl::MutexLock l(&mu_);
             return static_cast<double>(givebacks_);
           }},
          {"appliance_ha_replayed_entries_total",
           "Partner NVLOG entries replayed at takeovers",
           [this] {
             absl::MutexLock l(&mu_);
             return static_cast<double>(replayed_total_);
           }},
          {"appliance_ha_dropped_uncommitted_total",
           "Partner NVLOG entries dropped at takeovers (never acknowledged)",
           [this] {
             absl::MutexLock l(&mu_);
             return static_cast<double>(dropped_total_);
           }},
          {"appliance_ha_offline_luns",
           "LUNs taken over and kept offline until an operator clears them",
           [this] {
             absl::MutexLock l(&mu_);
             return static_cast<double>(offline_.size());
           }}};
  for (const auto& [name, help, read] : gauges) {
    if (absl::Status s = metrics.AddCallbackGauge(name, help, read); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace appliance::daemon
