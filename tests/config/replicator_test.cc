#include "appliance/config/replicator.h"

#include <filesystem>
#include <memory>
#include <set>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace appliance::config {
namespace {

class RecordingListener : public ReplicationListener {
 public:
  void LunChanged(uint64_t id) override {
    absl::MutexLock lock(&mu);
    changed.insert(id);
  }
  void LifPlacementChanged(const std::string& name) override {
    absl::MutexLock lock(&mu);
    lifs_changed.insert(name);
  }
  absl::Mutex mu;
  std::set<uint64_t> changed;
  std::set<std::string> lifs_changed;
};

// One node: its database, replicator and gRPC server on 127.0.0.1:0.
struct TestNode {
  TestNode(const std::string& name) {
    std::string dir = std::string(getenv("TEST_TMPDIR")) + "/" + name + "-" +
                      ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir);
    db = std::shared_ptr<ConfigDb>(*ConfigDb::Open(dir));
    ReplicatorOptions options;
    options.node_name = name;
    options.reconcile_interval = absl::Milliseconds(50);
    replicator = std::make_unique<ConfigReplicator>(db, options);
    replicator->SetListener(&listener);
    StartServer();
  }
  void StartServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(
        port == 0 ? "127.0.0.1:0" : "127.0.0.1:" + std::to_string(port),
        grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(replicator.get());
    server = builder.BuildAndStart();
  }
  void StopServer() {
    server->Shutdown();
    server.reset();
  }
  void ConnectTo(TestNode& partner) {
    replicator->SetPartnerChannel(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(partner.port),
        grpc::InsecureChannelCredentials()));
  }
  std::set<std::string> Names() {
    std::set<std::string> names;
    absl::StatusOr<std::vector<LunDefinition>> luns = db->ListLuns();
    EXPECT_TRUE(luns.ok());
    if (!luns.ok()) return names;
    for (const LunDefinition& l : *luns) names.insert(l.name());
    return names;
  }
  RecordingListener listener;
  std::shared_ptr<ConfigDb> db;
  std::unique_ptr<ConfigReplicator> replicator;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

LunDefinition Lun(uint64_t id, const std::string& name, const std::string& owner) {
  LunDefinition lun;
  lun.set_id(id);
  lun.set_name(name);
  lun.set_size_bytes(1 << 20);
  lun.set_block_size(512);
  lun.set_owner_node(owner);
  lun.set_home_node(owner);
  return lun;
}

LifPlacement Placement(const std::string& lif, const std::string& node,
                       const std::string& port = "e0a") {
  LifPlacement p;
  p.set_lif_name(lif);
  p.set_current_node(node);
  p.set_current_port(port);
  return p;
}

// Where node's database says lif is ("" when it has no placement record).
std::string HostOf(TestNode& node, const std::string& lif) {
  absl::StatusOr<std::optional<LifPlacement>> p = node.db->GetLifPlacement(lif);
  EXPECT_TRUE(p.ok());
  return p.ok() && p->has_value() ? (*p)->current_node() : "";
}

class ReplicatorTest : public ::testing::Test {
 protected:
  void Connect() {
    a.ConnectTo(b);
    b.ConnectTo(a);
  }
  void Settle() {
    ASSERT_TRUE(a.replicator->WaitClean(absl::Seconds(10)));
    ASSERT_TRUE(b.replicator->WaitClean(absl::Seconds(10)));
  }
  TestNode a{"node-a"};
  TestNode b{"node-b"};
};

TEST_F(ReplicatorTest, CreateAndDeleteReachThePartner) {
  Connect();
  Settle();
  ASSERT_TRUE(a.replicator->CommitLun(Lun(0, "alpha", "node-a")).ok());
  ASSERT_TRUE(b.replicator->CommitLun(Lun(1, "beta", "node-b")).ok());
  Settle();
  EXPECT_EQ(a.Names(), (std::set<std::string>{"alpha", "beta"}));
  EXPECT_EQ(b.Names(), (std::set<std::string>{"alpha", "beta"}));
  {
    absl::MutexLock lock(&b.listener.mu);
    EXPECT_EQ(b.listener.changed, std::set<uint64_t>{0});
  }
  ASSERT_TRUE(b.replicator->CommitDelete(0).ok());
  Settle();
  EXPECT_EQ(a.Names(), std::set<std::string>{"beta"});
  absl::MutexLock lock(&a.listener.mu);
  EXPECT_EQ(a.listener.changed, (std::set<uint64_t>{0, 1}));
}

