// PartnerChannel over real mTLS on 127.0.0.1: the connected() view follows the
// partner going away and coming back, and heartbeats flow both ways.
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "interconnect/partner_channel.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"
#include "tests/interconnect/test_pki.h"

namespace interconnect {
namespace {

using interconnect_test::NodeTls;

std::unique_ptr<InterconnectServer> StartServer(HeartbeatService& hb,
                                                const std::string& address) {
  InterconnectServer::Options options;
  options.address = address;
  options.credentials = MakeServerCredentials(NodeTls("pair", "node-b"));
  auto server = InterconnectServer::Create(options, {&hb});
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

PartnerChannel::Options ChannelOptions(const std::string& address) {
  PartnerChannel::Options o;
  o.node_name = "node-a";
  o.partner_address = address;
  o.credentials = MakeChannelCredentials(NodeTls("pair", "node-a"));
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.heartbeat_timeout = std::chrono::milliseconds(500);
  return o;
}

// A listener added once the link is up hears "up" at once: the daemon adds
// its listeners after the channel has started, and one that waited for the
// next change would believe the partner unreachable until the link flapped.
TEST(PartnerChannelTest, ListenerAddedWhileUpHearsUpAtOnce) {
  HeartbeatService hb("node-b", [] { return std::string("active"); });
  auto server = StartServer(hb, "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  auto channel = PartnerChannel::Create(ChannelOptions(server->address()));
  ASSERT_TRUE(channel.ok()) << channel.status();
  ASSERT_TRUE((*channel)->WaitUntil(true, absl::Seconds(20)));

  absl::Mutex mu;
  std::vector<bool> changes;
  const int id = (*channel)->AddStateListener([&](bool up) {
    absl::MutexLock l(&mu);
    changes.push_back(up);
  });
  absl::MutexLock l(&mu);
  ASSERT_FALSE(changes.empty());  // delivered from AddStateListener itself
  EXPECT_TRUE(changes[0]);
  mu.Unlock();
  (*channel)->RemoveStateListener(id);
  mu.Lock();
}

TEST(PartnerChannelTest, FollowsPartnerDownAndUp) {
  HeartbeatService hb("node-b", [] { return std::string("active"); });
  auto server = StartServer(hb, "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  const std::string address = server->address();

  auto channel = PartnerChannel::Create(ChannelOptions(address));
  ASSERT_TRUE(channel.ok()) << channel.status();
  absl::Mutex mu;
  std::vector<bool> changes;
  (*channel)->AddStateListener([&](bool up) {
    absl::MutexLock l(&mu);
    changes.push_back(up);
  });

  ASSERT_TRUE((*channel)->WaitUntil(true, absl::Seconds(20)));
  EXPECT_TRUE((*channel)->connected());

  // Heartbeats: wait for an answered one (and the server hears them).
  ASSERT_TRUE((*channel)->WaitForHeartbeats(1, absl::Seconds(20)));
  EXPECT_EQ((*channel)->partner_state(), "active");
  EXPECT_NE((*channel)->last_heartbeat_reply(), absl::InfinitePast());
  EXPECT_EQ(hb.last_peer_name(), "node-a");

  // The partner goes away: the view turns false quickly.
  const absl::Time down_at = absl::Now();
  server->Shutdown();
  server.reset();
  ASSERT_TRUE((*channel)->WaitUntil(false, absl::Seconds(20)));
  EXPECT_LT(absl::Now() - down_at, absl::Seconds(5));

  // It comes back on the same address (a restarted node: a fresh service; an
  // async gRPC service serves one server in its life): gRPC reconnects.
  HeartbeatService restarted("node-b", [] { return std::string("active"); });
  server = StartServer(restarted, address);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE((*channel)->WaitUntil(true, absl::Seconds(20)));

  channel->reset();
  absl::MutexLock l(&mu);
  // The first call is the view at registration: down, unless the first
  // heartbeat was already answered.
  ASSERT_FALSE(changes.empty());
  if (!changes[0]) changes.erase(changes.begin());
  ASSERT_GE(changes.size(), 3u);
  EXPECT_TRUE(changes[0]);
  EXPECT_FALSE(changes[1]);
  EXPECT_TRUE(changes[2]);
}

TEST(PartnerChannelTest, NotConnectedWhenNobodyListens) {
  // Reserve a port, then free it: nothing listens there.
  HeartbeatService hb("node-b");
  auto server = StartServer(hb, "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  const std::string address = server->address();
  server.reset();
  auto channel = PartnerChannel::Create(ChannelOptions(address));
  ASSERT_TRUE(channel.ok());
  EXPECT_FALSE((*channel)->connected());
  EXPECT_FALSE((*channel)->WaitUntil(true, absl::Milliseconds(300)));
}

TEST(PartnerChannelTest, RejectsMissingOptions) {
  PartnerChannel::Options o;
  EXPECT_FALSE(PartnerChannel::Create(o).ok());
  InterconnectServer::Options so;
  EXPECT_FALSE(InterconnectServer::Create(so, {}).ok());
}

}  // namespace
}  // namespace interconnect
