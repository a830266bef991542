#include "appliance/ha/failure_detector.h"

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace appliance::ha {
namespace {

constexpr absl::Duration kDetection = absl::Seconds(2);
constexpr absl::Duration kTick = absl::Milliseconds(100);

MailboxRecord Record(uint64_t incarnation, uint64_t beat,
                     bool shutting_down = false) {
  MailboxRecord r;
  r.set_node_name("node-b");
  r.set_incarnation(incarnation);
  r.set_beat(beat);
  r.set_state(HA_ACTIVE);
  r.set_shutting_down(shutting_down);
  return r;
}

MailboxRecord Fenced(MailboxRecord r, const std::string& node,
                     uint64_t epoch = 1) {
  r.mutable_fence()->set_fenced_node(node);
  r.mutable_fence()->set_epoch(epoch);
  r.mutable_fence()->set_reason("takeover");
  return r;
}

// Drives a detector for node-a as the heartbeat would: a partner (node-b)
// whose mailbox beats or not, an interconnect up or down, own writes that
// succeed or fail, one observation per tick.
class DetectorTest : public ::testing::Test {
 protected:
  DetectorTest() : detector_("node-a", Options()) {}

  static FailureDetector::Options Options() {
    FailureDetector::Options o;
    o.detection_time = kDetection;
    return o;
  }

  // One observation at now_ (the partner beats first if beating_).
  void Observe() {
    if (beating_) ++beat_;
    absl::StatusOr<MailboxRecord> read =
        partner_read_.has_value() ? *partner_read_
                                  : absl::StatusOr<MailboxRecord>(Record(
                                        incarnation_, beat_, shutting_down_));
    detector_.Observe(now_, interconnect_up_, read, own_write_ok_);
  }
  // Observes every tick for d (the last observation at now_ + d).
  void Run(absl::Duration d) {
    const absl::Time end = now_ + d;
    while (now_ < end) {
      now_ += kTick;
      Observe();
    }
  }
  // Runs until verdict() == want, at most `limit`; returns how long it took
  // (or InfiniteDuration).
  absl::Duration RunUntil(PartnerVerdict want, absl::Duration limit) {
    const absl::Time start = now_;
    while (now_ - start < limit) {
      now_ += kTick;
      Observe();
      if (detector_.verdict() == want) return now_ - start;
    }
    return absl::InfiniteDuration();
  }
  // Both links healthy and the partner seen beating.
  void BecomeAlive() {
    Observe();
    Run(kTick * 2);
    ASSERT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
  }

  FailureDetector detector_;
  absl::Time now_ = absl::FromUnixSeconds(5000);
  bool interconnect_up_ = true;
  bool beating_ = true;
  bool own_write_ok_ = true;
  bool shutting_down_ = false;
  uint64_t incarnation_ = 111;
  uint64_t beat_ = 10;
  // Overrides the partner's record (an error, or a record with a fence).
  std::optional<absl::StatusOr<MailboxRecord>> partner_read_;
};

TEST_F(DetectorTest, UnknownBeforeAnyObservation) {
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  EXPECT_FALSE(detector_.self_isolated(now_));
  EXPECT_FALSE(detector_.fenced_by_partner().has_value());
  EXPECT_FALSE(detector_.partner_mailbox_seen());
  EXPECT_EQ(detector_.partner_mailbox_last_change(), absl::InfinitePast());
  EXPECT_EQ(detector_.interconnect_last_up(), absl::InfinitePast());
}

TEST_F(DetectorTest, BothLinksUpIsAlive) {
  Observe();
  // The first record is only a baseline.
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  EXPECT_TRUE(detector_.partner_mailbox_seen());
  now_ += kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
  EXPECT_EQ(detector_.partner_mailbox_last_change(), now_);
  EXPECT_EQ(detector_.interconnect_last_up(), now_);
  Run(absl::Minutes(1));
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
}

TEST_F(DetectorTest, CutInterconnectWithBeatingMailboxIsNeverDead) {
  BecomeAlive();
  interconnect_up_ = false;
  const absl::Time cut = now_;
  for (int i = 0; i < 36000; ++i) {  // an hour of ticks
    now_ += kTick;
    Observe();
    ASSERT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost) << i;
  }
  EXPECT_LE(detector_.interconnect_last_up(), cut);
  EXPECT_FALSE(detector_.self_isolated(now_));
}

TEST_F(DetectorTest, FrozenMailboxWithInterconnectUpIsMailboxLost) {
  BecomeAlive();
  beating_ = false;
  const absl::Time last_change = detector_.partner_mailbox_last_change();
  // Still alive within detection_time of the last change.
  Run(kDetection - kTick * 2);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
  EXPECT_EQ(RunUntil(PartnerVerdict::kMailboxLost, kTick * 3), kTick * 2);
  EXPECT_EQ(now_ - last_change, kDetection);
  Run(absl::Hours(1));
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kMailboxLost);
}

