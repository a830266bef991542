// The owner's Nvlog against a real NvlogReplica through the in-process fake
// transport: acknowledgement point, group commit, backpressure, link loss,
// resync, retire, timeouts.
#include "appliance/nvlog/nvlog.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "appliance/nvlog/nvlog_replica.h"
#include "gtest/gtest.h"
#include "tests/nvlog/fake_mirror_transport.h"
#include "tests/nvlog/test_util.h"

namespace nvlog {
namespace {

using nvlog_test::AppendDone;
using nvlog_test::AsString;
using nvlog_test::Bytes;
using nvlog_test::FakeMirrorTransport;

std::vector<uint64_t> Sequences(const std::vector<NvlogEntry>& entries) {
  std::vector<uint64_t> out;
  for (const NvlogEntry& e : entries) out.push_back(e.sequence);
  return out;
}

// Spins (yielding) until pred() or timeout: for owner-side states the fake
// transport does not see change (no sleeps).
template <typename Pred>
bool SpinUntil(Pred pred, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

class NvlogTest : public ::testing::Test {
 protected:
  static Nvlog::Options DefaultOptions() {
    Nvlog::Options o;
    o.node_name = "node-a";
    o.ack_timeout = absl::Seconds(30);
    o.reconnect_interval = absl::Milliseconds(5);
    return o;
  }

  void Start(Nvlog::Options options = DefaultOptions()) {
    auto log = Nvlog::Create(transport_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    ASSERT_TRUE(log_->WaitUntilMirrored(true, absl::Seconds(10)));
  }

  // Appends 4 KiB of `fill` (8 blocks of 512) at lba; returns the sequence.
  uint64_t Append(char fill, uint64_t lba, AppendDone& done, uint64_t lun = 1) {
    auto seq = log_->Append(lun, lba, 8, Bytes(fill), done.Callback());
    EXPECT_TRUE(seq.ok()) << seq.status();
    return seq.ok() ? *seq : 0;
  }

  NvlogReplica replica_;
  FakeMirrorTransport transport_{replica_};
  std::unique_ptr<Nvlog> log_;
};

TEST_F(NvlogTest, CompletesOnlyOnceThePartnerHoldsTheEntryAndItsCommit) {
  Start();
  transport_.SetHold(true);
  AppendDone done;
  const uint64_t seq = Append('a', 100, done, /*lun=*/7);
  EXPECT_EQ(seq, 1u);
  ASSERT_TRUE(transport_.WaitForQueued(1));
  EXPECT_FALSE(done.done());
  EXPECT_TRUE(replica_.Held().empty());

  // The data reaches the partner: held, not yet committed, not acknowledged.
  transport_.Release(1);
  ASSERT_TRUE(transport_.WaitForDelivered(1));
  ASSERT_TRUE(transport_.WaitForSent(2));  // the commit mark
  std::vector<NvlogEntry> held = replica_.Held();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_FALSE(held[0].committed);
  EXPECT_TRUE(replica_.CommittedUnretired().empty());
  EXPECT_FALSE(done.done());

  // The commit mark reaches it: now the host may be acknowledged.
  transport_.Release(1);
  ASSERT_TRUE(done.Wait());
  ASSERT_TRUE(done.result.ok()) << done.result.status();
  EXPECT_TRUE(done.result->mirrored);
  EXPECT_EQ(done.result->sequence, seq);
  held = replica_.Held();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_TRUE(held[0].committed);
  EXPECT_EQ(held[0].lun, 7u);
  EXPECT_EQ(held[0].lba, 100u);
  EXPECT_EQ(held[0].block_count, 8u);
  EXPECT_EQ(held[0].data, AsString(Bytes('a')));
  EXPECT_EQ(log_->unmirrored_writes(), 0u);
}

TEST_F(NvlogTest, ConcurrentAppendsShareRoundTrips) {
  Nvlog::Options o = DefaultOptions();
  o.max_batches_in_flight = 1;
  Start(o);
  transport_.SetHold(true);
  constexpr int kWrites = 32;
  std::vector<AppendDone> done(kWrites);
  Append('0', 0, done[0]);
  ASSERT_TRUE(transport_.WaitForSent(1));
  // While the first batch is in flight, 31 writers append concurrently.
  std::vector<std::thread> writers;
  for (int i = 1; i < kWrites; ++i) {
    writers.emplace_back([&, i] { Append('0' + i % 10, i * 8, done[i]); });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(transport_.batches_sent(), 1);
  transport_.SetHold(false);
  for (auto& d : done) {
    ASSERT_TRUE(d.Wait());
    ASSERT_TRUE(d.result.ok());
    EXPECT_TRUE(d.result->mirrored);
  }
  // [1] ; [2..32 + commit 1] ; [commit 32]
  EXPECT_LE(transport_.batches_sent(), 3);
  EXPECT_LT(transport_.batches_sent(), kWrites);
  EXPECT_EQ(log_->stats().mirrored_appends, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(replica_.CommittedUnretired().size(), static_cast<size_t>(kWrites));
}

TEST_F(NvlogTest, FullWindowHoldsEntriesBackWithoutBlockingAndNeverDrops) {
  Nvlog::Options o = DefaultOptions();
  o.max_bytes = 4 * 4096;
  Start(o);
  std::vector<AppendDone> done(6);
  for (int i = 0; i < 4; ++i) {
    Append('a' + i, i * 8, done[i]);
    ASSERT_TRUE(done[i].Wait());
  }
  // The partner holds 4 x 4096 bytes: two more writes return at once (the
  // caller is an event loop) but wait, unsent, for room.
  EXPECT_EQ(Append('e', 32, done[4]), 5u);
  EXPECT_EQ(Append('f', 40, done[5]), 6u);
  Nvlog::Stats s = log_->stats();
  EXPECT_EQ(s.append_waits, 2u);
  EXPECT_EQ(s.appends, 6u);
  EXPECT_EQ(s.bytes, 6u * 4096);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(done[4].done());
  EXPECT_EQ(replica_.Held().size(), 4u);
  // Retiring 2 frees nothing while 1 (older) is still held.
  ASSERT_TRUE(log_->Retire(2).ok());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(done[4].done());
  // Retiring 1 frees two entries on both sides: both waiting writes go.
  ASSERT_TRUE(log_->Retire(1).ok());
  for (int i = 4; i < 6; ++i) {
    ASSERT_TRUE(done[i].Wait());
    ASSERT_TRUE(done[i].result.ok());
    EXPECT_TRUE(done[i].result->mirrored);
  }
  s = log_->stats();
  EXPECT_EQ(s.unmirrored_appends, 0u);
  EXPECT_EQ(s.sessions_lost, 0u);
  EXPECT_EQ(s.bytes, 4u * 4096);
  EXPECT_EQ(Sequences(replica_.CommittedUnretired()),
            (std::vector<uint64_t>{3, 4, 5, 6}));
  EXPECT_EQ(replica_.stats().rejected, 0u);
}

TEST_F(NvlogTest, LinkDownTurnsUnmirroredAndCounts) {
  Start();
  AppendDone first;
  Append('a', 0, first);
  ASSERT_TRUE(first.Wait());
  EXPECT_TRUE(first.result->mirrored);

  // A write in flight when the link drops completes, unmirrored.
  transport_.SetHold(true);
  AppendDone in_flight;
  Append('b', 8, in_flight);
  ASSERT_TRUE(transport_.WaitForQueued(1));
  transport_.SetLinkUp(false);
  ASSERT_TRUE(in_flight.Wait());
  ASSERT_TRUE(in_flight.result.ok());
  EXPECT_FALSE(in_flight.result->mirrored);
  EXPECT_FALSE(log_->mirrored());

  // New writes complete at once (inside Append), unmirrored.
  AppendDone later;
  Append('c', 16, later);
  EXPECT_TRUE(later.done());
  ASSERT_TRUE(later.result.ok());
  EXPECT_FALSE(later.result->mirrored);
  EXPECT_EQ(log_->unmirrored_writes(), 2u);
  EXPECT_EQ(log_->stats().sessions_lost, 1u);
  // This node promised all three to the host.
  std::vector<NvlogEntry> entries = log_->Entries();
  ASSERT_EQ(entries.size(), 3u);
  for (const NvlogEntry& e : entries) EXPECT_TRUE(e.committed) << e.sequence;
}

TEST_F(NvlogTest, LinkBackResynchronisesBeforeReportingMirrored) {
  Start();
  std::vector<AppendDone> done(5);
  Append('a', 0, done[0]);
  Append('b', 8, done[1]);
  ASSERT_TRUE(done[0].Wait());
  ASSERT_TRUE(done[1].Wait());
  ASSERT_TRUE(log_->Retire(1).ok());

  transport_.SetLinkUp(false);
  ASSERT_TRUE(log_->WaitUntilMirrored(false, absl::Seconds(10)));
  Append('c', 16, done[2]);
  Append('d', 24, done[3]);
  Append('e', 32, done[4]);
  for (int i = 2; i < 5; ++i) EXPECT_FALSE(done[i].result->mirrored);
  ASSERT_TRUE(log_->Retire(4).ok());  // out of order: 2 and 3 still held

  transport_.SetHold(true);
  transport_.SetLinkUp(true);
  ASSERT_TRUE(transport_.WaitForSessions(2));
  ASSERT_TRUE(transport_.WaitForQueued(1));
  EXPECT_FALSE(log_->mirrored()) << "mirrored before the partner holds the log";
  EXPECT_FALSE(replica_.Snapshot().synced());
  EXPECT_FALSE(replica_.CheckConsistency().ok());

  transport_.SetHold(false);
  ASSERT_TRUE(log_->WaitUntilMirrored(true, absl::Seconds(10)));
  EXPECT_EQ(log_->stats().resyncs_completed, 2u);
  std::vector<NvlogEntry> owner = log_->Entries();
  std::vector<NvlogEntry> partner = replica_.Held();
  EXPECT_EQ(Sequences(owner), (std::vector<uint64_t>{2, 3, 4, 5}));
  ASSERT_EQ(Sequences(partner), Sequences(owner));
  for (size_t i = 0; i < owner.size(); ++i) {
    EXPECT_EQ(partner[i].data, owner[i].data);
    EXPECT_EQ(partner[i].lba, owner[i].lba);
    EXPECT_TRUE(partner[i].committed) << partner[i].sequence;
  }
  EXPECT_TRUE(replica_.Snapshot().synced());
  EXPECT_TRUE(replica_.CheckConsistency().ok());

  // And writes are mirrored again.
  AppendDone after;
  Append('f', 40, after);
  ASSERT_TRUE(after.Wait());
  EXPECT_TRUE(after.result->mirrored);
  EXPECT_EQ(log_->unmirrored_writes(), 3u);
}

TEST_F(NvlogTest, RetireMarksFreeMemoryOnBothSides) {
  Start();
  std::vector<AppendDone> done(3);
  for (int i = 0; i < 3; ++i) Append('a' + i, i * 8, done[i]);
  for (auto& d : done) ASSERT_TRUE(d.Wait());
  EXPECT_EQ(log_->stats().bytes, 3u * 4096);
  EXPECT_EQ(replica_.Snapshot().bytes(), 3u * 4096);

  ASSERT_TRUE(log_->Retire(2).ok());
  ASSERT_TRUE(log_->Retire(1).ok());
  EXPECT_EQ(log_->stats().bytes, 4096u);
  EXPECT_EQ(log_->stats().entries, 1u);
  ASSERT_TRUE(transport_.WaitUntil(
      [&] { return replica_.Snapshot().retired_through() == 2; }));
  EXPECT_EQ(Sequences(replica_.Held()), (std::vector<uint64_t>{3}));
  EXPECT_EQ(replica_.Snapshot().bytes(), 4096u);

  ASSERT_TRUE(log_->Retire(3).ok());
  ASSERT_TRUE(transport_.WaitUntil(
      [&] { return replica_.Snapshot().retired_through() == 3; }));
  EXPECT_TRUE(replica_.Held().empty());
  EXPECT_EQ(replica_.Snapshot().bytes(), 0u);
  EXPECT_EQ(log_->stats().bytes, 0u);
  EXPECT_EQ(log_->Retire(3).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(log_->Retire(99).code(), absl::StatusCode::kNotFound);
}

TEST_F(NvlogTest, UnansweredBatchTimesOutToUnmirroredThenRecovers) {
  Nvlog::Options o = DefaultOptions();
  o.ack_timeout = absl::Milliseconds(100);
  Start(o);
  transport_.SetHold(true);
  AppendDone done;
  Append('a', 0, done);
  ASSERT_TRUE(done.Wait());
  ASSERT_TRUE(done.result.ok());
  EXPECT_FALSE(done.result->mirrored);
  EXPECT_GE(log_->stats().sessions_lost, 1u);
  transport_.SetHold(false);
  ASSERT_TRUE(log_->WaitUntilMirrored(true, absl::Seconds(10)));
  EXPECT_EQ(Sequences(replica_.CommittedUnretired()),
            (std::vector<uint64_t>{1}));
}

TEST_F(NvlogTest, RefusedOpenIsRetried) {
  transport_.FailNextOpen(absl::UnavailableError("not yet"));
  Start();
  EXPECT_EQ(log_->stats().sessions_opened, 1u);
  AppendDone done;
  Append('a', 0, done);
  ASSERT_TRUE(done.Wait());
  EXPECT_TRUE(done.result->mirrored);
}

TEST_F(NvlogTest, RejectsMalformedWritesWithoutCallingBack) {
  Start();
  AppendDone done;
  EXPECT_EQ(log_->Append(1, 0, 0, Bytes('a'), done.Callback()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log_->Append(1, 0, 2, Bytes('a', 1000), done.Callback())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log_->Append(1, 0, 1, Bytes('a', 0), done.Callback()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(done.done());
  EXPECT_EQ(log_->stats().appends, 0u);
}

TEST_F(NvlogTest, ShutdownFailsWritesStillWaiting) {
  Start();
  transport_.SetHold(true);
  AppendDone done;
  Append('a', 0, done);
  ASSERT_TRUE(transport_.WaitForQueued(1));
  log_.reset();
  ASSERT_TRUE(done.done());
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace nvlog
