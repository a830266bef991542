// FakeBackend: an in-memory ManagementBackend for REST server and CLI tests.
// It validates requests like a real backend (name required and unique, size >
// 0 and a multiple of the block size, block size 512/4096, unique id) without
// sharing code with the server's own validation, and counts the calls so tests
// can assert that a rejected request never reached it.
#ifndef TESTS_MGMT_FAKE_BACKEND_H_
#define TESTS_MGMT_FAKE_BACKEND_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "appliance/mgmt/backend.h"

namespace appliance::mgmt::testing {

class FakeBackend : public ManagementBackend {
 public:
  static config::Lif MakeLif(const std::string& name, const std::string& address,
                             const std::string& node, uint32_t id) {
    config::Lif lif;
    lif.set_name(name);
    lif.set_address(address);
    lif.set_port(3260);
    lif.set_home_node(node);
    lif.set_home_port("e0a");
    lif.set_relative_target_port_id(id);
    lif.set_target_portal_group(id);
    lif.set_current_node(node);
    lif.set_current_port("e0a");
    return lif;
  }

  absl::StatusOr<NodeInfo> GetNode() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return absl::UnavailableError("node is taking over");
    NodeInfo node;
    node.set_node_name("node-a");
    node.set_partner_name("node-b");
    node.set_target_name("iqn.2026-11.com.example:appliance");
    node.set_state("active");
    node.set_version("test");
    node.set_uptime_seconds(42);
    config::Lif* lif = node.add_lifs();
    lif->set_name("lif-a1");
    lif->set_address("127.0.0.2");
    lif->set_home_node("node-a");
    lif->set_home_port("e0a");
    lif->set_relative_target_port_id(1);
    lif->set_target_portal_group(1);
    node.set_lun_count(luns_.size());
    return node;
  }

  absl::StatusOr<LunList> ListLuns() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return absl::UnavailableError("node is taking over");
    LunList list;
    for (const auto& [id, lun] : luns_) *list.add_luns() = lun;
    return list;
  }

  absl::StatusOr<config::LunDefinition> GetLun(uint64_t id) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return absl::UnavailableError("node is taking over");
    auto it = luns_.find(id);
    if (it == luns_.end()) return absl::NotFoundError(absl::StrCat("no LUN ", id));
    return it->second;
  }

  absl::StatusOr<config::LunDefinition> CreateLun(
      const CreateLunRequest& request) override {
    absl::MutexLock lock(&mu_);
    ++create_calls_;
    if (unavailable_) return absl::UnavailableError("node is taking over");
    const uint32_t block_size = request.block_size() == 0 ? 512 : request.block_size();
    if (request.name().empty()) return absl::InvalidArgumentError("name required");
    if (block_size != 512 && block_size != 4096) {
      return absl::InvalidArgumentError("bad block size");
    }
    if (request.size_bytes() == 0 || request.size_bytes() % block_size != 0) {
      return absl::InvalidArgumentError("bad size");
    }
    for (const auto& [id, lun] : luns_) {
      if (lun.name() == request.name()) {
        return absl::AlreadyExistsError(
            absl::StrCat("a LUN named ", request.name(), " exists"));
      }
    }
    uint64_t id = 0;
    if (request.has_id()) {
      id = request.id();
      if (luns_.count(id) != 0) {
        return absl::AlreadyExistsError(absl::StrCat("LUN ", id, " exists"));
      }
    } else {
      while (luns_.count(id) != 0) ++id;
    }
    config::LunDefinition lun;
    lun.set_id(id);
    lun.set_name(request.name());
    lun.set_size_bytes(request.size_bytes());
    lun.set_block_size(block_size);
    lun.set_physical_block_size(request.physical_block_size());
    lun.set_read_only(request.read_only());
    const std::string owner =
        request.owner_node().empty() ? "node-a" : request.owner_node();
    lun.set_home_node(owner);
    lun.set_owner_node(owner);
    lun.set_backing_file(absl::StrCat("lun-", id, ".img"));
    lun.set_serial(absl::StrCat("SN", id));
    luns_[id] = lun;
    ++mutations_;
    return lun;
  }

  absl::Status DeleteLun(uint64_t id) override {
    absl::MutexLock lock(&mu_);
    ++delete_calls_;
    if (unavailable_) return absl::UnavailableError("node is taking over");
    if (luns_.erase(id) == 0) return absl::NotFoundError(absl::StrCat("no LUN ", id));
    ++mutations_;
    return absl::OkStatus();
  }

  // Two LIFs (lif-a1 on node-a's e0a, lif-b1 on node-b's e0a) and one port,
  // e0a; a port going down moves its LIFs to node-b unless the partner is
  // marked unreachable.
  absl::StatusOr<LifList> ListLifs() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return absl::UnavailableError("node is taking over");
    LifList list;
    for (const auto& [name, lif] : lifs_) *list.add_lifs() = lif;
    return list;
  }

  absl::StatusOr<config::Lif> MigrateLif(const std::string& name,
                                         const std::string& node) override {
    absl::MutexLock lock(&mu_);
    ++migrate_calls_;
    auto it = lifs_.find(name);
    if (it == lifs_.end()) return absl::NotFoundError(absl::StrCat("no LIF ", name));
    if (node != "node-a" && node != "node-b") {
      return absl::InvalidArgumentError(absl::StrCat("unknown node ", node));
    }
    if (it->second.current_node() == node) {
      return absl::FailedPreconditionError("already there");
    }
    if (!partner_reachable_) return absl::FailedPreconditionError("partner unreachable");
    it->second.set_current_node(node);
    ++mutations_;
    return it->second;
  }

  absl::StatusOr<PortStatus> SetPortFault(const std::string& port,
                                          bool down) override {
    absl::MutexLock lock(&mu_);
    if (port != "e0a") return absl::NotFoundError(absl::StrCat("no port ", port));
    port_up_ = !down;
    PortStatus status;
    status.set_name("e0a");
    status.set_address("127.0.0.2");
    status.set_up(port_up_);
    for (auto& [name, lif] : lifs_) {
      if (lif.current_node() != "node-a") continue;
      if (down && partner_reachable_) {
        lif.set_current_node("node-b");
      } else {
        status.add_lifs(name);
      }
    }
    return status;
  }

  void set_partner_reachable(bool reachable) {
    absl::MutexLock lock(&mu_);
    partner_reachable_ = reachable;
  }
  int migrate_calls() const {
    absl::MutexLock lock(&mu_);
    return migrate_calls_;
  }

  void set_unavailable(bool unavailable) {
    absl::MutexLock lock(&mu_);
    unavailable_ = unavailable;
  }
  int create_calls() const {
    absl::MutexLock lock(&mu_);
    return create_calls_;
  }
  int delete_calls() const {
    absl::MutexLock lock(&mu_);
    return delete_calls_;
  }
  int mutations() const {
    absl::MutexLock lock(&mu_);
    return mutations_;
  }
  size_t lun_count() const {
    absl::MutexLock lock(&mu_);
    return luns_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::map<uint64_t, config::LunDefinition> luns_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, config::Lif> lifs_ ABSL_GUARDED_BY(mu_) = {
      {"lif-a1", MakeLif("lif-a1", "127.0.0.2", "node-a", 1)},
      {"lif-b1", MakeLif("lif-b1", "127.0.0.3", "node-b", 2)}};
  bool port_up_ ABSL_GUARDED_BY(mu_) = true;
  bool partner_reachable_ ABSL_GUARDED_BY(mu_) = true;
  int migrate_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int create_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int delete_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int mutations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace appliance::mgmt::testing

#endif  // TESTS_MGMT_FAKE_BACKEND_H_