TEST_F(DetectorTest, BothSilentIsDeadExactlyAfterDetectionTime) {
  BecomeAlive();
  // The partner dies: its last beat was seen at now_, and the interconnect
  // was up at now_.
  beating_ = false;
  interconnect_up_ = false;
  const absl::Time death = now_;
  while (now_ + kTick < death + kDetection) {
    now_ += kTick;
    Observe();
    ASSERT_NE(detector_.verdict(), PartnerVerdict::kDead)
        << absl::FormatDuration(now_ - death);
    ASSERT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  }
  now_ = death + kDetection - absl::Milliseconds(1);
  Observe();
  EXPECT_NE(detector_.verdict(), PartnerVerdict::kDead);
  now_ = death + kDetection;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kDead);
  Run(absl::Minutes(5));
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kDead);
}

TEST_F(DetectorTest, DeadNeedsTheInterconnectSilentForDetectionTimeToo) {
  BecomeAlive();
  beating_ = false;
  Run(absl::Minutes(1));
  ASSERT_EQ(detector_.verdict(), PartnerVerdict::kMailboxLost);
  interconnect_up_ = false;
  const absl::Time cut = now_;
  const absl::Duration took = RunUntil(PartnerVerdict::kDead, absl::Minutes(1));
  EXPECT_EQ(took, kDetection);
  EXPECT_EQ(now_ - cut, kDetection);
}

TEST_F(DetectorTest, DeadNeedsTheMailboxSilentForDetectionTimeToo) {
  BecomeAlive();
  interconnect_up_ = false;
  Run(absl::Minutes(1));
  ASSERT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  beating_ = false;
  const absl::Time last_change = detector_.partner_mailbox_last_change();
  EXPECT_EQ(RunUntil(PartnerVerdict::kDead, absl::Minutes(1)),
            kDetection);  // the last change was at the previous tick's now
  EXPECT_EQ(now_ - last_change, kDetection);
}

TEST_F(DetectorTest, BriefInterconnectBlipDoesNotAddUp) {
  BecomeAlive();
  beating_ = false;
  interconnect_up_ = false;
  Run(kDetection - kTick);
  interconnect_up_ = true;  // one tick up resets the interconnect's clock
  Run(kTick);
  interconnect_up_ = false;
  Run(kDetection - kTick);
  EXPECT_NE(detector_.verdict(), PartnerVerdict::kDead);
  Run(kTick);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kDead);
}

TEST_F(DetectorTest, PartnerRestartCountsAsAlive) {
  BecomeAlive();
  beating_ = false;
  interconnect_up_ = false;
  Run(kDetection * 2);
  ASSERT_EQ(detector_.verdict(), PartnerVerdict::kDead);
  // A new process: new incarnation, beat starting from a lower number and
  // not beating yet. One record of the new incarnation is a change.
  incarnation_ = 222;
  beat_ = 1;
  now_ += kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  interconnect_up_ = true;
  now_ += kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
}

TEST_F(DetectorTest, RestartWithTheSameBeatIsStillAChange) {
  BecomeAlive();
  beating_ = false;
  interconnect_up_ = false;
  Run(kDetection - kTick * 2);
  incarnation_ = 333;  // same beat number, another process
  now_ += kTick;
  Observe();
  const absl::Time change = detector_.partner_mailbox_last_change();
  EXPECT_EQ(change, now_);
  Run(kDetection - kTick);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
}

TEST_F(DetectorTest, StartupOldRecordIsNotDeadUntilDetectionTime) {
  // A restarting node finds the partner's record and no interconnect: the
  // record may be old, but it proves nothing before detection_time.
  beating_ = false;
  interconnect_up_ = false;
  const absl::Time start = now_;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  EXPECT_EQ(detector_.started(), start);
  while (now_ + kTick < start + kDetection) {
    now_ += kTick;
    Observe();
    ASSERT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  }
  now_ = start + kDetection;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kDead);
}

TEST_F(DetectorTest, StartupWithInterconnectUpAndStaleMailbox) {
  beating_ = false;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  EXPECT_EQ(RunUntil(PartnerVerdict::kMailboxLost, absl::Minutes(1)),
            kDetection);
}

TEST_F(DetectorTest, StartupPartnerBeatingBecomesAliveAtOnce) {
  interconnect_up_ = false;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  now_ += kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
}

TEST_F(DetectorTest, PartnerThatNeverWroteIsDeadAfterDetectionTime) {
  partner_read_ = absl::NotFoundError("no file");
  interconnect_up_ = false;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kUnknown);
  EXPECT_TRUE(detector_.partner_mailbox_seen());
  EXPECT_EQ(RunUntil(PartnerVerdict::kDead, absl::Minutes(1)), kDetection);
}

