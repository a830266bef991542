// NvlogReplica without gRPC: the protocol's state machine, validation of
// everything a peer sends, and the takeover queries (gap detection).
#include "appliance/nvlog/nvlog_replica.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace nvlog {
namespace {

using interconnect::NvlogBatch;
using interconnect::NvlogRecord;
using interconnect::NvlogResyncRequest;

constexpr uint64_t kSession = 1000;

NvlogRecord Record(uint64_t seq, char fill = 'x', uint32_t blocks = 1,
                   size_t block_size = 512, uint64_t lba = 0) {
  NvlogRecord r;
  r.set_sequence(seq);
  r.set_lun(3);
  r.set_lba(lba == 0 ? seq * 8 : lba);
  r.set_block_count(blocks);
  r.set_data(std::string(blocks * block_size, fill));
  return r;
}

NvlogBatch Batch(std::vector<NvlogRecord> records, uint64_t session = kSession) {
  NvlogBatch b;
  b.set_session(session);
  for (auto& r : records) *b.add_records() = std::move(r);
  return b;
}

NvlogResyncRequest Resync(uint64_t session, uint64_t first, uint64_t through,
                          uint64_t commit = 0) {
  NvlogResyncRequest r;
  r.set_owner_node("node-a");
  r.set_session(session);
  r.set_first_sequence(first);
  r.set_resync_through(through);
  r.set_commit_through(commit);
  return r;
}

std::vector<uint64_t> Sequences(const std::vector<NvlogEntry>& entries) {
  std::vector<uint64_t> out;
  for (const NvlogEntry& e : entries) out.push_back(e.sequence);
  return out;
}

TEST(NvlogReplicaTest, HoldsCommitsAndRetires) {
  NvlogReplica replica;
  ASSERT_TRUE(replica.ApplyResync(Resync(kSession, 1, 0)).ok());
  auto ack = replica.ApplyBatch(Batch({Record(1), Record(2), Record(3)}));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->held_through(), 3u);
  EXPECT_EQ(ack->committed_through(), 0u);
  EXPECT_TRUE(replica.CommittedUnretired().empty());

  NvlogBatch commit = Batch({});
  commit.mutable_commit()->set_through(2);
  ack = replica.ApplyBatch(commit);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->committed_through(), 2u);
  EXPECT_EQ(Sequences(replica.CommittedUnretired()),
            (std::vector<uint64_t>{1, 2}));

  NvlogBatch retire = Batch({});
  retire.mutable_retire()->set_through(1);
  ack = replica.ApplyBatch(retire);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->retired_through(), 1u);
  EXPECT_EQ(Sequences(replica.Held()), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(Sequences(replica.CommittedUnretired()), (std::vector<uint64_t>{2}));
  EXPECT_EQ(replica.Snapshot().bytes(), 2u * 512);
  EXPECT_TRUE(replica.CheckConsistency().ok());
}

TEST(NvlogReplicaTest, RefusesMalformedBatchesAndKeepsItsState) {
  NvlogReplica::Options options;
  options.max_bytes = 64 * 1024;
  options.max_batch_records = 16;
  options.max_retire_ahead = 1000;
  NvlogReplica replica(options);
  ASSERT_TRUE(replica.ApplyResync(Resync(kSession, 1, 0)).ok());
  NvlogBatch first = Batch({Record(1, 'a'), Record(2, 'b')});
  first.mutable_commit()->set_through(1);
  ASSERT_TRUE(replica.ApplyBatch(first).ok());

  struct Case {
    std::string name;
    NvlogBatch batch;
    absl::StatusCode code;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, NvlogBatch b,
                 absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    cases.push_back({std::move(name), std::move(b), code});
  };
  add("stale session", Batch({Record(3)}, kSession - 1),
      absl::StatusCode::kFailedPrecondition);
  add("sequence 0", Batch({Record(0)}));
  {
    NvlogRecord r = Record(3);
    r.set_block_count(0);
    add("zero blocks", Batch({r}));
  }
  add("block size 500", Batch({Record(3, 'x', 2, 500)}));
  {
    NvlogRecord r = Record(3);
    r.set_data(std::string(700, 'x'));
    add("partial block", Batch({r}));
  }
  {
    NvlogRecord r = Record(3);
    r.set_data("");
    add("no data", Batch({r}));
  }
  {
    NvlogRecord r = Record(3);
    r.set_flags(0x80);
    add("unknown flag", Batch({r}));
  }
  {
    NvlogRecord r = Record(3);
    r.set_lba(~uint64_t{0});
    add("LBA overflow", Batch({r}));
  }
  add("gap", Batch({Record(4)}));
  add("gap inside batch", Batch({Record(3), Record(5)}));
  add("conflicting duplicate", Batch({Record(2, 'z')}));
  add("conflicting duplicate in batch", Batch({Record(3, 'x'), Record(3, 'y')}));
  {
    NvlogBatch b = Batch({});
    b.mutable_commit()->set_through(0);
    add("commit mark backwards", b);
  }
  {
    NvlogBatch b = Batch({});
    b.mutable_commit()->set_through(50);
    add("commit mark beyond records", b);
  }
  {
    NvlogBatch b = Batch({});
    b.mutable_retire()->set_through(5000);
    add("retire mark far ahead", b);
  }
  {
    std::vector<NvlogRecord> many;
    for (uint64_t s = 3; s < 3 + 17; ++s) many.push_back(Record(s));
    add("too many records", Batch(many));
  }
  add("too many bytes", Batch({Record(3, 'x', 16, 4096), Record(4, 'x', 1, 4096)}),
      absl::StatusCode::kResourceExhausted);

  const std::string before = replica.Snapshot().SerializeAsString();
  const std::vector<NvlogEntry> held_before = replica.Held();
  for (const Case& c : cases) {
    absl::StatusOr<interconnect::NvlogAck> ack = replica.ApplyBatch(c.batch);
    EXPECT_EQ(ack.status().code(), c.code) << c.name << ": " << ack.status();
    EXPECT_EQ(replica.Snapshot().SerializeAsString(), before) << c.name;
  }
  EXPECT_EQ(Sequences(replica.Held()), Sequences(held_before));
  EXPECT_EQ(replica.Held()[1].data, std::string(512, 'b'));
  EXPECT_EQ(replica.stats().rejected, cases.size());

  // An identical resend is accepted (and changes nothing); the replica keeps
  // serving valid batches.
  auto ack = replica.ApplyBatch(Batch({Record(2, 'b'), Record(3, 'c')}));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->held_through(), 3u);
  EXPECT_EQ(Sequences(replica.Held()), (std::vector<uint64_t>{1, 2, 3}));
}

