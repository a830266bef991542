// LifManager (placements, migration rules, port faults, replicated changes)
// and LifPortStateProvider (ALUA states follow the current placement).
#include "appliance/daemon/lif_manager.h"

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "appliance/daemon/scsi_wiring.h"
#include "gtest/gtest.h"

namespace appliance::daemon {
namespace {

config::Lif MakeLif(const std::string& name, const std::string& home, uint32_t id) {
  config::Lif lif;
  lif.set_name(name);
  lif.set_address(home == "node-a" ? "127.0.0.2" : "127.0.0.3");
  lif.set_port(3260);
  lif.set_home_node(home);
  lif.set_home_port("e0a");
  lif.set_relative_target_port_id(id);
  lif.set_target_portal_group(id);
  lif.set_current_node(home);
  return lif;
}

class RecordingListener : public LifPlacementListener {
 public:
  void LifMoved(const config::Lif& lif) override {
    moves.push_back(lif.name() + "->" + lif.current_node());
  }
  std::vector<std::string> moves;
};

class LifManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(getenv("TEST_TMPDIR")) + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    db_ = std::shared_ptr<config::ConfigDb>(*config::ConfigDb::Open(dir_));
    manager_ = Make();
  }
  std::unique_ptr<LifManager> Make() {
    LifManager::Options options;
    options.node_name = "node-a";
    options.partner_name = "node-b";
    options.lifs = {MakeLif("lif-a", "node-a", 1), MakeLif("lif-b", "node-b", 2)};
    config::PhysicalPort e0a, e0b;
    e0a.set_name("e0a");
    e0a.set_address("127.0.0.2");
    e0b.set_name("e0b");
    e0b.set_address("127.0.0.12");
    options.ports = {e0a, e0b};
    absl::StatusOr<std::unique_ptr<LifManager>> m =
        LifManager::Create(options, db_, /*replicator=*/nullptr);
    EXPECT_TRUE(m.ok()) << m.status();
    (*m)->SetPartnerReachable([this] { return partner_up_.load(); });
    (*m)->AddListener(&listener_);
    return std::move(*m);
  }
  // name -> "node/port"
  std::map<std::string, std::string> Placements(const LifManager& m) {
    std::map<std::string, std::string> out;
    for (const config::Lif& lif : m.Lifs()) {
      out[lif.name()] = lif.current_node() + "/" + lif.current_port();
    }
    return out;
  }

  std::string dir_;
  std::shared_ptr<config::ConfigDb> db_;
  std::atomic<bool> partner_up_{true};
  RecordingListener listener_;
  std::unique_ptr<LifManager> manager_;
};

TEST_F(LifManagerTest, LifsStartOnTheirHome) {
  EXPECT_EQ(Placements(*manager_),
            (std::map<std::string, std::string>{{"lif-a", "node-a/e0a"},
                                                {"lif-b", "node-b/e0a"}}));
}

TEST_F(LifManagerTest, MigrationRules) {
  EXPECT_EQ(manager_->Migrate("lif-z", "node-b").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->Migrate("lif-a", "node-z").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->Migrate("lif-a", "node-a").status().code(),
            absl::StatusCode::kFailedPrecondition);
  partner_up_ = false;
  EXPECT_EQ(manager_->Migrate("lif-a", "node-b").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(listener_.moves.empty());
  partner_up_ = true;
  absl::StatusOr<config::Lif> moved = manager_->Migrate("lif-a", "node-b");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->current_node(), "node-b");
  EXPECT_EQ(moved->relative_target_port_id(), 1u);  // identity travels along
  EXPECT_EQ(moved->target_portal_group(), 1u);
  EXPECT_EQ(listener_.moves, std::vector<std::string>{"lif-a->node-b"});
  // Stored: a restart keeps it where it is.
  EXPECT_EQ(Placements(*Make())["lif-a"], "node-b/");
  // Bringing the partner's LIF here puts it on this node's first port up.
  absl::StatusOr<config::Lif> here = manager_->Migrate("lif-b", "node-a");
  ASSERT_TRUE(here.ok());
  EXPECT_EQ(here->current_port(), "e0a");
}

