// LifPortals: keeps this node's iSCSI portals in step with where the pair's
// LIFs are hosted (LifManager).
//
// A LIF that leaves this node: its sessions get the iSCSI Async Message
// asking them to log out (initiators reconnect to the same address, which the
// new host then answers), and the portal stops listening; it stays in the
// SendTargets directory (every LIF of the pair is advertised on every LIF). A
// LIF that arrives: the portal is bound, retried with exponential backoff
// until the old host has released the address:port. The LIF keeps its relative
// target port id and portal group wherever it is.
//
// Every placement change also calls Options::placement_changed (the daemon
// raises ASYMMETRIC ACCESS STATE CHANGED there), whichever node moved the LIF.
#ifndef APPLIANCE_DAEMON_LIF_PORTALS_H_
#define APPLIANCE_DAEMON_LIF_PORTALS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/config/config.pb.h"
#include "appliance/daemon/lif_manager.h"
#include "target/iscsi/options.h"
#include "target/iscsi/server.h"

namespace appliance::daemon {

// The iSCSI portal of a LIF: its address and port, portal group tag = target
// port group = the LIF's portal group, its relative target port id.
iscsi::PortalConfig PortalConfigOf(const config::Lif& lif);

class LifPortals : public LifPlacementListener {
 public:
  struct Options {
    std::string node_name;
    // Parameter3 of the Async Message: seconds the initiator has to log out.
    uint16_t logout_seconds = 2;
    // Bind retries after a LIF arrived: first delay, doubling up to max.
    absl::Duration first_retry = absl::Milliseconds(10);
    absl::Duration max_retry = absl::Milliseconds(500);
    // Called on every placement change (from the thread that reports it).
    std::function<void()> placement_changed;
    // Called with HostedText() after the set of listening portals changed.
    std::function<void(const std::string&)> hosted_changed;
  };

  // server and lifs must outlive this object.
  LifPortals(Options options, iscsi::Server& server, const LifView& lifs);
  ~LifPortals() override;

  // Binds every LIF hosted here now (synchronously: fails when one cannot be
  // bound), then follows placement changes on a background thread.
  absl::Status Start();
  // Stops following changes (portals stay as they are). Idempotent.
  void Stop();

  // HA fencing: while suspended this node listens on no LIF (those it hosts
  // ask their sessions to log out and stop listening); unsuspended, it hosts
  // what the placements say again. May be called before Start().
  void SetSuspended(bool suspended);
  bool suspended() const;

  void LifMoved(const config::Lif& lif) override;

  // One "address:port" line per portal listening here (the bound port).
  std::string HostedText() const;

 private:
  struct Hosted {
    bool listening = false;
    std::string address;
    uint16_t bound_port = 0;
    int failed_binds = 0;
    absl::Duration backoff;
    absl::Time retry_at = absl::InfinitePast();
    absl::Time wanted_since;
  };
  // One pass over every LIF. Returns when the next bind retry is due
  // (InfiniteFuture: none); first_error gets the first bind failure.
  absl::Time Reconcile(absl::Status* first_error);
  void Loop();

  const Options options_;
  iscsi::Server& server_;
  const LifView& lifs_;

  mutable absl::Mutex mu_;
  std::map<uint16_t, Hosted> hosted_ ABSL_GUARDED_BY(mu_);  // by portal group
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool suspended_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Reconcile passes run one at a time (Start's, then the thread's).
  absl::Mutex reconcile_mu_;
  std::thread thread_;
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_LIF_PORTALS_H_
