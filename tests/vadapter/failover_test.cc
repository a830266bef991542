// The proxy path over real gRPC on 127.0.0.1 with real mTLS certificates: the
// partner dies mid-command (outstanding commands end with 04/0C, the owner
// aborts them, PartnerReachable() turns false), then comes back on the same
// address (reconnect, commands flow again).
#include <vector>

#include "gtest/gtest.h"
#include "interconnect/partner_channel.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"
#include "target/scsi/sense.h"
#include "tests/interconnect/test_pki.h"
#include "tests/vadapter/ram_disk_router.h"
#include "vadapter/local_virtual_adapter.h"
#include "vadapter/partner_virtual_adapter.h"

namespace vadapter {
namespace {

using interconnect_test::NodeTls;
using vadapter_test::Pattern;
using vadapter_test::RamDiskRouter;
using vadapter_test::ReadTask;
using vadapter_test::ResponseCatcher;
using vadapter_test::WriteTask;

void ExpectUnavailable(const scsi::TaskResponse& r) {
  EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
  auto sense = scsi::ParseSense(r.sense);
  ASSERT_TRUE(sense.ok());
  EXPECT_EQ(r.sense[0] & 0x7f, 0x70);
  EXPECT_EQ(sense->key, scsi::SenseKey::kNotReady);
  EXPECT_EQ(sense->code,
            scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
}

// Node B: the owner (router + partner adapter + heartbeat) on an mTLS server.
struct OwnerNode {
  OwnerNode(RamDiskRouter& router, const std::string& address)
      : partner(router), heartbeat("node-b") {
    interconnect::InterconnectServer::Options o;
    o.address = address;
    o.credentials =
        interconnect::MakeServerCredentials(NodeTls("pair", "node-b"));
    auto s = interconnect::InterconnectServer::Create(o, {&partner, &heartbeat});
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) server = std::move(*s);
  }
  ~OwnerNode() { server.reset(); }

  PartnerVirtualAdapter partner;
  interconnect::HeartbeatService heartbeat;
  std::unique_ptr<interconnect::InterconnectServer> server;
};

TEST(FailoverTest, PartnerKilledMidCommandThenBack) {
  RamDiskRouter router;
  auto owner = std::make_unique<OwnerNode>(router, "127.0.0.1:0");
  ASSERT_NE(owner->server, nullptr);
  const std::string address = owner->server->address();

  interconnect::PartnerChannel::Options co;
  co.node_name = "node-a";
  co.partner_address = address;
  co.credentials = interconnect::MakeChannelCredentials(NodeTls("pair", "node-a"));
  co.heartbeat_interval = std::chrono::milliseconds(200);
  auto channel = interconnect::PartnerChannel::Create(co);
  ASSERT_TRUE(channel.ok()) << channel.status();
  LocalVirtualAdapter::Options lo;
  lo.command_timeout = absl::Seconds(10);
  auto local = LocalVirtualAdapter::Create(**channel, lo);
  ASSERT_TRUE(local.ok());
  ASSERT_TRUE((*channel)->WaitUntil(true, absl::Seconds(20)));
  EXPECT_TRUE((*local)->PartnerReachable());

  // Commands flow over mTLS.
  {
    ResponseCatcher w;
    (*local)->Forward(WriteTask(0, Pattern(4096, 3), 1), w.Callback());
    ASSERT_TRUE(w.Wait());
    EXPECT_EQ(w.response().status, scsi::ScsiStatus::kGood);
  }

  // Three commands held on the owner when it dies.
  router.set_hold(true);
  std::vector<ResponseCatcher> held(3);
  for (int i = 0; i < 3; ++i) {
    (*local)->Forward(ReadTask(i, 1, 512, 10 + i), held[i].Callback());
  }
  ASSERT_TRUE(router.WaitForHeld(3));
  const absl::Time killed_at = absl::Now();
  owner.reset();  // the server goes away; its process-side state with it

  for (auto& c : held) {
    ASSERT_TRUE(c.Wait(absl::Seconds(20)));
    ExpectUnavailable(c.response());
    EXPECT_EQ(c.calls(), 1);
  }
  EXPECT_LT(absl::Now() - killed_at, lo.command_timeout)
      << "failed by the broken stream, not the deadline";
  EXPECT_EQ((*local)->stats().timed_out, 0u);
  // The owner side aborted what the dead stream left running.
  EXPECT_EQ(router.held(), 0u);
  EXPECT_GE(router.tmfs().size(), 3u);

  ASSERT_TRUE((*channel)->WaitUntil(false, absl::Seconds(20)));
  EXPECT_FALSE((*local)->PartnerReachable());
  {
    ResponseCatcher c;
    (*local)->Forward(ReadTask(0, 1, 512, 20), c.Callback());
    ASSERT_TRUE(c.Wait());
    ExpectUnavailable(c.response());
  }

  // The owner comes back on the same address.
  router.set_hold(false);
  owner = std::make_unique<OwnerNode>(router, address);
  ASSERT_NE(owner->server, nullptr);
  ASSERT_TRUE((*channel)->WaitUntil(true, absl::Seconds(20)));
  EXPECT_TRUE((*local)->PartnerReachable());
  ResponseCatcher r;
  (*local)->Forward(ReadTask(0, 8, 4096, 30), r.Callback());
  ASSERT_TRUE(r.Wait());
  EXPECT_EQ(r.response().status, scsi::ScsiStatus::kGood);
  EXPECT_TRUE(r.response().data_in == Pattern(4096, 3));

  local->reset();
  channel->reset();
}

TEST(FailoverTest, ForeignCaNodeCannotProxy) {
  RamDiskRouter router;
  OwnerNode owner(router, "127.0.0.1:0");
  ASSERT_NE(owner.server, nullptr);
  interconnect::PartnerChannel::Options co;
  co.node_name = "intruder";
  co.partner_address = owner.server->address();
  interconnect::TlsMaterial foreign = NodeTls("other-pair", "node-a");
  foreign.ca_cert_pem = NodeTls("pair", "node-a").ca_cert_pem;
  co.credentials = interconnect::MakeChannelCredentials(foreign);
  co.heartbeat_interval = std::chrono::milliseconds(0);
  auto channel = interconnect::PartnerChannel::Create(co);
  ASSERT_TRUE(channel.ok());
  EXPECT_FALSE((*channel)->WaitUntil(true, absl::Milliseconds(500)));
  auto local = LocalVirtualAdapter::Create(**channel);
  ASSERT_TRUE(local.ok());
  ResponseCatcher c;
  (*local)->Forward(ReadTask(0, 1, 512, 1), c.Callback());
  ASSERT_TRUE(c.Wait());
  ExpectUnavailable(c.response());
  EXPECT_EQ(router.submitted(), 0u);
  EXPECT_EQ(owner.partner.stats().envelopes, 0u);
}

}  // namespace
}  // namespace vadapter
