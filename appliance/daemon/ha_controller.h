// HaController: takeover and giveback for one node of the pair
// (ARCHITECTURE.md §2 "Takeover"; seeds 000 and 004).
//
// It watches the failure detector (appliance/ha MailboxHeartbeat: the
// interconnect and the shared-storage mailbox) and acts:
//
//   partner dead (both links silent past the detection time), after it was
//   seen alive on both links since this node started
//     -> takeover: fence the partner in this node's mailbox, wait a grace
//        period (a partner that is alive but cut off stops serving on its own
//        by then), freeze the partner's NVLOG copy, check it (no gap, resync
//        complete), replay its committed unretired entries to the partner's
//        LUNs, become their owner (replicated), move the partner's LIFs onto
//        this node's ports, raise ASYMMETRIC ACCESS STATE CHANGED. Entries
//        held but never committed are dropped (never acknowledged). An
//        inconsistent copy keeps those LUNs offline (NOT READY, MANUAL
//        INTERVENTION REQUIRED) until an operator clears them.
//   this node fenced by the partner, or isolated (its own mailbox writes fail
//   while the interconnect is down)
//     -> stop serving: no LIF hosted, every command NOT READY / unavailable.
//        A node that starts fenced stays so (waiting for giveback).
//   in takeover and the partner back and waiting, for giveback_delay
//     -> giveback: drain the partner's LUNs (new commands get the ALUA
//        transition sense, writes in flight finish), flush and retire this
//        node's NVLOG, hand ownership and the partner's home LIFs back,
//        release the partner's NVLOG copy for its new session, clear the
//        fence.
// Planned takeover and manual giveback come through the REST endpoint.
//
// It is also the SCSI path's AccessGate (what a command gets while a state
// change is under way) and the mailbox's state source.
#ifndef APPLIANCE_DAEMON_HA_CONTROLLER_H_
#define APPLIANCE_DAEMON_HA_CONTROLLER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/config/replicator.h"
#include "appliance/daemon/lif_manager.h"
#include "appliance/daemon/lif_portals.h"
#include "appliance/daemon/node.h"
#include "appliance/ha/ha.pb.h"
#include "appliance/ha/mailbox_heartbeat.h"
#include "appliance/mgmt/ha_backend.h"
#include "appliance/nvlog/journal.h"
#include "appliance/nvlog/nvlog_replica.h"
#include "common/metrics.h"
#include "target/virtual_target/module.h"

namespace appliance::daemon {

class HaController : public virtual_target::AccessGate,
                     public mgmt::HaBackend {
 public:
  struct Options {
    std::string node_name;
    std::string partner_name;
    // Take over by itself when the partner is declared dead.
    bool auto_takeover = true;
    // Give back by itself once the partner has been back (alive on both
    // links, waiting for giveback) for giveback_delay; not after a planned
    // takeover (maintenance), which waits for a manual giveback.
    bool auto_giveback = true;
    absl::Duration giveback_delay = absl::Seconds(5);
    // After writing the fence and before serving the partner's LUNs.
    absl::Duration fence_grace = absl::Milliseconds(300);
    // Planned takeover: how long the partner has to stop serving.
    absl::Duration planned_timeout = absl::Seconds(10);
    // Giveback: how long writes in flight to a LUN may take to finish.
    absl::Duration drain_timeout = absl::Seconds(10);
    // How often the state is re-evaluated (also on every detector change).
    absl::Duration poll_interval = absl::Milliseconds(100);
  };

  // What the controller acts on; every pointer must outlive it.
  struct Parts {
    Node* node = nullptr;
    LifManager* lifs = nullptr;
    nvlog::NvlogReplica* partner_log = nullptr;
    nvlog::Journal* journal = nullptr;
    config::ConfigReplicator* replicator = nullptr;
    std::function<bool()> interconnect_up;
    // ASYMMETRIC ACCESS STATE CHANGED on every LU (engine).
    std::function<void()> access_changed;
  };

  HaController(Options options, Parts parts);
  ~HaController() override;

  // The mailbox heartbeat (created with state() as its state source) and the
  // portals; called once, before Start. Reads whether this node starts fenced
  // (then portals stay suspended) or in takeover (it kept fencing its
  // partner across a restart).
  void Attach(ha::MailboxHeartbeat* mailbox, LifPortals* portals);
  // Starts the evaluation thread.
  void Start();
  // Stops it (waits for an action under way). Idempotent.
  void Stop();

  ha::HaState state() const;
  absl::Status RegisterMetrics(metrics::MetricsRegistry& metrics);

  // virtual_target::AccessGate
  virtual_target::Access AccessFor(uint64_t lun) const override;

  // mgmt::HaBackend
  mgmt::HaStatus GetHaStatus() override;
  absl::StatusOr<mgmt::HaStatus> Takeover() override;
  absl::StatusOr<mgmt::HaStatus> Giveback() override;
  absl::StatusOr<mgmt::HaStatus> ClearOffline(
      const mgmt::HaClearOfflineRequest& request) override;
  absl::StatusOr<mgmt::HaStatus> SetMailboxFault(bool stopped) override;

 private:
  void Loop();
  void Evaluate();
  void SetState(ha::HaState state);
  // Stop / resume serving (fenced or isolated).
  void Fence(bool fenced);
  absl::Status DoTakeover(bool planned, const std::string& reason);
  absl::Status DoGiveback(bool automatic);
  bool PartnerWaitingForGiveback() const;

  const Options options_;
  const Parts parts_;
  ha::MailboxHeartbeat* mailbox_ = nullptr;
  LifPortals* portals_ = nullptr;

  // Serializes takeover, giveback, fencing and clear-offline.
  absl::Mutex action_mu_;

  mutable absl::Mutex mu_;
  ha::HaState state_ ABSL_GUARDED_BY(mu_) = ha::HA_ACTIVE;
  bool fenced_ ABSL_GUARDED_BY(mu_) = false;  // this node serves nothing
  // LUNs answering "transitioning" (takeover/giveback under way).
  std::set<uint64_t> transitioning_ ABSL_GUARDED_BY(mu_);
  // LUNs taken over and kept offline, with the reason.
  std::map<uint64_t, std::string> offline_ ABSL_GUARDED_BY(mu_);
  uint64_t fence_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // The partner was alive on both links at least once since this node
  // started (automatic takeover needs it).
  bool partner_seen_alive_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time partner_waiting_since_ ABSL_GUARDED_BY(mu_) =
      absl::InfiniteFuture();
  uint64_t takeovers_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t givebacks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t replayed_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_total_ ABSL_GUARDED_BY(mu_) = 0;
  mgmt::TakeoverReport last_takeover_ ABSL_GUARDED_BY(mu_);
  mgmt::GivebackReport last_giveback_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_HA_CONTROLLER_H_