TEST_F(ReplicatorTest, PartitionedChangesConvergeAfterReconnect) {
  ASSERT_TRUE(a.replicator->CommitLun(Lun(0, "shared", "node-a")).ok());
  Connect();
  Settle();
  b.StopServer();  // partition: A's pushes fail
  ASSERT_TRUE(a.replicator->CommitLun(Lun(2, "made-during-partition", "node-a")).ok());
  ASSERT_TRUE(a.replicator->CommitDelete(0).ok());
  // B cannot reach A either (its own pushes to A work, but make one anyway).
  ASSERT_TRUE(b.replicator->CommitLun(Lun(3, "b-side", "node-b")).ok());
  ASSERT_TRUE(b.replicator->WaitClean(absl::Seconds(10)));  // A is up
  EXPECT_TRUE(a.replicator->dirty());
  b.StartServer();  // heal
  Settle();
  EXPECT_EQ(a.Names(), b.Names());
  EXPECT_EQ(a.Names(),
            (std::set<std::string>{"made-during-partition", "b-side"}));
}

TEST_F(ReplicatorTest, ConflictingEditsPickTheSameWinnerOnBothNodes) {
  // Both nodes write LUN 5 while partitioned; after reconciling, both hold the
  // same record (the higher revision).
  ASSERT_TRUE(a.replicator->CommitLun(Lun(5, "from-a", "node-a")).ok());
  ASSERT_TRUE(b.replicator->CommitLun(Lun(5, "from-b", "node-b")).ok());
  Connect();
  Settle();
  EXPECT_EQ(a.Names(), b.Names());
  EXPECT_EQ(a.Names().size(), 1u);
  EXPECT_EQ((*a.db->GetLun(5)).revision(), (*b.db->GetLun(5)).revision());
}

TEST_F(ReplicatorTest, RecordsWithoutRevisionStillReplicate) {
  // A LUN stored before replication existed (revision 0), e.g. by a node that
  // ran standalone before it got a partner.
  ASSERT_TRUE(a.db->PutLun(Lun(4, "legacy", "node-a")).ok());
  Connect();
  Settle();
  EXPECT_EQ(b.Names(), std::set<std::string>{"legacy"});
}

TEST_F(ReplicatorTest, OlderRecordDoesNotOverwriteNewer) {
  absl::StatusOr<LunDefinition> v1 = a.replicator->CommitLun(Lun(7, "v1", "node-a"));
  ASSERT_TRUE(v1.ok());
  absl::StatusOr<LunDefinition> v2 = a.replicator->CommitLun(Lun(7, "v2", "node-a"));
  ASSERT_TRUE(v2.ok());
  ConfigRecord stale;
  stale.set_lun_id(7);
  stale.set_revision(v1->revision());
  *stale.mutable_lun() = *v1;
  absl::StatusOr<bool> applied = a.replicator->Apply(stale);
  ASSERT_TRUE(applied.ok());
  EXPECT_FALSE(*applied);
  EXPECT_EQ((*a.db->GetLun(7)).name(), "v2");
  // A tombstone older than the definition does not delete it either.
  ConfigRecord old_delete;
  old_delete.set_lun_id(7);
  old_delete.set_revision(v1->revision());
  old_delete.set_deleted(true);
  EXPECT_FALSE(*a.replicator->Apply(old_delete));
  EXPECT_TRUE(a.db->GetLun(7).ok());
}

TEST_F(ReplicatorTest, MalformedRecordsAreRefused) {
  ConfigRecord empty;
  empty.set_lun_id(1);
  empty.set_revision(5);
  EXPECT_EQ(a.replicator->Apply(empty).status().code(),
            absl::StatusCode::kInvalidArgument);
  ConfigRecord mismatched;
  mismatched.set_lun_id(1);
  mismatched.set_revision(5);
  *mismatched.mutable_lun() = Lun(2, "x", "node-a");
  EXPECT_EQ(a.replicator->Apply(mismatched).status().code(),
            absl::StatusCode::kInvalidArgument);
  ConfigRecord no_revision;
  no_revision.set_lun_id(2);
  *no_revision.mutable_lun() = Lun(2, "x", "node-a");
  EXPECT_FALSE(a.replicator->Apply(no_revision).ok());
  EXPECT_TRUE(a.Names().empty());
}

