// Configuration of the iSCSI target: which targets exist, where they can be
// reached (the portal directory SendTargets answers from), who may log in, and
// the limits of the protocol engine.
#ifndef TARGET_ISCSI_OPTIONS_H_
#define TARGET_ISCSI_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "target/iscsi/chap.h"
#include "target/iscsi/negotiation.h"

namespace iscsi {

// One network portal (a LIF): an address, its portal group and the SCSI
// target port identity commands arriving through it carry.
struct PortalConfig {
  // IPv4 or IPv6 literal, e.g. "127.0.0.1" or "::1".
  std::string address;
  // TCP port; 0 asks the kernel for a free one (tests). Default 3260.
  uint16_t port = 3260;
  // Target Portal Group Tag sent in logins and SendTargets. One group per LIF.
  uint16_t portal_group_tag = 1;
  // SCSI relative target port identifier of this port (>= 1).
  uint16_t relative_target_port_id = 1;
  // ALUA target port group the port belongs to.
  uint16_t target_port_group = 1;

  // "address:port,tpgt" as SendTargets and redirects spell it ([v6]:port,tpgt).
  std::string TargetAddress() const;
};

// Who may authenticate and how.
struct AuthConfig {
  // When true, AuthMethod=None is refused (login fails with 0x0201).
  bool require_chap = false;
  // CHAP credentials by InitiatorName. An initiator with an entry here is
  // offered CHAP even when require_chap is false.
  absl::flat_hash_map<std::string, ChapCredentials> chap_by_initiator;
};

// Login redirection (status class 1): for a target that currently lives
// elsewhere (e.g. while a LIF moves).
struct RedirectConfig {
  // "address:port,tpgt" given to the initiator as TargetAddress.
  std::string target_address;
  // false: 0x0101 moved temporarily; true: 0x0102 moved permanently.
  bool permanent = false;
};

struct TargetConfig {
  // iqn./eui./naa. name the initiator logs in to.
  std::string name;
  // TargetAlias sent in normal-session logins when not empty.
  std::string alias;
  // Initiator names allowed to log in (and to see the target in SendTargets).
  // Empty: everyone.
  std::vector<std::string> allowed_initiators;
  // Portal group tags through which the target is reachable. Empty: all.
  std::vector<uint16_t> portal_group_tags;
  AuthConfig auth;
  std::optional<RedirectConfig> redirect;

  bool AllowsInitiator(const std::string& initiator_name) const;
  bool ReachableThrough(uint16_t portal_group_tag) const;
};

// The targets and every portal they are reachable at, including portals this
// node does not listen on itself (the partner's LIFs). SendTargets answers
// from here. Thread-safe: LIFs move while sessions run.
class PortalDirectory {
 public:
  void UpsertTarget(TargetConfig target);
  void RemoveTarget(const std::string& name);
  // Adds or replaces (by portal_group_tag) an advertised portal.
  void UpsertPortal(const PortalConfig& portal);
  void RemovePortal(uint16_t portal_group_tag);

  std::optional<TargetConfig> FindTarget(const std::string& name) const;
  std::optional<PortalConfig> FindPortal(uint16_t portal_group_tag) const;
  std::vector<TargetConfig> Targets() const;
  // Portals target_name is reachable at, in portal_group_tag order.
  std::vector<PortalConfig> PortalsOf(const TargetConfig& target) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<TargetConfig> targets_ ABSL_GUARDED_BY(mu_);
  std::vector<PortalConfig> portals_ ABSL_GUARDED_BY(mu_);
};

// Limits and behaviour of the protocol engine (the whole node).
struct TargetOptions {
  // Operational key preferences and bounds (see NegotiationOptions).
  NegotiationOptions negotiation;
  // Authentication for discovery sessions (SessionType=Discovery).
  AuthConfig discovery_auth;
  // Commands a session may have outstanding: the CmdSN window
  // (MaxCmdSN = ExpCmdSN + free slots - 1). Default 128.
  uint32_t queue_depth = 128;
  // Immediate commands (I bit) a session may have outstanding beyond the window.
  uint32_t max_immediate_commands = 16;
  // Limits across the node; logins beyond them fail with 0x0302 (out of
  // resources). Connections beyond max_connections are closed at accept.
  uint32_t max_sessions = 1024;
  uint32_t max_connections = 2048;
  // Largest Expected Data Transfer Length accepted for a write (bytes of
  // data-out gathered before Submit). Larger writes get CHECK CONDITION.
  uint32_t max_data_out_length = 64 * 1024 * 1024;
  // Largest data-in a command may ask for (bounds memory per task).
  uint32_t max_data_in_length = 64 * 1024 * 1024;
  // Number of event-loop threads connections are spread over.
  int event_loop_threads = 2;
  // Send a NOP-In ping after this long without traffic from the initiator;
  // drop the connection if it is not answered within nop_in_timeout.
  // ZeroDuration() disables pings.
  absl::Duration nop_in_interval = absl::Seconds(30);
  absl::Duration nop_in_timeout = absl::Seconds(15);
  // A connection must complete login within this time.
  absl::Duration login_timeout = absl::Seconds(30);
  // Bytes of our CHAP challenges.
  size_t chap_challenge_length = 16;
};

absl::Status ValidateTargetConfig(const TargetConfig& target);

}  // namespace iscsi

#endif  // TARGET_ISCSI_OPTIONS_H_