TEST_F(DetectorTest, FirstRecordAfterNoneIsAChange) {
  partner_read_ = absl::NotFoundError("no file");
  interconnect_up_ = false;
  Observe();
  Run(kTick * 5);
  partner_read_.reset();  // the partner writes its first record
  beating_ = false;
  now_ += kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  EXPECT_EQ(detector_.partner_mailbox_last_change(), now_);
}

TEST_F(DetectorTest, UnreadableMailboxGivesNoInformation) {
  BecomeAlive();
  interconnect_up_ = false;
  // Torn reads for a while: not a change, not a death either.
  partner_read_ = absl::DataLossError("torn");
  Run(kDetection - kTick * 2);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  partner_read_.reset();
  Run(kTick);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  // Unreadable for good: silent, so dead after detection_time.
  partner_read_ = absl::DataLossError("corrupt");
  const absl::Time last_change = detector_.partner_mailbox_last_change();
  RunUntil(PartnerVerdict::kDead, absl::Minutes(1));
  EXPECT_EQ(now_ - last_change, kDetection);
  // The last good record is kept.
  ASSERT_TRUE(detector_.partner_record().has_value());
  EXPECT_EQ(detector_.partner_record()->incarnation(), incarnation_);
}

TEST_F(DetectorTest, ShuttingDownRecordMeansStopped) {
  BecomeAlive();
  // The partner's clean stop: a last record with shutting_down.
  ++beat_;
  beating_ = false;
  shutting_down_ = true;
  now_ += kTick;
  Observe();
  EXPECT_TRUE(detector_.partner_shutting_down());
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kMailboxLost);
  const absl::Time stopped = now_;
  // Its interconnect goes down with it: dead once both are silent.
  interconnect_up_ = false;
  RunUntil(PartnerVerdict::kDead, absl::Minutes(1));
  EXPECT_EQ(now_ - stopped, kDetection);
  // It comes back.
  incarnation_ = 999;
  beat_ = 1;
  shutting_down_ = false;
  beating_ = true;
  interconnect_up_ = true;
  Run(kTick);
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kAlive);
}

TEST_F(DetectorTest, ShuttingDownAtStartupIsNotUnknown) {
  shutting_down_ = true;
  beating_ = false;
  interconnect_up_ = false;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kMailboxLost);
  // Still not dead before detection_time has passed since the start.
  EXPECT_EQ(RunUntil(PartnerVerdict::kDead, absl::Minutes(1)), kDetection);
}

TEST_F(DetectorTest, SelfIsolatedTiming) {
  BecomeAlive();
  // Own writes failing with the interconnect up: not isolated (the partner
  // sees this node through the interconnect and will not take over).
  own_write_ok_ = false;
  Run(absl::Minutes(1));
  EXPECT_FALSE(detector_.self_isolated(now_));

  // Interconnect down with own writes working: not isolated.
  own_write_ok_ = true;
  interconnect_up_ = false;
  Run(absl::Minutes(1));
  EXPECT_FALSE(detector_.self_isolated(now_));

  // Both: isolated once the writes have failed for detection_time / 2,
  // counted from the last successful write.
  const absl::Time last_ok = now_;
  own_write_ok_ = false;
  now_ += kTick;
  Observe();
  EXPECT_FALSE(detector_.self_isolated(now_));
  EXPECT_FALSE(detector_.self_isolated(last_ok + kDetection / 2 -
                                       absl::Milliseconds(1)));
  EXPECT_TRUE(detector_.self_isolated(last_ok + kDetection / 2));
  Run(kDetection / 2 - kTick);
  EXPECT_TRUE(detector_.self_isolated(now_));
  EXPECT_EQ(now_ - last_ok, kDetection / 2);

  // One good write ends it.
  own_write_ok_ = true;
  Run(kTick);
  EXPECT_FALSE(detector_.self_isolated(now_));
}

TEST_F(DetectorTest, SelfIsolatedAtStartupCountsFromStart) {
  own_write_ok_ = false;
  interconnect_up_ = false;
  const absl::Time start = now_;
  Observe();
  EXPECT_FALSE(detector_.self_isolated(now_));
  EXPECT_TRUE(detector_.self_isolated(start + kDetection / 2));
}

TEST_F(DetectorTest, SelfIsolatedNodeNeverSeesItsPartnerDead) {
  // This node lost the shared storage: its writes fail and it no longer sees
  // the partner's mailbox change. The partner is fine; this node must not
  // take over.
  BecomeAlive();
  interconnect_up_ = false;
  own_write_ok_ = false;
  partner_read_ = absl::UnavailableError("EIO");
  for (int i = 0; i < 600; ++i) {
    now_ += kTick;
    Observe();
    ASSERT_NE(detector_.verdict(), PartnerVerdict::kDead) << i;
  }
  EXPECT_TRUE(detector_.self_isolated(now_));
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kMailboxLost);
}