TEST_F(LifManagerTest, PortDownMovesItsLifsToTheReachablePartner) {
  EXPECT_EQ(manager_->SetPortDown("e9z", true).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<mgmt::PortStatus> down = manager_->SetPortDown("e0a", true);
  ASSERT_TRUE(down.ok());
  EXPECT_FALSE(down->up());
  EXPECT_EQ(down->lifs_size(), 0);
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-b/");
  EXPECT_EQ(listener_.moves, std::vector<std::string>{"lif-a->node-b"});
  // Back home while e0a is down: the other port carries it.
  ASSERT_TRUE(manager_->Migrate("lif-a", "node-a").ok());
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-a/e0b");
  ASSERT_TRUE(manager_->SetPortDown("e0b", true).ok());
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-b/");
  // No port up here: it cannot come back.
  EXPECT_EQ(manager_->Migrate("lif-a", "node-a").status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<mgmt::PortStatus> up = manager_->SetPortDown("e0a", false);
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(up->up());
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-b/");  // nothing moves back
  ASSERT_TRUE(manager_->Migrate("lif-a", "node-a").ok());
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-a/e0a");
  std::vector<mgmt::PortStatus> ports = manager_->Ports();
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_EQ(ports[0].lifs_size(), 1);
  EXPECT_FALSE(ports[1].up());
}

TEST_F(LifManagerTest, PortDownWithPartnerUnreachableKeepsTheLif) {
  partner_up_ = false;
  absl::StatusOr<mgmt::PortStatus> down = manager_->SetPortDown("e0a", true);
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(down->lifs_size(), 1);
  EXPECT_EQ(Placements(*manager_)["lif-a"], "node-a/e0a");
  EXPECT_TRUE(listener_.moves.empty());
}

TEST_F(LifManagerTest, ReplicatedPlacementIsFollowedAndGetsAPortHere) {
  config::LifPlacement p;
  p.set_lif_name("lif-b");
  p.set_current_node("node-a");  // the partner moved its LIF here
  p.set_revision(5);
  ASSERT_TRUE(db_->PutLifPlacement(p).ok());
  manager_->PlacementReplicated("lif-b");
  EXPECT_EQ(listener_.moves, std::vector<std::string>{"lif-b->node-a"});
  EXPECT_EQ(Placements(*manager_)["lif-b"], "node-a/e0a");
  absl::StatusOr<std::optional<config::LifPlacement>> stored =
      db_->GetLifPlacement("lif-b");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->current_port(), "e0a");  // recorded for the partner
  // The same placement again is not a move.
  manager_->PlacementReplicated("lif-b");
  EXPECT_EQ(listener_.moves.size(), 1u);
  manager_->RemoveListener(&listener_);
  p.set_current_node("node-b");
  p.set_revision(9);
  ASSERT_TRUE(db_->PutLifPlacement(p).ok());
  manager_->PlacementReplicated("lif-b");
  EXPECT_EQ(listener_.moves.size(), 1u);
  EXPECT_EQ(Placements(*manager_)["lif-b"], "node-b/");
}

class FixedOwners : public virtual_target::OwnershipView {
 public:
  std::optional<std::string> OwnerOf(uint64_t lun) const override {
    return lun == 0 ? "node-a" : "node-b";
  }
};

TEST_F(LifManagerTest, PortStatesFollowThePlacement) {
  FixedOwners owners;
  bool link = true;
  LifPortStateProvider provider(*manager_, owners, [&link] { return link; });
  auto states = [&](uint64_t lun) {
    std::map<int, scsi::AluaState> out;
    for (const scsi::TargetPortGroupState& g : provider.TargetPortGroups(lun)) {
      out[g.group_id] = g.state;
    }
    return out;
  };
  using S = scsi::AluaState;
  EXPECT_EQ(states(0), (std::map<int, S>{{1, S::kActiveOptimized},
                                          {2, S::kActiveNonOptimized}}));
  ASSERT_TRUE(manager_->Migrate("lif-a", "node-b").ok());
  EXPECT_EQ(states(0), (std::map<int, S>{{1, S::kActiveNonOptimized},
                                          {2, S::kActiveNonOptimized}}));
  EXPECT_EQ(states(1), (std::map<int, S>{{1, S::kActiveOptimized},
                                          {2, S::kActiveOptimized}}));
  link = false;
  EXPECT_EQ(states(0), (std::map<int, S>{{1, S::kUnavailable},
                                          {2, S::kUnavailable}}));
}

}  // namespace
}  // namespace appliance::daemon
