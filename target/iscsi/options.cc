#include "target/iscsi/options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace iscsi {

std::string PortalConfig::TargetAddress() const {
  const bool v6 = address.find(':') != std::string::npos;
  return v6 ? absl::StrCat("[", address, "]:", port, ",", portal_group_tag)
            : absl::StrCat(address, ":", port, ",", portal_group_tag);
}

bool TargetConfig::AllowsInitiator(const std::string& initiator_name) const {
  return allowed_initiators.empty() ||
         std::find(allowed_initiators.begin(), allowed_initiators.end(),
                   initiator_name) != allowed_initiators.end();
}

bool TargetConfig::ReachableThrough(uint16_t tag) const {
  return portal_group_tags.empty() ||
         std::find(portal_group_tags.begin(), portal_group_tags.end(), tag) !=
             portal_group_tags.end();
}

absl::Status ValidateTargetConfig(const TargetConfig& target) {
  if (target.name.empty() || target.name.size() > 223) {
    return absl::InvalidArgumentError("target name must be 1..223 bytes");
  }
  for (const auto& [initiator, creds] : target.auth.chap_by_initiator) {
    if (creds.target && creds.target->secret == creds.initiator.secret) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mutual CHAP for ", initiator,
          " uses the same secret in both directions (RFC 7143 §12.1.3)"));
    }
  }
  return absl::OkStatus();
}

void PortalDirectory::UpsertTarget(TargetConfig target) {
  absl::MutexLock lock(&mu_);
  for (auto& t : targets_) {
    if (t.name == target.name) {
      t = std::move(target);
      return;
    }
  }
  targets_.push_back(std::move(target));
}

void PortalDirectory::RemoveTarget(const std::string& name) {
  absl::MutexLock lock(&mu_);
  targets_.erase(std::remove_if(targets_.begin(), targets_.end(),
                                [&](const TargetConfig& t) { return t.name == name; }),
                 targets_.end());
}

void PortalDirectory::UpsertPortal(const PortalConfig& portal) {
  absl::MutexLock lock(&mu_);
  for (auto& p : portals_) {
    if (p.portal_group_tag == portal.portal_group_tag) {
      p = portal;
      return;
    }
  }
  portals_.push_back(portal);
  std::sort(portals_.begin(), portals_.end(),
            [](const PortalConfig& a, const PortalConfig& b) {
              return a.portal_group_tag < b.portal_group_tag;
            });
}

void PortalDirectory::RemovePortal(uint16_t tag) {
  absl::MutexLock lock(&mu_);
  portals_.erase(std::remove_if(portals_.begin(), portals_.end(),
                                [&](const PortalConfig& p) {
                                  return p.portal_group_tag == tag;
                                }),
                 portals_.end());
}

std::optional<TargetConfig> PortalDirectory::FindTarget(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  for (const auto& t : targets_) {
    if (t.name == name) return t;
  }
  return std::nullopt;
}

std::optional<PortalConfig> PortalDirectory::FindPortal(uint16_t tag) const {
  absl::MutexLock lock(&mu_);
  for (const auto& p : portals_) {
    if (p.portal_group_tag == tag) return p;
  }
  return std::nullopt;
}

std::vector<TargetConfig> PortalDirectory::Targets() const {
  absl::MutexLock lock(&mu_);
  return targets_;
}

std::vector<PortalConfig> PortalDirectory::PortalsOf(const TargetConfig& target) const {
  absl::MutexLock lock(&mu_);
  std::vector<PortalConfig> out;
  for (const auto& p : portals_) {
    if (target.ReachableThrough(p.portal_group_tag)) out.push_back(p);
  }
  return out;
}

}  // namespace iscsi
