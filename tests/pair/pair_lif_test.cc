// LIF migration across the partner pair, with real processes and real
// initiators (libiscsi, iscsi-inq, qemu-img): faulting node-a's physical port
// e0a moves lif-a (127.0.0.2) to node-b within seconds; an initiator
// reconnecting to the same address keeps working, now proxied through node-b
// for node-a's LUN; RTPG reports the new ALUA states identically on every LIF;
// an existing session's next command gets UNIT ATTENTION 2A/06 (ASYMMETRIC
// ACCESS STATE CHANGED); port-up and a migration back restore the original
// picture.
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/harness/iscsi_client.h"

namespace {

using harness::Connect;
using harness::Initiator;
using harness::Task;

const char kTarget[] = "iqn.2026-11.com.example:appliance";
const char kLifA[] = "127.0.0.2:33260";
const char kLifB[] = "127.0.0.3:33260";

std::string Url(const char* portal, int lun) {
  return std::string("iscsi://") + portal + "/" + kTarget + "/" + std::to_string(lun);
}

struct Output {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command, returns its exit code and stdout.
Output Shell(const std::string& command) {
  Output result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.out.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class PairLifTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::string(getenv("TEST_TMPDIR")) + "/pair-lif";
    setenv("PAIR_ISCSI_PORT", "33260", 1);
    setenv("PAIR_MGMT_PORT", "38443", 1);
    setenv("PAIR_IC_PORT", "37100", 1);
    up_ = Shell(Pair("up") + " > " + dir_ + ".log 2>&1 || { tail -40 " + dir_ +
                ".log >&2; false; }").exit_code == 0;
  }
  static void TearDownTestSuite() { (void)Shell(Pair("down") + " > /dev/null 2>&1"); }
  void SetUp() override { ASSERT_TRUE(up_) << "pair up failed, see " << dir_ << ".log"; }