TEST_F(ReplicatorTest, LifPlacementReachesThePartnerAndTellsItsListener) {
  Connect();
  Settle();
  absl::StatusOr<LifPlacement> moved =
      a.replicator->CommitLifPlacement(Placement("lif-a", "node-b", ""));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_GT(moved->revision(), 0u);
  Settle();
  EXPECT_EQ(HostOf(a, "lif-a"), "node-b");
  EXPECT_EQ(HostOf(b, "lif-a"), "node-b");
  {
    absl::MutexLock lock(&b.listener.mu);
    EXPECT_EQ(b.listener.lifs_changed, std::set<std::string>{"lif-a"});
    EXPECT_TRUE(b.listener.changed.empty());  // no LUN was touched
  }
  {
    // Local commits are not reported to the committing node's listener.
    absl::MutexLock lock(&a.listener.mu);
    EXPECT_TRUE(a.listener.lifs_changed.empty());
  }
  // The new host fills in its port; the later revision wins on both nodes.
  ASSERT_TRUE(b.replicator->CommitLifPlacement(Placement("lif-a", "node-b", "e0b")).ok());
  Settle();
  EXPECT_EQ((*a.db->GetLifPlacement("lif-a"))->current_port(), "e0b");
}

TEST_F(ReplicatorTest, LifPlacementsMadeDuringAPartitionConverge) {
  Connect();
  Settle();
  b.StopServer();
  ASSERT_TRUE(a.replicator->CommitLifPlacement(Placement("lif-a", "node-b")).ok());
  ASSERT_TRUE(a.replicator->CommitLifPlacement(Placement("lif-c", "node-a")).ok());
  EXPECT_EQ(HostOf(b, "lif-a"), "");
  b.StartServer();
  Settle();
  EXPECT_EQ(HostOf(b, "lif-a"), "node-b");
  EXPECT_EQ(HostOf(b, "lif-c"), "node-a");
}

TEST_F(ReplicatorTest, ConflictingLifPlacementsPickTheSameWinner) {
  // Each side moves lif-x while partitioned; the later revision wins on both.
  ASSERT_TRUE(a.replicator->CommitLifPlacement(Placement("lif-x", "node-a")).ok());
  absl::StatusOr<LifPlacement> later =
      b.replicator->CommitLifPlacement(Placement("lif-x", "node-b"));
  ASSERT_TRUE(later.ok());
  Connect();
  Settle();
  EXPECT_EQ(HostOf(a, "lif-x"), "node-b");
  EXPECT_EQ(HostOf(b, "lif-x"), "node-b");
  EXPECT_EQ((*a.db->GetLifPlacement("lif-x"))->revision(), later->revision());
  // An older placement does not overwrite a newer one; equal revisions pick
  // the same winner whichever node applies them.
  ConfigRecord stale;
  stale.set_revision(later->revision() - 1);
  *stale.mutable_lif_placement() = Placement("lif-x", "node-a");
  EXPECT_FALSE(*a.replicator->Apply(stale));
  ConfigRecord tie;
  tie.set_revision(later->revision());
  *tie.mutable_lif_placement() = Placement("lif-x", "node-c");
  const bool applied_a = *a.replicator->Apply(tie);
  const bool applied_b = *b.replicator->Apply(tie);
  EXPECT_EQ(applied_a, applied_b);
  EXPECT_EQ(HostOf(a, "lif-x"), HostOf(b, "lif-x"));
}

TEST_F(ReplicatorTest, MalformedLifPlacementsAreRefused) {
  ConfigRecord no_node;
  no_node.set_revision(5);
  no_node.mutable_lif_placement()->set_lif_name("lif-a");
  EXPECT_EQ(a.replicator->Apply(no_node).status().code(),
            absl::StatusCode::kInvalidArgument);
  ConfigRecord no_revision;
  *no_revision.mutable_lif_placement() = Placement("lif-a", "node-b");
  EXPECT_FALSE(a.replicator->Apply(no_revision).ok());
  EXPECT_FALSE(a.replicator->CommitLifPlacement(Placement("", "node-b")).ok());
  EXPECT_EQ(HostOf(a, "lif-a"), "");
}

}  // namespace
}  // namespace appliance::config
