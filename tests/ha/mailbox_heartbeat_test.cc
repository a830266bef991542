#include "appliance/ha/mailbox_heartbeat.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/ha/test_util.h"

namespace appliance::ha {
namespace {

using ::appliance::ha::testing::FakeClock;
using ::appliance::ha::testing::MakeTempDir;
using ::appliance::ha::testing::WaitFor;

Fence FenceAgainst(const std::string& node, uint64_t epoch) {
  Fence f;
  f.set_fenced_node(node);
  f.set_epoch(epoch);
  f.set_reason("takeover");
  f.set_since_unix_micros(absl::ToUnixMicros(absl::Now()));
  return f;
}

// Records what one heartbeat's listener saw.
struct Seen {
  absl::Mutex mu;
  int calls = 0;
  std::vector<PartnerVerdict> verdicts;
  std::vector<bool> isolated;
  std::vector<bool> fenced;

  void Attach(MailboxHeartbeat* hb) {
    hb->AddListener([this, hb] {
      absl::MutexLock lock(&mu);
      ++calls;
      verdicts.push_back(hb->verdict());
      isolated.push_back(hb->self_isolated());
      fenced.push_back(hb->fenced_by_partner().has_value());
    });
  }
  bool SawVerdict(PartnerVerdict v) {
    absl::MutexLock lock(&mu);
    for (PartnerVerdict x : verdicts) {
      if (x == v) return true;
    }
    return false;
  }
  std::optional<bool> LastFenced() {
    absl::MutexLock lock(&mu);
    if (fenced.empty()) return std::nullopt;
    return fenced.back();
  }
  int Calls() {
    absl::MutexLock lock(&mu);
    return calls;
  }
};

// Two nodes on one shared directory; the interconnect is one flag that both
// see (a cut link is cut both ways).
class HeartbeatPairTest : public ::testing::Test {
 protected:
  std::unique_ptr<MailboxHeartbeat> Make(const std::string& own,
                                         const std::string& partner,
                                         MailboxHeartbeat::Options options,
                                         std::atomic<bool>* link) {
    auto mailbox = Mailbox::Open(dir_, own, partner);
    EXPECT_TRUE(mailbox.ok()) << mailbox.status();
    if (!mailbox.ok()) return nullptr;
    auto hb = MailboxHeartbeat::Create(
        std::move(*mailbox), [] { return HA_ACTIVE; },
        [link] { return link->load(); }, options);
    EXPECT_TRUE(hb.ok()) << hb.status();
    return hb.ok() ? std::move(*hb) : nullptr;
  }

  // Real threads: interval 20 ms, detection 300 ms.
  static MailboxHeartbeat::Options Fast() {
    MailboxHeartbeat::Options o;
    o.interval = absl::Milliseconds(20);
    o.detector.detection_time = absl::Milliseconds(300);
    return o;
  }

  void MakeStartedPair() {
    a_ = Make("node-a", "node-b", Fast(), &link_);
    b_ = Make("node-b", "node-a", Fast(), &link_);
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
    seen_a_.Attach(a_.get());
    seen_b_.Attach(b_.get());
    a_->Start();
    b_->Start();
    ASSERT_TRUE(WaitFor(
        [&] {
          return a_->verdict() == PartnerVerdict::kAlive &&
                 b_->verdict() == PartnerVerdict::kAlive;
        },
        absl::Seconds(5)))
        << PartnerVerdictName(a_->verdict()) << " "
        << PartnerVerdictName(b_->verdict());
  }