TEST_F(DetectorTest, IsolationComesBeforeThePartnersDetection) {
  // Both sides of one failure: node-a's writes stop and the interconnect is
  // cut. node-b (observing node-a's mailbox) must not reach kDead before
  // node-a has isolated itself.
  FailureDetector a("node-a", Options());
  FailureDetector b("node-b", Options());
  uint64_t a_beat = 1;
  absl::Time t = now_;
  auto record_of_a = [&] {
    MailboxRecord r = Record(1, a_beat);
    r.set_node_name("node-a");
    return r;
  };
  for (int i = 0; i < 10; ++i, t += kTick) {
    ++a_beat;
    a.Observe(t, true, Record(2, i), true);
    b.Observe(t, true, record_of_a(), true);
  }
  ASSERT_EQ(b.verdict(), PartnerVerdict::kAlive);
  std::optional<absl::Time> a_isolated, b_dead;
  for (int i = 10; i < 100; ++i, t += kTick) {
    a.Observe(t, false, Record(2, i), false);  // a's writes fail
    b.Observe(t, false, record_of_a(), true);  // a's beat frozen
    if (!a_isolated && a.self_isolated(t)) a_isolated = t;
    if (!b_dead && b.verdict() == PartnerVerdict::kDead) b_dead = t;
  }
  ASSERT_TRUE(a_isolated.has_value());
  ASSERT_TRUE(b_dead.has_value());
  EXPECT_LE(*b_dead - *a_isolated, kDetection / 2 + kTick);
  EXPECT_GE(*b_dead - *a_isolated, kDetection / 2 - kTick);
  EXPECT_EQ(a.verdict(), PartnerVerdict::kInterconnectLost);
}

TEST_F(DetectorTest, FencedByPartner) {
  BecomeAlive();
  EXPECT_FALSE(detector_.fenced_by_partner().has_value());
  // A fence against someone else, or against nobody, is not this node's.
  partner_read_ = Fenced(Record(incarnation_, ++beat_), "node-c");
  Run(kTick);
  EXPECT_FALSE(detector_.fenced_by_partner().has_value());
  partner_read_ = Fenced(Record(incarnation_, ++beat_), "");
  Run(kTick);
  EXPECT_FALSE(detector_.fenced_by_partner().has_value());

  partner_read_ = Fenced(Record(incarnation_, ++beat_), "node-a", 7);
  Run(kTick);
  ASSERT_TRUE(detector_.fenced_by_partner().has_value());
  EXPECT_EQ(detector_.fenced_by_partner()->epoch(), 7u);

  // It holds while the partner's mailbox cannot be read, or disappears.
  partner_read_ = absl::DataLossError("torn");
  Run(kTick * 3);
  EXPECT_TRUE(detector_.fenced_by_partner().has_value());
  partner_read_ = absl::NotFoundError("gone");
  Run(kTick * 3);
  EXPECT_TRUE(detector_.fenced_by_partner().has_value());

  // Giveback: the partner's next record carries no fence.
  partner_read_.reset();
  Run(kTick);
  EXPECT_FALSE(detector_.fenced_by_partner().has_value());
}

TEST_F(DetectorTest, FencedAtStartupFromTheFirstRecord) {
  // A fenced node that restarts learns it from the very first read.
  partner_read_ = Fenced(Record(1, 50), "node-a");
  Observe();
  EXPECT_TRUE(detector_.fenced_by_partner().has_value());
}

TEST_F(DetectorTest, TimeGoingBackwardsIsHeldAtTheLastObservation) {
  BecomeAlive();
  beating_ = false;
  interconnect_up_ = false;
  Run(kDetection - kTick);
  const absl::Time latest = now_;
  now_ = latest - absl::Hours(1);
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kInterconnectLost);
  now_ = latest + kTick;
  Observe();
  EXPECT_EQ(detector_.verdict(), PartnerVerdict::kDead);
}

TEST(PartnerVerdictTest, Names) {
  EXPECT_EQ(PartnerVerdictName(PartnerVerdict::kUnknown), "unknown");
  EXPECT_EQ(PartnerVerdictName(PartnerVerdict::kAlive), "alive");
  EXPECT_EQ(PartnerVerdictName(PartnerVerdict::kInterconnectLost),
            "interconnect-lost");
  EXPECT_EQ(PartnerVerdictName(PartnerVerdict::kMailboxLost), "mailbox-lost");
  EXPECT_EQ(PartnerVerdictName(PartnerVerdict::kDead), "dead");
}

}  // namespace
}  // namespace appliance::ha
