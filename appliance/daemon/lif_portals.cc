#include "appliance/daemon/lif_portals.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace appliance::daemon {

iscsi::PortalConfig PortalConfigOf(const config::Lif& lif) {
  iscsi::PortalConfig portal;
  portal.address = lif.address();
  portal.port = static_cast<uint16_t>(lif.port());
  portal.portal_group_tag = static_cast<uint16_t>(lif.target_portal_group());
  portal.relative_target_port_id =
      static_cast<uint16_t>(lif.relative_target_port_id());
  portal.target_port_group = static_cast<uint16_t>(lif.target_portal_group());
  return portal;
}

LifPortals::LifPortals(Options options, iscsi::Server& server,
                       const LifView& lifs)
    : options_(std::move(options)), server_(server), lifs_(lifs) {}

LifPortals::~LifPortals() { Stop(); }

absl::Status LifPortals::Start() {
  absl::Status first_error;
  {
    absl::MutexLock pass(&reconcile_mu_);
    (void)Reconcile(&first_error);
  }
  if (!first_error.ok()) return first_error;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void LifPortals::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LifPortals::SetSuspended(bool suspended) {
  absl::MutexLock lock(&mu_);
  if (suspended_ == suspended) return;
  LOG(WARNING) << (suspended ? "HA: this node stops hosting LIFs (fenced)"
                             : "HA: this node hosts its LIFs again");
  suspended_ = suspended;
  dirty_ = true;
}

bool LifPortals::suspended() const {
  absl::MutexLock lock(&mu_);
  return suspended_;
}

void LifPortals::LifMoved(const config::Lif& lif) {
  // The initiators' view changes on both nodes: ALUA states first, then the
  // portal moves.
  if (options_.placement_changed) options_.placement_changed();
  absl::MutexLock lock(&mu_);
  dirty_ = true;
}

std::string LifPortals::HostedText() const {
  absl::MutexLock lock(&mu_);
  std::string text;
  for (const auto& [tag, hosted] : hosted_) {
    if (hosted.listening) {
      absl::StrAppend(&text, hosted.address, ":", hosted.bound_port, "\n");
    }
  }
  return text;
}

void LifPortals::Loop() {
  absl::Time next_retry = absl::InfiniteFuture();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || dirty_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_retry);
      if (stopping_) return;
      dirty_ = false;
    }
    absl::MutexLock pass(&reconcile_mu_);
    next_retry = Reconcile(nullptr);
  }
}

absl::Time LifPortals::Reconcile(absl::Status* first_error) {
  absl::Time next_retry = absl::InfiniteFuture();
  bool changed = false;
  for (const config::Lif& lif : lifs_.Lifs()) {
    const iscsi::PortalConfig portal = PortalConfigOf(lif);
    const uint16_t tag = portal.portal_group_tag;
    Hosted state;
    bool suspended = false;
    {
      absl::MutexLock lock(&mu_);
      state = hosted_[tag];
      suspended = suspended_;
    }
    const bool wanted = lif.current_node() == options_.node_name && !suspended;
    const absl::Time now = absl::Now();
    if (!wanted) {
      if (state.listening) {
        // Ask the sessions to leave before the listener goes, so a reconnect
        // finds the new host rather than this one.
        server_.RequestLogout(tag, options_.logout_seconds);
        absl::Status removed = server_.RemovePortal(tag, false);
        LOG(INFO) << "LIF " << lif.name() << " left for " << lif.current_node()
                  << ": logout requested, portal " << lif.address() << ":"
                  << state.bound_port << " closed"
                  << (removed.ok() ? "" : absl::StrCat(" (", removed.message(), ")"));
        changed = true;
      }
      state = Hosted();
    } else if (!state.listening) {
      if (state.failed_binds == 0) state.wanted_since = now;
      if (now < state.retry_at) {
        next_retry = std::min(next_retry, state.retry_at);
      } else {
        absl::StatusOr<const iscsi::Portal*> bound = server_.AddPortal(portal);
        if (bound.ok()) {
          state.listening = true;
          state.address = lif.address();
          state.bound_port = (*bound)->bound_port();
          LOG(INFO) << "LIF " << lif.name() << " hosted here: iSCSI portal "
                    << lif.address() << ":" << state.bound_port << ",tpgt "
                    << tag << " (rtpi " << lif.relative_target_port_id()
                    << ") after " << state.failed_binds << " failed binds, "
                    << absl::FormatDuration(now - state.wanted_since);
          state.failed_binds = 0;
          state.backoff = absl::ZeroDuration();
          changed = true;
        } else {
          if (first_error != nullptr && first_error->ok()) {
            *first_error = bound.status();
          }
          if (state.failed_binds++ % 20 == 0) {
            LOG(WARNING) << "LIF " << lif.name() << ": cannot bind yet ("
                         << bound.status() << "); retrying";
          }
          state.backoff = state.backoff == absl::ZeroDuration()
                              ? options_.first_retry
                              : std::min(2 * state.backoff, options_.max_retry);
          state.retry_at = now + state.backoff;
          next_retry = std::min(next_retry, state.retry_at);
        }
      }
    }
    absl::MutexLock lock(&mu_);
    hosted_[tag] = state;
  }
  if (changed && options_.hosted_changed) options_.hosted_changed(HostedText());
  return next_retry;
}

}  // namespace appliance::daemon