  std::string dir_ = MakeTempDir("hb");
  std::atomic<bool> link_{true};
  Seen seen_a_, seen_b_;
  std::unique_ptr<MailboxHeartbeat> a_, b_;
};

TEST_F(HeartbeatPairTest, CreateValidatesItsArguments) {
  auto mailbox = [&] {
    return std::move(*Mailbox::Open(dir_, "node-a", "node-b"));
  };
  auto up = [] { return true; };
  auto state = [] { return HA_ACTIVE; };
  EXPECT_TRUE(absl::IsInvalidArgument(
      MailboxHeartbeat::Create(nullptr, state, up).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      MailboxHeartbeat::Create(mailbox(), nullptr, up).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      MailboxHeartbeat::Create(mailbox(), state, nullptr).status()));
  MailboxHeartbeat::Options slow;
  slow.interval = absl::Milliseconds(300);  // > 2 s / 8
  EXPECT_TRUE(absl::IsInvalidArgument(
      MailboxHeartbeat::Create(mailbox(), state, up, slow).status()));
  MailboxHeartbeat::Options zero;
  zero.interval = absl::ZeroDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(
      MailboxHeartbeat::Create(mailbox(), state, up, zero).status()));
  EXPECT_TRUE(MailboxHeartbeat::Create(mailbox(), state, up).ok());
}

// --- Deterministic: a fake clock and Tick() ----------------------------------

class TickedPairTest : public HeartbeatPairTest {
 protected:
  // The heartbeats use clock_ until they are gone.
  ~TickedPairTest() override {
    a_.reset();
    b_.reset();
  }

