// LifPortals against a real iscsi::Server on loopback: a LIF hosted here is
// listened on, a LIF that leaves stops listening (and placement_changed runs),
// a LIF that arrives while its address:port is still held elsewhere is bound
// as soon as it is released.
#include "appliance/daemon/lif_portals.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "target/iscsi/server.h"

namespace appliance::daemon {
namespace {

class NoCommands : public scsi::TaskRouter {
 public:
  void Submit(std::unique_ptr<scsi::Task>, scsi::TaskCompletion) override {
    ADD_FAILURE() << "no command expected";
  }
  void ManageTasks(scsi::TmfRequest, scsi::TmfCompletion) override {}
};

class FakeLifs : public LifView {
 public:
  std::vector<config::Lif> Lifs() const override {
    absl::MutexLock lock(&mu_);
    return {lif_};
  }
  void Set(config::Lif lif) {
    absl::MutexLock lock(&mu_);
    lif_ = std::move(lif);
  }

 private:
  mutable absl::Mutex mu_;
  config::Lif lif_;
};

// A listening socket on 127.0.0.1:port (port 0: any); -1 on failure.
int Listen(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

uint16_t PortOf(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

bool Eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class LifPortalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int probe = Listen(0);
    ASSERT_GE(probe, 0);
    port_ = PortOf(probe);
    close(probe);
    auto server = iscsi::Server::Create(iscsi::TargetOptions(),
                                        std::make_shared<iscsi::PortalDirectory>(), router_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    LifPortals::Options options;
    options.node_name = "node-a";
    options.placement_changed = [this] { ++changes_; };
    options.hosted_changed = [this](const std::string& text) {
      absl::MutexLock lock(&mu_);
      published_ = text;
    };
    portals_ = std::make_unique<LifPortals>(options, *server_, lifs_);
  }
  void TearDown() override {
    portals_.reset();
    if (server_) server_->Shutdown();
  }
  config::Lif Lif(const std::string& node) {
    config::Lif lif;
    lif.set_name("lif-x");
    lif.set_address("127.0.0.1");
    lif.set_port(port_);
    lif.set_home_node("node-a");
    lif.set_relative_target_port_id(3);
    lif.set_target_portal_group(3);
    lif.set_current_node(node);
    return lif;
  }
  std::string Expected() const { return "127.0.0.1:" + std::to_string(port_) + "\n"; }
  std::string Published() {
    absl::MutexLock lock(&mu_);
    return published_;
  }

  uint16_t port_ = 0;
  NoCommands router_;
  std::unique_ptr<iscsi::Server> server_;
  FakeLifs lifs_;
  std::unique_ptr<LifPortals> portals_;
  std::atomic<int> changes_{0};
  absl::Mutex mu_;
  std::string published_;
};

TEST_F(LifPortalsTest, LeavingStopsListeningAndReportsTheChange) {
  lifs_.Set(Lif("node-a"));
  ASSERT_TRUE(portals_->Start().ok());
  EXPECT_EQ(portals_->HostedText(), Expected());
  EXPECT_EQ(Listen(port_), -1);  // we hold it
  lifs_.Set(Lif("node-b"));
  portals_->LifMoved(Lif("node-b"));
  EXPECT_EQ(changes_.load(), 1);
  ASSERT_TRUE(Eventually([&] { return portals_->HostedText().empty(); }));
  EXPECT_EQ(Published(), "");
  int fd = Listen(port_);  // released: the partner could bind it now
  EXPECT_GE(fd, 0);
  close(fd);
}

TEST_F(LifPortalsTest, ArrivingBindsOnceTheOldHostReleasesTheAddress) {
  lifs_.Set(Lif("node-b"));
  ASSERT_TRUE(portals_->Start().ok());
  EXPECT_EQ(portals_->HostedText(), "");
  int old_host = Listen(port_);
  ASSERT_GE(old_host, 0);
  lifs_.Set(Lif("node-a"));
  portals_->LifMoved(Lif("node-a"));
  EXPECT_EQ(changes_.load(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(portals_->HostedText(), "");  // still held: retrying
  close(old_host);
  ASSERT_TRUE(Eventually([&] { return portals_->HostedText() == Expected(); }));
  EXPECT_EQ(Published(), Expected());
}

TEST_F(LifPortalsTest, StartFailsWhenAHostedLifCannotBeBound) {
  int other = Listen(port_);
  ASSERT_GE(other, 0);
  lifs_.Set(Lif("node-a"));
  EXPECT_FALSE(portals_->Start().ok());
  close(other);
}

}  // namespace
}  // namespace appliance::daemon
