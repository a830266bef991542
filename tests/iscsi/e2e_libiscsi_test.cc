// End-to-end: a real Server on 127.0.0.1:0 in front of a RAM-disk fake router,
// driven by real initiators (libiscsi's tools and qemu-img).
#include <fstream>
#include <iterator>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "target/iscsi/server.h"
#include "tests/iscsi/fake_task_router.h"
#include "tests/iscsi/test_util.h"

namespace iscsi_test {
namespace {

constexpr char kTarget[] = "iqn.2024-01.com.example.appliance:e2e";
constexpr char kChapTarget[] = "iqn.2024-01.com.example.appliance:chap";
constexpr char kInitiator[] = "iqn.2024-01.com.example:e2e-host";
constexpr char kChapInitiator[] = "iqn.2024-01.com.example:chap-host";

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(iscsi::TargetOptions()); }

  void StartServer(iscsi::TargetOptions options) {
    if (server_) server_->Shutdown();
    auto directory = std::make_shared<iscsi::PortalDirectory>();
    iscsi::TargetConfig plain;
    plain.name = kTarget;
    plain.alias = "e2e";
    directory->UpsertTarget(plain);
    iscsi::TargetConfig chap;
    chap.name = kChapTarget;
    chap.auth.require_chap = true;
    chap.allowed_initiators = {kChapInitiator};
    iscsi::ChapCredentials creds;
    creds.initiator = {"hostuser", "host-secret-123"};
    creds.target = iscsi::ChapSecret{"targetuser", "target-secret-456"};
    chap.auth.chap_by_initiator[kChapInitiator] = creds;
    directory->UpsertTarget(chap);
    options.event_loop_threads = 2;
    auto server = iscsi::Server::Create(options, directory, router_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    iscsi::PortalConfig portal;
    portal.address = "127.0.0.1";
    portal.port = 0;
    portal.portal_group_tag = 1;
    auto p = server_->AddPortal(portal);
    ASSERT_TRUE(p.ok()) << p.status();
    port_ = (*p)->bound_port();
    ASSERT_NE(port_, 0);
  }

  std::string Portal() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string Url(const std::string& target, const std::string& args = "") const {
    return absl::StrCat("iscsi://", Portal(), "/", target, "/0", args);
  }

  FakeTaskRouter router_;
  std::unique_ptr<iscsi::Server> server_;
  uint16_t port_ = 0;
};

TEST_F(E2eTest, IscsiLsDiscoversAndLogsIn) {
  auto r = RunCommand({"iscsi-ls", "-s", "-i", kInitiator,
                       absl::StrCat("iscsi://", Portal())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat("Target:", kTarget, " Portal:", Portal(), ",1")),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("Lun:0"), std::string::npos) << r.output;
  // The CHAP target's ACL hides it from this initiator.
  EXPECT_EQ(r.output.find(kChapTarget), std::string::npos) << r.output;
}

TEST_F(E2eTest, IscsiInq) {
  auto r = RunCommand({"iscsi-inq", "-i", kInitiator, Url(kTarget)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("APPLIANC"), std::string::npos) << r.output;
}

TEST_F(E2eTest, IscsiInqWithHeaderDigest) {
  // libiscsi's tools offer "None,CRC32C"; a target that does not accept None
  // gets CRC32C (the responder picks the first offered value it supports).
  iscsi::TargetOptions options;
  options.negotiation.header_digests = {iscsi::DigestType::kCrc32c};
  StartServer(options);
  auto r = RunCommand({"iscsi-inq", "-i", kInitiator,
                       Url(kTarget, "?header_digest=crc32c")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(server_->stats().header_digest_logins, 1u);
  EXPECT_NE(r.output.find("APPLIANC"), std::string::npos) << r.output;
}

TEST_F(E2eTest, IscsiReadCapacity16) {
  auto r = RunCommand({"iscsi-readcapacity16", "-i", kInitiator, Url(kTarget)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat("Total size:", 32 * 1024 * 512)), std::string::npos)
      << r.output;
  // The nexus carried the initiator port (name + ISID) and target port names.
  bool found = false;
  for (const auto& n : router_.nexus_names()) {
    found |= n.find(absl::StrCat(kInitiator, ",i,0x")) == 0 &&
             n.find(absl::StrCat(kTarget, ",t,0x0001 1")) != std::string::npos;
  }
  EXPECT_TRUE(found);
}

TEST_F(E2eTest, ChapOneWayAndMutual) {
  const std::string url = absl::StrCat("iscsi://hostuser%host-secret-123@", Portal(), "/",
                                       kChapTarget, "/0");
  auto ok = RunCommand({"iscsi-inq", "-i", kChapInitiator, url});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto mutual = RunCommand(
      {"iscsi-inq", "-i", kChapInitiator,
       url + "?target_user=targetuser&target_password=target-secret-456"});
  EXPECT_EQ(mutual.exit_code, 0) << mutual.output;
  auto bad_mutual = RunCommand(
      {"iscsi-inq", "-i", kChapInitiator,
       url + "?target_user=targetuser&target_password=wrong-secret-xyz"});
  EXPECT_NE(bad_mutual.exit_code, 0) << bad_mutual.output;
  auto wrong = RunCommand({"iscsi-inq", "-i", kChapInitiator,
                           absl::StrCat("iscsi://hostuser%wrong-password@", Portal(), "/",
                                        kChapTarget, "/0")});
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;
  auto none = RunCommand({"iscsi-inq", "-i", kChapInitiator, Url(kChapTarget)});
  EXPECT_NE(none.exit_code, 0) << none.output;
  auto forbidden = RunCommand({"iscsi-inq", "-i", kInitiator, url});
  EXPECT_NE(forbidden.exit_code, 0) << forbidden.output;
}

std::vector<char> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

class QemuImgTest : public E2eTest, public ::testing::WithParamInterface<bool> {};

TEST_P(QemuImgTest, ConvertRoundTrip) {
  const bool digest = GetParam();
  const std::string dir = TempDir();
  const std::string in = absl::StrCat(dir, "/in-", digest, ".raw");
  const std::string out = absl::StrCat(dir, "/out-", digest, ".raw");
  {
    std::mt19937_64 rng(42 + digest);
    std::vector<char> data(8 << 20);
    for (size_t i = 0; i < data.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(&data[i], &v, 8);
    }
    std::ofstream f(in, std::ios::binary);
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  const std::string opts =
      absl::StrCat("driver=iscsi,transport=tcp,portal=", Portal(), ",target=", kTarget,
                   ",lun=0,initiator-name=", kInitiator,
                   ",header-digest=", digest ? "crc32c" : "none");
  auto w = RunCommand({"qemu-img", "convert", "-n", "-f", "raw", "--target-image-opts",
                       in, opts});
  ASSERT_EQ(w.exit_code, 0) << w.output;
  auto r = RunCommand({"qemu-img", "convert", "--image-opts", opts, "-O", "raw", out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto stats = server_->stats();
  EXPECT_GE(stats.logins_completed, 2u);
  EXPECT_EQ(stats.header_digest_logins, digest ? stats.logins_completed : 0u);
  auto a = ReadFile(in);
  auto b = ReadFile(out);
  ASSERT_EQ(b.size(), 16u << 20);  // the whole LUN
  b.resize(a.size());
  EXPECT_TRUE(a == b) << "data read back differs";
}

INSTANTIATE_TEST_SUITE_P(Digests, QemuImgTest, ::testing::Bool());

}  // namespace
}  // namespace iscsi_test