  MailboxHeartbeat::Options Ticked() {
    MailboxHeartbeat::Options o;  // interval 100 ms, detection 2 s
    o.now = clock_.AsFunction();
    return o;
  }
  void Step() {
    clock_.Advance(absl::Milliseconds(100));
    a_->Tick();
    b_->Tick();
  }
  FakeClock clock_;
};

TEST_F(TickedPairTest, TwoNodesSeeEachOtherAlive) {
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  b_ = Make("node-b", "node-a", Ticked(), &link_);
  ASSERT_NE(b_, nullptr);
  seen_a_.Attach(a_.get());
  EXPECT_EQ(a_->verdict(), PartnerVerdict::kUnknown);
  for (int i = 0; i < 5; ++i) Step();
  EXPECT_EQ(a_->verdict(), PartnerVerdict::kAlive);
  EXPECT_EQ(b_->verdict(), PartnerVerdict::kAlive);
  EXPECT_EQ(a_->beats_written(), 5u);
  ASSERT_TRUE(a_->partner_record().has_value());
  EXPECT_EQ(a_->partner_record()->node_name(), "node-b");
  EXPECT_EQ(a_->partner_record()->beat(), 4u);  // b ticks after a
  EXPECT_EQ(a_->partner_record()->state(), HA_ACTIVE);
  EXPECT_EQ(a_->partner_record()->incarnation(), b_->incarnation());
  EXPECT_TRUE(a_->partner_mailbox_seen());
  EXPECT_EQ(a_->interconnect_last_up(), clock_.Now());
  EXPECT_FALSE(a_->self_isolated());
  // unknown -> alive, one notification.
  EXPECT_EQ(seen_a_.Calls(), 1);
}

TEST_F(TickedPairTest, IsolatedNodeStopsBeforeItsPartnerTakesOver) {
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  b_ = Make("node-b", "node-a", Ticked(), &link_);
  ASSERT_NE(b_, nullptr);
  for (int i = 0; i < 5; ++i) Step();
  ASSERT_EQ(a_->verdict(), PartnerVerdict::kAlive);

  // node-b loses the shared storage and the interconnect is cut.
  b_->SetWritesStopped(true);
  link_ = false;
  const absl::Time cut = clock_.Now();
  std::optional<absl::Time> b_isolated, a_dead;
  for (int i = 0; i < 100; ++i) {
    Step();
    if (!b_isolated && b_->self_isolated()) b_isolated = clock_.Now();
    if (!a_dead && a_->verdict() == PartnerVerdict::kDead)
      a_dead = clock_.Now();
    ASSERT_NE(b_->verdict(), PartnerVerdict::kDead);
  }
  ASSERT_TRUE(b_isolated.has_value());
  ASSERT_TRUE(a_dead.has_value());
  EXPECT_LT(*b_isolated, *a_dead);
  EXPECT_LE(*b_isolated - cut, absl::Seconds(1) + absl::Milliseconds(100));
  EXPECT_GE(*a_dead - cut, absl::Seconds(2));
  EXPECT_LE(*a_dead - cut, absl::Seconds(2) + absl::Milliseconds(100));
  EXPECT_EQ(b_->verdict(), PartnerVerdict::kInterconnectLost);
  EXPECT_TRUE(b_->writes_stopped());
}

TEST_F(TickedPairTest, RestartKeepsBeatAndFence) {
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  b_ = Make("node-b", "node-a", Ticked(), &link_);
  ASSERT_NE(b_, nullptr);
  EXPECT_FALSE(a_->restored_record().has_value());
  for (int i = 0; i < 3; ++i) Step();
  a_->SetFence(FenceAgainst("node-b", 4));
  Step();
  EXPECT_TRUE(b_->fenced_by_partner().has_value());
  const uint64_t old_incarnation = a_->incarnation();
  a_->Stop();  // writes beat 5 with shutting_down and the fence
  a_.reset();

  a_ = Make("node-a", "node-b", Ticked(), &link_);
  ASSERT_NE(a_, nullptr);
  ASSERT_TRUE(a_->restored_record().has_value());
  EXPECT_TRUE(a_->restore_status().ok());
  EXPECT_EQ(a_->restored_record()->beat(), 5u);
  EXPECT_TRUE(a_->restored_record()->shutting_down());
  EXPECT_GT(a_->incarnation(), old_incarnation);
  ASSERT_TRUE(a_->fence().has_value());
  EXPECT_EQ(a_->fence()->fenced_node(), "node-b");
  EXPECT_EQ(a_->fence()->epoch(), 4u);

  Step();
  ASSERT_TRUE(b_->partner_record().has_value());
  EXPECT_EQ(b_->partner_record()->beat(), 6u);
  EXPECT_FALSE(b_->partner_record()->shutting_down());
  ASSERT_TRUE(b_->fenced_by_partner().has_value());
  EXPECT_EQ(b_->fenced_by_partner()->epoch(), 4u);

  // Giveback.
  a_->SetFence(std::nullopt);
  Step();
  EXPECT_FALSE(b_->fenced_by_partner().has_value());
}

TEST_F(TickedPairTest, FencedNodeKnowsItAfterItsOwnRestart) {
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  b_ = Make("node-b", "node-a", Ticked(), &link_);
  ASSERT_NE(b_, nullptr);
  a_->SetFence(FenceAgainst("node-b", 1));
  Step();
  b_->Stop();
  b_.reset();
  b_ = Make("node-b", "node-a", Ticked(), &link_);
  ASSERT_NE(b_, nullptr);
  EXPECT_FALSE(b_->fence().has_value());  // b fenced nobody
  b_->Tick();
  EXPECT_TRUE(b_->partner_mailbox_seen());
  EXPECT_TRUE(b_->fenced_by_partner().has_value());
}

TEST_F(TickedPairTest, UnreadableOwnRecordIsReported) {
  {
    auto mailbox = Mailbox::Open(dir_, "node-a", "node-b");
    ASSERT_TRUE(mailbox.ok());
    int fd = ::open((*mailbox)->own_path().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string junk(kMailboxBlockSize, 'j');
    ASSERT_EQ(::write(fd, junk.data(), junk.size()),
              static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  ASSERT_NE(a_, nullptr);
  EXPECT_TRUE(absl::IsDataLoss(a_->restore_status())) << a_->restore_status();
  EXPECT_FALSE(a_->restored_record().has_value());
  EXPECT_FALSE(a_->fence().has_value());
  a_->Tick();  // and writes a good record over it
  auto mailbox = Mailbox::Open(dir_, "node-b", "node-a");
  ASSERT_TRUE(mailbox.ok());
  EXPECT_TRUE((*mailbox)->ReadPartner().ok());
}

TEST_F(TickedPairTest, StopWithoutStartWritesNothing) {
  a_ = Make("node-a", "node-b", Ticked(), &link_);
  ASSERT_NE(a_, nullptr);
  a_->Stop();
  a_->Stop();  // idempotent
  auto mailbox = Mailbox::Open(dir_, "node-b", "node-a");
  ASSERT_TRUE(mailbox.ok());
  EXPECT_TRUE(absl::IsNotFound((*mailbox)->ReadPartner().status()));
}

// --- Real threads, interval 20 ms, detection 300 ms --------------------------

TEST_F(HeartbeatPairTest, TwoNodesAlive) {
  MakeStartedPair();
  EXPECT_GT(a_->beats_written(), 0u);
  EXPECT_GT(b_->beats_written(), 0u);
  EXPECT_FALSE(a_->self_isolated());
  EXPECT_FALSE(b_->self_isolated());
  EXPECT_FALSE(a_->fenced_by_partner().has_value());
  // Listeners run after the accessors show the change.
  EXPECT_TRUE(
      WaitFor([&] { return seen_a_.SawVerdict(PartnerVerdict::kAlive); },
              absl::Seconds(5)));
}

TEST_F(HeartbeatPairTest, CutLinkAndStoppedWritesDeclareTheIsolatedNodeDead) {
  MakeStartedPair();
  const absl::Time cut = absl::Now();
  b_->SetWritesStopped(true);
  link_ = false;

  ASSERT_TRUE(WaitFor([&] { return a_->verdict() == PartnerVerdict::kDead; },
                      absl::Seconds(5)))
      << PartnerVerdictName(a_->verdict());
  const absl::Duration took = absl::Now() - cut;
  // Never before the detection time (less the beat or two node-a may have
  // seen last before the cut).
  EXPECT_GE(took, absl::Milliseconds(300) - absl::Milliseconds(100))
      << absl::FormatDuration(took);
  ASSERT_TRUE(WaitFor([&] { return b_->self_isolated(); }, absl::Seconds(5)));
  EXPECT_EQ(b_->verdict(), PartnerVerdict::kInterconnectLost);
  EXPECT_FALSE(seen_b_.SawVerdict(PartnerVerdict::kDead));
  EXPECT_FALSE(a_->self_isolated());
  std::cout << "node-a saw node-b dead " << absl::FormatDuration(took)
            << " after the cut\n";

  // node-b recovers: both links back.
  b_->SetWritesStopped(false);
  link_ = true;
  EXPECT_TRUE(WaitFor(
      [&] {
        return a_->verdict() == PartnerVerdict::kAlive && !b_->self_isolated();
      },
      absl::Seconds(5)));
}

TEST_F(HeartbeatPairTest, CutInterconnectAloneNeverDeclaresDeath) {
  MakeStartedPair();
  link_ = false;
  ASSERT_TRUE(WaitFor(
      [&] {
        return a_->verdict() == PartnerVerdict::kInterconnectLost &&
               b_->verdict() == PartnerVerdict::kInterconnectLost;
      },
      absl::Seconds(5)));
  // Three detection times.
  absl::SleepFor(absl::Milliseconds(900));
  EXPECT_EQ(a_->verdict(), PartnerVerdict::kInterconnectLost);
  EXPECT_EQ(b_->verdict(), PartnerVerdict::kInterconnectLost);
  EXPECT_FALSE(seen_a_.SawVerdict(PartnerVerdict::kDead));
  EXPECT_FALSE(seen_b_.SawVerdict(PartnerVerdict::kDead));
  EXPECT_FALSE(a_->self_isolated());
  EXPECT_FALSE(b_->self_isolated());
}

TEST_F(HeartbeatPairTest, StoppedWritesWithInterconnectUpIsMailboxLost) {
  MakeStartedPair();
  b_->SetWritesStopped(true);
  ASSERT_TRUE(
      WaitFor([&] { return a_->verdict() == PartnerVerdict::kMailboxLost; },
              absl::Seconds(5)));
  EXPECT_FALSE(b_->self_isolated());  // the interconnect still carries it
}

TEST_F(HeartbeatPairTest, FenceReachesThePartnerAndClears) {
  MakeStartedPair();
  const int calls_before = seen_b_.Calls();
  const absl::Time set = absl::Now();
  a_->SetFence(FenceAgainst("node-b", 1));
  ASSERT_TRUE(WaitFor([&] { return b_->fenced_by_partner().has_value(); },
                      absl::Seconds(5)));
  std::cout << "fence seen after " << absl::FormatDuration(absl::Now() - set)
            << "\n";
  EXPECT_EQ(b_->fenced_by_partner()->fenced_node(), "node-b");
  EXPECT_EQ(b_->fenced_by_partner()->epoch(), 1u);
  EXPECT_FALSE(a_->fenced_by_partner().has_value());
  // Listeners run after the accessors show the change.
  EXPECT_TRUE(
      WaitFor([&] { return seen_b_.LastFenced() == true; }, absl::Seconds(5)));
  EXPECT_GT(seen_b_.Calls(), calls_before);

  a_->SetFence(std::nullopt);
  ASSERT_TRUE(WaitFor([&] { return !b_->fenced_by_partner().has_value(); },
                      absl::Seconds(5)));
  EXPECT_TRUE(
      WaitFor([&] { return seen_b_.LastFenced() == false; }, absl::Seconds(5)));
}

TEST_F(HeartbeatPairTest, StopWritesAShuttingDownRecord) {
  MakeStartedPair();
  b_->Stop();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = a_->partner_record();
        return r.has_value() && r->shutting_down();
      },
      absl::Seconds(5)));
  ASSERT_TRUE(
      WaitFor([&] { return a_->verdict() == PartnerVerdict::kMailboxLost; },
              absl::Seconds(5)));
  // Its interconnect goes away too: dead after the detection time.
  const absl::Time cut = absl::Now();
  link_ = false;
  ASSERT_TRUE(WaitFor([&] { return a_->verdict() == PartnerVerdict::kDead; },
                      absl::Seconds(5)));
  EXPECT_GE(absl::Now() - cut,
            absl::Milliseconds(300) - absl::Milliseconds(40));
}

TEST_F(HeartbeatPairTest, StopWithWritesStoppedWritesNothing) {
  MakeStartedPair();
  b_->SetWritesStopped(true);
  const uint64_t beats = b_->beats_written();
  b_->Stop();
  EXPECT_EQ(b_->beats_written(), beats);
  auto mailbox = Mailbox::Open(dir_, "node-a", "node-b");
  ASSERT_TRUE(mailbox.ok());
  auto r = (*mailbox)->ReadPartner();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->shutting_down());
}