  static std::string Pair(const std::string& args) {
    return std::string(getenv("PAIR")) + " " + args.substr(0, args.find(' ')) + " " +
           dir_ + (args.find(' ') == std::string::npos ? "" : args.substr(args.find(' ')));
  }
  // appliancectl against node's REST endpoint.
  static Output Ctl(const std::string& node, const std::string& args) {
    return Shell(dir_ + "/bin/appliancectl --url=$(cat " + dir_ + "/" + node +
               "/mgmt.url) --token_file=" + dir_ + "/" + node + "/mgmt.token " + args +
               " 2>&1");
  }
  // Where node's REST endpoint says lif is hosted ("" when it cannot tell).
  static std::string HostOf(const std::string& node, const std::string& lif) {
    Output json = Ctl(node, "--json lif list");
    const size_t at = json.out.find("\"name\":\"" + lif + "\"");
    if (json.exit_code != 0 || at == std::string::npos) return "";
    const std::string key = "\"currentNode\":\"";
    const size_t value = json.out.find(key, at);
    if (value == std::string::npos) return "";
    const size_t start = value + key.size();
    return json.out.substr(start, json.out.find('"', start) - start);
  }
  // Waits (up to 20 s) until both nodes' REST endpoints place lif on node.
  static bool WaitHosted(const std::string& lif, const std::string& node) {
    for (int i = 0; i < 400; ++i) {
      if (HostOf("node-a", lif) == node && HostOf("node-b", lif) == node) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Waits (up to 20 s) until iscsi-inq through portal for lun succeeds.
  static bool WaitInquiry(const char* portal, int lun) {
    for (int i = 0; i < 400; ++i) {
      if (Shell("iscsi-inq " + Url(portal, lun) + " > /dev/null 2>&1").exit_code == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static std::string dir_;
  static bool up_;
};
std::string PairLifTest::dir_;
bool PairLifTest::up_ = false;

// group id -> ALUA state, from RTPG parameter data.
std::map<int, int> RtpgStates(const std::vector<uint8_t>& d) {
  std::map<int, int> groups;
  if (d.size() < 4) return groups;
  const size_t end = std::min<size_t>(
      d.size(), 4 + ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]));
  for (size_t p = 4; p + 8 <= end;) {
    groups[(d[p + 2] << 8) | d[p + 3]] = d[p] & 0x0f;
    p += 8 + 4 * d[p + 7];
  }
  return groups;
}

constexpr int kOptimized = 0x0;
constexpr int kNonOptimized = 0x1;

// RTPG for lun through portal (a fresh session), as group -> state; also
// checks that the other LIF answers the same.
std::map<int, int> Rtpg(const char* portal, const char* other, int lun) {
  Initiator via = Connect(Url(portal, lun), "iqn.2026-11.test:rtpg");
  Initiator via_other = Connect(Url(other, lun), "iqn.2026-11.test:rtpg");
  EXPECT_TRUE(via && via_other);
  if (!via || !via_other) return {};
  std::vector<uint8_t> data = harness::ReportTargetPortGroups(via.get(), lun);
  EXPECT_EQ(data, harness::ReportTargetPortGroups(via_other.get(), lun))
      << "RTPG differs between LIFs for LUN " << lun;
  return RtpgStates(data);
}

// TEST UNIT READY: 0 for GOOD, else (sense key << 16) | ASC/ASCQ, -1 when the
// command did not complete.
int TestUnitReady(iscsi_context* c, int lun) {
  Task t(iscsi_testunitready_sync(c, lun));
  if (!t) return -1;
  if (t->status == SCSI_STATUS_GOOD) return 0;
  if (t->status != SCSI_STATUS_CHECK_CONDITION) return -1;
  return (static_cast<int>(t->sense.key) << 16) | (t->sense.ascq & 0xffff);
}

constexpr int kAsymmetricAccessStateChanged = (SCSI_SENSE_UNIT_ATTENTION << 16) | 0x2a06;

TEST_F(PairLifTest, PortFaultMovesLifToPartnerAndMigrationBringsItBack) {
  // Sessions through lif-b, which stays on node-b all along: LUN 0 is node-a's
  // (its unit attentions live there), LUN 1 node-b's.
  Initiator watch0 = Connect(Url(kLifB, 0), "iqn.2026-11.test:watch0");
  Initiator watch1 = Connect(Url(kLifB, 1), "iqn.2026-11.test:watch1");
  ASSERT_TRUE(watch0 && watch1);
  ASSERT_EQ(TestUnitReady(watch0.get(), 0), 0);
  ASSERT_EQ(TestUnitReady(watch1.get(), 1), 0);
  std::map<int, int> before = Rtpg(kLifA, kLifB, 0);
  EXPECT_EQ(before, (std::map<int, int>{{1, kOptimized}, {2, kNonOptimized}}));

  // Fault node-a's e0a: lif-a moves to node-b.
  const auto start = std::chrono::steady_clock::now();
  Output fault = Shell(Pair("fault node-a port-down e0a") + " 2>&1");
  ASSERT_EQ(fault.exit_code, 0) << fault.out;
  EXPECT_NE(fault.out.find("port e0a down"), std::string::npos) << fault.out;
  ASSERT_TRUE(WaitHosted("lif-a", "node-b"));
  const double rest_seconds = SecondsSince(start);
  ASSERT_TRUE(WaitInquiry(kLifA, 0)) << "lif-a does not answer after the move";
  const double serve_seconds = SecondsSince(start);
  printf("lif-a moved: REST on both nodes after %.3f s, iscsi-inq through "
         "127.0.0.2 (node-b) after %.3f s\n", rest_seconds, serve_seconds);
  EXPECT_LT(serve_seconds, 5.0);
  EXPECT_EQ(Ctl("node-b", "lif list").out.find("lif-a") == std::string::npos, false);
  Output node_a = Ctl("node-a", "--json node");
  EXPECT_NE(node_a.out.find("\"name\":\"e0a\",\"address\":\"127.0.0.2\",\"up\":false"),
            std::string::npos)
      << node_a.out;
  Output node_b = Ctl("node-b", "--json node");
  EXPECT_NE(node_b.out.find("\"up\":true,\"lifs\":[\"lif-a\",\"lif-b\"]"), std::string::npos)
      << node_b.out;

  // The existing sessions are told once.
  EXPECT_EQ(TestUnitReady(watch0.get(), 0), kAsymmetricAccessStateChanged);
  EXPECT_EQ(TestUnitReady(watch0.get(), 0), 0);
  EXPECT_EQ(TestUnitReady(watch1.get(), 1), kAsymmetricAccessStateChanged);
  EXPECT_EQ(TestUnitReady(watch1.get(), 1), 0);

  // RTPG through lif-a (on node-b now): node-a's LUN is proxied on both LIFs,
  // node-b's is direct on both; identical through lif-b.
  EXPECT_EQ(Rtpg(kLifA, kLifB, 0),
            (std::map<int, int>{{1, kNonOptimized}, {2, kNonOptimized}}));
  EXPECT_EQ(Rtpg(kLifA, kLifB, 1), (std::map<int, int>{{1, kOptimized}, {2, kOptimized}}));

  // qemu-img through lif-a's address (proxied by node-b to node-a), read back
  // through lif-b.
  const std::string img = dir_ + "/img", back = dir_ + "/back";
  ASSERT_EQ(Shell("head -c 4M /dev/urandom > " + img).exit_code, 0);
  Output wrote = Shell("qemu-img convert -n -f raw -O raw " + img + " " + Url(kLifA, 0) + " 2>&1");
  ASSERT_EQ(wrote.exit_code, 0) << wrote.out;
  Output read = Shell("qemu-img convert -f raw -O raw " + Url(kLifB, 0) + " " + back + " 2>&1");
  ASSERT_EQ(read.exit_code, 0) << read.out;
  EXPECT_EQ(Shell("cmp -n 4194304 " + img + " " + back).exit_code, 0);

  // Moving it back needs the port up: 409 while it is down.
  Output refused = Shell(Pair("migrate lif-a node-a") + " 2>&1");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.out.find("HTTP 409"), std::string::npos) << refused.out;
  ASSERT_EQ(Shell(Pair("fault node-a port-up e0a") + " 2>&1").exit_code, 0);
  EXPECT_EQ(HostOf("node-a", "lif-a"), "node-b");  // nothing moves by itself
  const auto back_start = std::chrono::steady_clock::now();
  Output migrated = Shell(Pair("migrate lif-a node-a") + " 2>&1");
  ASSERT_EQ(migrated.exit_code, 0) << migrated.out;
  ASSERT_TRUE(WaitHosted("lif-a", "node-a"));
  ASSERT_TRUE(WaitInquiry(kLifA, 0));
  printf("lif-a back on node-a: serving after %.3f s\n", SecondsSince(back_start));
  Output again = Shell(Pair("migrate lif-a node-a") + " 2>&1");
  EXPECT_NE(again.out.find("HTTP 409"), std::string::npos) << again.out;
  Output nowhere = Shell(Pair("migrate lif-a node-z") + " 2>&1");
  EXPECT_NE(nowhere.out.find("HTTP 400"), std::string::npos) << nowhere.out;

  EXPECT_EQ(TestUnitReady(watch0.get(), 0), kAsymmetricAccessStateChanged);
  EXPECT_EQ(TestUnitReady(watch1.get(), 1), kAsymmetricAccessStateChanged);
  EXPECT_EQ(Rtpg(kLifA, kLifB, 0), before);
  EXPECT_EQ(Rtpg(kLifA, kLifB, 1), (std::map<int, int>{{1, kNonOptimized}, {2, kOptimized}}));
  // Direct again: the data written through the proxy is there.
  Output direct = Shell("qemu-img convert -f raw -O raw " + Url(kLifA, 0) + " " + back + " 2>&1");
  ASSERT_EQ(direct.exit_code, 0) << direct.out;
  EXPECT_EQ(Shell("cmp -n 4194304 " + img + " " + back).exit_code, 0);
}

}  // namespace
