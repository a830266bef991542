#include "appliance/config/bootstrap.h"

#include <fstream>

#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace appliance::config {
namespace {

constexpr char kGood[] = R"pb(
  node_name: "node-a"
  partner_name: "node-b"
  target_name: "iqn.2026-11.com.example:appliance"
  physical_ports { name: "e0a" address: "127.0.0.2" }
  lifs {
    name: "lif-a"
    address: "127.0.0.2"
    home_node: "node-a"
    home_port: "e0a"
    relative_target_port_id: 1
    target_portal_group: 1
  }
  lifs {
    name: "lif-b"
    address: "127.0.0.3"
    port: 3261
    home_node: "node-b"
    home_port: "e0a"
    relative_target_port_id: 2
    target_portal_group: 2
  }
  lifs {
    name: "lif-c"
    address: "127.0.0.4"
    port: 0
    home_node: "node-a"
    relative_target_port_id: 3
    target_portal_group: 3
  }
  mgmt_address: "127.0.0.2:8443"
  interconnect_address: "127.0.0.2:7100"
  partner_interconnect_address: "127.0.0.3:7100"
  interconnect_tls_dir: "/tmp/tls"
  shared_storage_dir: "/tmp/shared"
  state_dir: "/tmp/state-a"
  seed_luns { id: 0 name: "demo-a" size_bytes: 67108864 }
)pb";

TEST(BootstrapTest, ParsesAndFillsDefaults) {
  absl::StatusOr<NodeBootstrap> b = ParseBootstrap(kGood);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(ValidateAndFillBootstrap(*b).ok());
  EXPECT_EQ(b->lifs(0).port(), 3260u);
  EXPECT_EQ(b->lifs(1).port(), 3261u);
  EXPECT_EQ(b->lifs(2).port(), 0u);  // explicit 0: the kernel chooses
  EXPECT_EQ(b->lifs(0).current_node(), "node-a");
  EXPECT_EQ(b->lifs(1).current_node(), "node-b");
  EXPECT_EQ(b->seed_luns(0).block_size(), 512u);
  EXPECT_EQ(b->seed_luns(0).owner_node(), "node-a");
}

TEST(BootstrapTest, SyntaxErrorNamesLine) {
  absl::StatusOr<NodeBootstrap> b =
      ParseBootstrap("node_name: \"a\"\nbogus: 1\n");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("line 2"), std::string::npos)
      << b.status().message();
}

struct BadCase {
  const char* name;
  const char* edit;    // appended to kGood, or substituted for `replaces`
  const char* expect;  // part of the error message
  const char* replaces = nullptr;
};

class BootstrapRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(BootstrapRejects, WithClearMessage) {
  std::string text = kGood;
  if (GetParam().replaces != nullptr) {
    text = absl::StrReplaceAll(text, {{GetParam().replaces, GetParam().edit}});
  } else {
    text += GetParam().edit;
  }
  absl::StatusOr<NodeBootstrap> b = ParseBootstrap(text);
  ASSERT_TRUE(b.ok()) << b.status();
  absl::Status s = ValidateAndFillBootstrap(*b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(GetParam().expect), std::string::npos)
      << s.message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BootstrapRejects,
    ::testing::Values(
        BadCase{"NoPort", "mgmt_address: \"127.0.0.2\"", "mgmt_address",
                "mgmt_address: \"127.0.0.2:8443\""},
        BadCase{"BadPort", "mgmt_address: \"h:99999\"", "mgmt_address",
                "mgmt_address: \"127.0.0.2:8443\""},
        BadCase{"SamePartner", "partner_name: \"node-a\"", "partner_name",
                "partner_name: \"node-b\""},
        BadCase{
            "DupLif",
            "lifs { name: \"lif-a\" address: \"x\" relative_target_port_id: 9 "
            "target_portal_group: 9 }",
            "repeats"},
        BadCase{
            "DupRtpi",
            "lifs { name: \"lif-c\" address: \"x\" relative_target_port_id: 1 "
            "target_portal_group: 9 }",
            "repeats"},
        BadCase{"ZeroRtpi", "lifs { name: \"lif-c\" address: \"x\" }",
                "relative_target_port_id"},
        BadCase{"StrangerLif",
                "lifs { name: \"lif-c\" address: \"x\" home_node: \"node-z\" "
                "relative_target_port_id: 3 target_portal_group: 3 }",
                "neither"},
        BadCase{"OddLunSize",
                "seed_luns { id: 1 name: \"x\" size_bytes: 1000 }", "multiple"},
        BadCase{
            "LunBlock",
            "seed_luns { id: 1 name: \"x\" size_bytes: 8192 block_size: 1024 }",
            "block size"},
        BadCase{"PhysicalNotMultiple",
                "seed_luns { id: 1 name: \"x\" size_bytes: 8192 "
                "physical_block_size: 1536 }",
                "physical block size 1536"},
        BadCase{"PhysicalBelowLogical",
                "seed_luns { id: 1 name: \"x\" size_bytes: 8192 block_size: "
                "4096 physical_block_size: 512 }",
                "physical block size 512"},
        BadCase{"PhysicalOver16x",
                "seed_luns { id: 1 name: \"x\" size_bytes: 8192 "
                "physical_block_size: 16384 }",
                "times 1, 2, 4, 8 or 16"},
        BadCase{"LunName", "seed_luns { id: 1 name: \"a/b\" size_bytes: 8192 }",
                "name"},
        BadCase{"LunId",
                "seed_luns { id: 20000 name: \"big\" size_bytes: 8192 }",
                "16383"},
        BadCase{"NoTlsDir", "", "interconnect_tls_dir",
                "interconnect_tls_dir: \"/tmp/tls\""},
        BadCase{"StrangerSeed",
                "seed_luns { id: 3 name: \"z\" size_bytes: 8192 home_node: "
                "\"node-z\" }",
                "neither"},
        BadCase{"ShortSecret",
                "security { chap { initiator_name: \"iqn.x\" user: \"u\" "
                "secret: \"short\" } }",
                "12-255"},
        BadCase{"SameMutualSecret",
                "security { chap { initiator_name: \"iqn.x\" user: \"u\" "
                "secret: \"abcdefghijkl\" target_user: \"t\" "
                "target_secret: \"abcdefghijkl\" } }",
                "differ"},
        BadCase{"HalfMutual",
                "security { chap { initiator_name: \"iqn.x\" user: \"u\" "
                "secret: \"abcdefghijkl\" target_user: \"t\" } }",
                "both"},
        BadCase{"RequireWithoutAccounts", "security { require_chap: true }",
                "at least one"},
        BadCase{"DupLun",
                "seed_luns { id: 0 name: \"other\" size_bytes: 8192 }",
                "repeats"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(BootstrapTest, LunPhysicalBlockSizeAndReadOnly) {
  LunDefinition lun;
  lun.set_name("ro");
  lun.set_size_bytes(1 << 20);
  lun.set_block_size(512);
  lun.set_read_only(true);
  EXPECT_TRUE(ValidateLunDefinition(lun).ok());  // 0: same as block_size
  for (uint32_t physical : {512u, 1024u, 2048u, 4096u, 8192u}) {
    lun.set_physical_block_size(physical);
    EXPECT_TRUE(ValidateLunDefinition(lun).ok()) << physical;
  }
  for (uint32_t physical : {1u, 256u, 3072u, 16384u, 1u << 31}) {
    lun.set_physical_block_size(physical);
    EXPECT_EQ(ValidateLunDefinition(lun).code(),
              absl::StatusCode::kInvalidArgument)
        << physical;
  }
  lun.set_block_size(4096);
  lun.set_physical_block_size(65536);  // 16 x 4096
  EXPECT_TRUE(ValidateLunDefinition(lun).ok());
  lun.set_physical_block_size(131072);
  EXPECT_FALSE(ValidateLunDefinition(lun).ok());

  absl::StatusOr<NodeBootstrap> b = ParseBootstrap(
      std::string(kGood) +
      "seed_luns { id: 1 name: \"lbppb8\" size_bytes: 8192 "
      "physical_block_size: 4096 read_only: true }");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(ValidateAndFillBootstrap(*b).ok());
  EXPECT_EQ(b->seed_luns(1).physical_block_size(), 4096u);
  EXPECT_TRUE(b->seed_luns(1).read_only());
  EXPECT_EQ(b->seed_luns(0).physical_block_size(), 0u);
  EXPECT_FALSE(b->seed_luns(0).read_only());
}

TEST(BootstrapTest, LoadFileReportsMissingAndInvalid) {
  EXPECT_EQ(LoadBootstrapFile("/nonexistent/boot.textproto").status().code(),
            absl::StatusCode::kNotFound);
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/boot.textproto";
  {
    std::ofstream out(path);
    out << kGood;
  }
  absl::StatusOr<NodeBootstrap> b = LoadBootstrapFile(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->node_name(), "node-a");
  {
    std::ofstream out(path);
    out << "node_name: \"x\"";
  }
  b = LoadBootstrapFile(path);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find(path), std::string::npos);
}

TEST(BootstrapTest, SplitHostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort("[::1]:3260", host, port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 3260);
  ASSERT_TRUE(SplitHostPort("127.0.0.2:0", host, port).ok());
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(SplitHostPort(":80", host, port).ok());
  EXPECT_FALSE(SplitHostPort("[::1]80", host, port).ok());
  EXPECT_FALSE(SplitHostPort("host:-1", host, port).ok());
}

}  // namespace
}  // namespace appliance::config
