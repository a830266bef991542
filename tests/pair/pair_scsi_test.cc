// SCSI semantics across the partner pair, with libiscsi as the initiator and
// the pair harness running two real applianced processes: REPORT TARGET PORT
// GROUPS answers identically on both LIFs with states derived from ownership,
// and a persistent reservation taken through node-a's LIF is enforced for
// commands that arrive through node-b's LIF (they run on the owner).
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/harness/iscsi_client.h"

namespace {

using harness::Connect;
using harness::Initiator;

const char kTarget[] = "iqn.2026-11.com.example:appliance";
const char kPortA[] = "127.0.0.2:23260";
const char kPortB[] = "127.0.0.3:23260";

std::string Url(const char* portal, int lun) {
  return std::string("iscsi://") + portal + "/" + kTarget + "/" + std::to_string(lun);
}

class PairScsiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::string(getenv("TEST_TMPDIR")) + "/pair-scsi";
    setenv("PAIR_ISCSI_PORT", "23260", 1);
    setenv("PAIR_MGMT_PORT", "28443", 1);
    setenv("PAIR_IC_PORT", "27100", 1);
    std::string up = std::string(getenv("PAIR")) + " up " + dir_ + " > " +
                     dir_ + ".log 2>&1 || { tail -40 " + dir_ + ".log >&2; false; }";
    up_ = std::system(up.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::string down = std::string(getenv("PAIR")) + " down " + dir_ + " > /dev/null 2>&1";
    (void)std::system(down.c_str());
  }
  void SetUp() override { ASSERT_TRUE(up_) << "pair up failed, see " << dir_ << ".log"; }

  static std::string dir_;
  static bool up_;
};
std::string PairScsiTest::dir_;
bool PairScsiTest::up_ = false;

// group id -> (ALUA state, relative target port ids), from RTPG parameter data.
std::map<int, std::pair<int, std::vector<int>>> ParseRtpg(
    const std::vector<uint8_t>& d) {
  std::map<int, std::pair<int, std::vector<int>>> groups;
  if (d.size() < 4) return groups;
  size_t end = std::min<size_t>(d.size(), 4 + ((d[0] << 24) | (d[1] << 16) |
                                               (d[2] << 8) | d[3]));
  for (size_t p = 4; p + 8 <= end;) {
    int state = d[p] & 0x0f;
    int id = (d[p + 2] << 8) | d[p + 3];
    int ports = d[p + 7];
    std::vector<int> rtpis;
    for (int i = 0; i < ports && p + 8 + 4 * i + 4 <= end; ++i) {
      size_t q = p + 8 + 4 * i;
      rtpis.push_back((d[q + 2] << 8) | d[q + 3]);
    }
    groups[id] = {state, rtpis};
    p += 8 + 4 * ports;
  }
  return groups;
}

constexpr int kActiveOptimized = 0x0;
constexpr int kActiveNonOptimized = 0x1;

TEST_F(PairScsiTest, RtpgIsTheSameOnBothLifsAndFollowsOwnership) {
  for (int lun : {0, 1}) {
    Initiator via_a = Connect(Url(kPortA, lun), "iqn.2026-11.test:alua");
    Initiator via_b = Connect(Url(kPortB, lun), "iqn.2026-11.test:alua");
    ASSERT_TRUE(via_a && via_b);
    std::vector<uint8_t> a = harness::ReportTargetPortGroups(via_a.get(), lun);
    std::vector<uint8_t> b = harness::ReportTargetPortGroups(via_b.get(), lun);
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a, b) << "LUN " << lun << ": RTPG differs between LIFs";
    auto groups = ParseRtpg(a);
    ASSERT_EQ(groups.size(), 2u);
    // Group 1 is lif-a (rtpi 1, on node-a), group 2 lif-b (rtpi 2, node-b).
    // LUN 0 is node-a's, LUN 1 node-b's.
    EXPECT_EQ(groups[1].first, lun == 0 ? kActiveOptimized : kActiveNonOptimized);
    EXPECT_EQ(groups[2].first, lun == 1 ? kActiveOptimized : kActiveNonOptimized);
    EXPECT_EQ(groups[1].second, std::vector<int>{1});
    EXPECT_EQ(groups[2].second, std::vector<int>{2});
  }
}

TEST_F(PairScsiTest, ReservationThroughOneLifIsEnforcedThroughTheOther) {
  constexpr int kLun = 0;  // owned by node-a
  Initiator holder = Connect(Url(kPortA, kLun), "iqn.2026-11.test:holder");
  Initiator other_b = Connect(Url(kPortB, kLun), "iqn.2026-11.test:other");
  Initiator other_a = Connect(Url(kPortA, kLun), "iqn.2026-11.test:other");
  ASSERT_TRUE(holder && other_b && other_a);
  ASSERT_EQ(harness::PrRegister(holder.get(), kLun, 0x1234, false), SCSI_STATUS_GOOD);
  ASSERT_EQ(harness::PrReserve(holder.get(), kLun, 0x1234,
                               SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE),
            SCSI_STATUS_GOOD);
  std::vector<uint8_t> data = harness::Pattern(4096, 1);
  EXPECT_EQ(harness::Write16(other_b.get(), kLun, 0, data),
            SCSI_STATUS_RESERVATION_CONFLICT);
  EXPECT_EQ(harness::Write16(other_a.get(), kLun, 0, data),
            SCSI_STATUS_RESERVATION_CONFLICT);
  EXPECT_EQ(harness::Write16(holder.get(), kLun, 0, data), SCSI_STATUS_GOOD);
  // The registration made through node-a is visible through node-b.
  EXPECT_EQ(harness::PrReadKeys(other_b.get(), kLun), std::vector<uint64_t>{0x1234});
  ASSERT_EQ(harness::PrClear(holder.get(), kLun, 0x1234), SCSI_STATUS_GOOD);
  EXPECT_EQ(harness::Write16(other_b.get(), kLun, 0, data), SCSI_STATUS_GOOD);
}

}  // namespace
