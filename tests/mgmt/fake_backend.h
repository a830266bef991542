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
  int create_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int delete_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int mutations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace appliance::mgmt::testing

#endif  // TESTS_MGMT_FAKE_BACKEND_H_