TEST(NvlogReplicaTest, ValidatesResyncAndFreeze) {
  NvlogReplica replica;
  EXPECT_EQ(replica.ApplyBatch(Batch({Record(1)})).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "no session yet";
  EXPECT_EQ(replica.ApplyResync(Resync(kSession, 0, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(replica.ApplyResync(Resync(kSession, 10, 5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(replica.ApplyResync(Resync(kSession, 1, 5, 6)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(replica.ApplyResync(Resync(kSession, 1, 0)).ok());
  EXPECT_EQ(replica.ApplyResync(Resync(kSession, 1, 0)).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "sessions must grow";

  // A newer session drops what the old one held (it will be resent).
  ASSERT_TRUE(replica.ApplyBatch(Batch({Record(1), Record(2)})).ok());
  auto snap = replica.ApplyResync(Resync(kSession + 1, 2, 4, 4));
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->records(), 0u);
  EXPECT_EQ(snap->retired_through(), 1u);
  EXPECT_FALSE(snap->synced());
  EXPECT_EQ(replica.ApplyBatch(Batch({Record(2)})).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "old session's stream";

  replica.Freeze();
  EXPECT_EQ(
      replica.ApplyBatch(Batch({Record(2)}, kSession + 1)).status().code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(replica.ApplyResync(Resync(kSession + 2, 1, 0)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(replica.frozen());

  // Giveback: thawed and cleared, the returning owner's newer session is
  // accepted; an old one still is not.
  replica.Clear();
  replica.Thaw();
  EXPECT_FALSE(replica.frozen());
  EXPECT_EQ(replica.ApplyResync(Resync(kSession, 1, 0)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(replica.ApplyResync(Resync(kSession + 3, 1, 0)).ok());
  EXPECT_TRUE(replica.ApplyBatch(Batch({Record(1)}, kSession + 3)).ok());
}

TEST(NvlogReplicaTest, DetectsAGapSoTakeoverCanRefuseToReplay) {
  NvlogReplica replica;
  EXPECT_EQ(replica.CheckConsistency().code(),
            absl::StatusCode::kFailedPrecondition)
      << "never synchronised";
  // The owner resynchronises 1..10 (all committed) and dies after sending 6.
  ASSERT_TRUE(replica.ApplyResync(Resync(kSession, 1, 10, 10)).ok());
  std::vector<NvlogRecord> records;
  for (uint64_t s = 1; s <= 6; ++s) records.push_back(Record(s));
  ASSERT_TRUE(replica.ApplyBatch(Batch(records)).ok());
  absl::Status consistency = replica.CheckConsistency();
  EXPECT_EQ(consistency.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(consistency.message().find("7..10"), std::string::npos)
      << consistency;
  EXPECT_FALSE(replica.Snapshot().synced());

  records.clear();
  for (uint64_t s = 7; s <= 10; ++s) records.push_back(Record(s));
  ASSERT_TRUE(replica.ApplyBatch(Batch(records)).ok());
  EXPECT_TRUE(replica.CheckConsistency().ok());
  EXPECT_TRUE(replica.Snapshot().synced());
  EXPECT_EQ(replica.CommittedUnretired().size(), 10u);
}

TEST(NvlogEntryTest, CheckNoGapFindsHolesAndDuplicates) {
  auto entries = [](std::vector<uint64_t> seqs) {
    std::vector<NvlogEntry> out;
    for (uint64_t s : seqs) {
      NvlogEntry e;
      e.sequence = s;
      out.push_back(e);
    }
    return out;
  };
  EXPECT_TRUE(CheckNoGap(entries({})).ok());
  EXPECT_TRUE(CheckNoGap(entries({5, 3, 4})).ok());
  absl::Status gap = CheckNoGap(entries({1, 2, 4, 5}));
  EXPECT_EQ(gap.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(gap.message().find("3..3"), std::string::npos) << gap;
  EXPECT_FALSE(CheckNoGap(entries({1, 2, 2})).ok());
  EXPECT_FALSE(CheckNoGap(entries({3, 4}), /*expect_first=*/1).ok());
  EXPECT_TRUE(CheckNoGap(entries({3, 4}), /*expect_first=*/3).ok());
}

}  // namespace
}  // namespace nvlog