// Shared storage that hangs instead of failing: the I/O thread blocks in the
// partner's mailbox (here a FIFO nobody writes), so this node's own writes
// stop too. The observing thread must still isolate the node.
TEST_F(HeartbeatPairTest, HungStorageIsolatesTheNode) {
  auto probe = Mailbox::Open(dir_, "node-x", "node-b");  // creates .ha
  ASSERT_TRUE(probe.ok());
  const std::string fifo = Mailbox::PathFor(dir_, "node-a");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  // Unblocks the read (a writer end opens and closes) and removes the FIFO,
  // also when an assertion ends the test early (else Stop() would hang).
  auto unblock = [fifo] {
    int fd = -1;
    bool opened = WaitFor(
        [&] {
          fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
          return fd >= 0;
        },
        absl::Seconds(5));
    ::unlink(fifo.c_str());
    if (opened) ::close(fd);
    return opened;
  };
  struct Cleanup {
    std::function<bool()> run;
    ~Cleanup() {
      if (run) run();
    }
  } cleanup{unblock};

  link_ = false;
  b_ = Make("node-b", "node-a", Fast(), &link_);
  ASSERT_NE(b_, nullptr);
  seen_b_.Attach(b_.get());
  b_->Start();
  ASSERT_TRUE(WaitFor([&] { return b_->self_isolated(); }, absl::Seconds(5)));
  EXPECT_GE(b_->beats_written(), 1u);
  // Past the detection time: never sees its partner dead while isolated.
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_NE(b_->verdict(), PartnerVerdict::kDead);
  EXPECT_FALSE(seen_b_.SawVerdict(PartnerVerdict::kDead));

  cleanup.run = nullptr;
  ASSERT_TRUE(unblock());
  // Writes flow again.
  EXPECT_TRUE(WaitFor([&] { return !b_->self_isolated(); }, absl::Seconds(5)));
  b_->Stop();
}

}  // namespace
}  // namespace appliance::ha
