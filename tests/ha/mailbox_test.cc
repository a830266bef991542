#include "appliance/ha/mailbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/ha/test_util.h"

namespace appliance::ha {
namespace {

using ::appliance::ha::testing::MakeTempDir;
using ::google::protobuf::util::MessageDifferencer;

MailboxRecord SampleRecord(const std::string& node, uint64_t beat) {
  MailboxRecord r;
  r.set_node_name(node);
  r.set_incarnation(1700000000000000 + 7);
  r.set_beat(beat);
  r.set_state(HA_IN_TAKEOVER);
  r.set_written_unix_micros(1700000000123456);
  Fence* fence = r.mutable_fence();
  fence->set_fenced_node("node-b");
  fence->set_epoch(3);
  fence->set_reason("partner dead: interconnect and mailbox silent");
  fence->set_since_unix_micros(1700000000100000);
  return r;
}

std::string ReadFile(const std::string& path) {
  std::string data;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return data;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) data.append(buf, n);
  ::close(fd);
  return data;
}

void WriteFile(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, data.data(), data.size()),
            static_cast<ssize_t>(data.size()));
  ::close(fd);
}

struct Pair {
  std::string dir;
  std::unique_ptr<Mailbox> a;
  std::unique_ptr<Mailbox> b;
};

Pair OpenPair(const std::string& name, Mailbox::Options options = {}) {
  Pair p;
  p.dir = MakeTempDir(name);
  auto a = Mailbox::Open(p.dir, "node-a", "node-b", options);
  auto b = Mailbox::Open(p.dir, "node-b", "node-a", options);
  EXPECT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(b.ok()) << b.status();
  if (a.ok()) p.a = std::move(*a);
  if (b.ok()) p.b = std::move(*b);
  return p;
}

TEST(MailboxFormatTest, Crc32cKnownVector) {
  const std::string s = "123456789";
  EXPECT_EQ(MailboxCrc32c(absl::MakeConstSpan(
                reinterpret_cast<const uint8_t*>(s.data()), s.size())),
            0xE3069283u);
}

TEST(MailboxFormatTest, BlockLayout) {
  MailboxRecord r = SampleRecord("node-a", 42);
  auto block = EncodeMailboxBlock(r);
  ASSERT_TRUE(block.ok()) << block.status();
  ASSERT_EQ(block->size(), kMailboxBlockSize);
  const auto* b = reinterpret_cast<const uint8_t*>(block->data());
  EXPECT_EQ(std::string(block->data(), 4), "HAMB");
  EXPECT_EQ(b[4], 1);  // version 1, little endian
  EXPECT_EQ(b[5] | b[6] | b[7], 0);
  const uint32_t len = b[8] | b[9] << 8 | b[10] << 16 | uint32_t{b[11]} << 24;
  EXPECT_EQ(len, r.ByteSizeLong());
  // The CRC covers header bytes 0..11 and the payload.
  std::string covered = block->substr(0, 12) + block->substr(16, len);
  const uint32_t crc = b[12] | b[13] << 8 | b[14] << 16 | uint32_t{b[15]} << 24;
  EXPECT_EQ(crc, MailboxCrc32c(absl::MakeConstSpan(
                     reinterpret_cast<const uint8_t*>(covered.data()),
                     covered.size())));
  for (size_t i = 16 + len; i < kMailboxBlockSize; ++i) {
    ASSERT_EQ(b[i], 0) << i;
  }
  auto decoded = DecodeMailboxBlock(absl::MakeConstSpan(b, block->size()));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*decoded, r));
}

TEST(MailboxFormatTest, EveryBitFlipInHeaderOrPayloadIsDataLoss) {
  auto block = EncodeMailboxBlock(SampleRecord("node-a", 42));
  ASSERT_TRUE(block.ok());
  const size_t covered =
      kMailboxHeaderSize + SampleRecord("node-a", 42).ByteSizeLong();
  for (size_t i = 0; i < covered; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = *block;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto r = DecodeMailboxBlock(absl::MakeConstSpan(
          reinterpret_cast<const uint8_t*>(bad.data()), bad.size()));
      ASSERT_TRUE(absl::IsDataLoss(r.status()))
          << "byte " << i << " bit " << bit << ": " << r.status();
    }
  }
}

TEST(MailboxFormatTest, GarbageNeverDecodes) {
  std::mt19937 rng(12345);
  std::string block(kMailboxBlockSize, '\0');
  for (int round = 0; round < 2000; ++round) {
    for (char& c : block) c = static_cast<char>(rng());
    if (round % 2 == 0) {
      // Valid-looking header so the length and CRC checks run.
      std::memcpy(block.data(), "HAMB\x01\0\0\0", 8);
      block[8] = static_cast<char>(rng() % 0x20);
      block[9] = static_cast<char>(rng() % 0x20);
      block[10] = block[11] = 0;
    }
    auto r = DecodeMailboxBlock(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(block.data()), block.size()));
    ASSERT_TRUE(absl::IsDataLoss(r.status())) << round << ": " << r.status();
  }
}

TEST(MailboxFormatTest, ShortBlockAndBadFieldsAreDataLoss) {
  auto block = EncodeMailboxBlock(SampleRecord("node-a", 1));
  ASSERT_TRUE(block.ok());
  auto decode = [](const std::string& s) {
    return DecodeMailboxBlock(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  };
  EXPECT_TRUE(absl::IsDataLoss(decode(block->substr(0, 4095)).status()));
  EXPECT_TRUE(absl::IsDataLoss(decode("").status()));
  std::string bad = *block;
  bad[4] = 2;  // a future format version
  EXPECT_TRUE(absl::IsDataLoss(decode(bad).status()));
  bad = *block;
  bad[8] = '\xff';
  bad[9] = '\xff';  // length past the block
  EXPECT_TRUE(absl::IsDataLoss(decode(bad).status()));
  EXPECT_TRUE(
      absl::IsDataLoss(decode(std::string(kMailboxBlockSize, '\0')).status()));
}

TEST(MailboxFormatTest, TooLargeRecordIsRejected) {
  MailboxRecord r = SampleRecord("node-a", 1);
  r.mutable_fence()->set_reason(std::string(kMailboxMaxPayload, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeMailboxBlock(r).status()));
}

TEST(MailboxTest, OpenRejectsBadNames) {
  const std::string dir = MakeTempDir("names");
  EXPECT_TRUE(
      absl::IsInvalidArgument(Mailbox::Open(dir, "", "node-b").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(Mailbox::Open(dir, "node-a", "../x").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(Mailbox::Open(dir, "..", "node-b").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(Mailbox::Open(dir, "node-a", "node-a").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(Mailbox::Open("", "node-a", "node-b").status()));
}

TEST(MailboxTest, OpenCreatesDirectoryAndFile) {
  Pair p = OpenPair("create");
  ASSERT_NE(p.a, nullptr);
  struct stat st;
  ASSERT_EQ(::stat((p.dir + "/.ha").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(p.a->own_path(), p.dir + "/.ha/node-a.mailbox");
  EXPECT_EQ(p.a->partner_path(), p.dir + "/.ha/node-b.mailbox");
  ASSERT_EQ(::stat(p.a->own_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);  // nothing written yet
}

TEST(MailboxTest, OpenFailsWhenSharedDirIsMissing) {
  const std::string dir = MakeTempDir("missing") + "/no/such/dir";
  auto m = Mailbox::Open(dir, "node-a", "node-b");
  EXPECT_TRUE(absl::IsNotFound(m.status())) << m.status();
}

TEST(MailboxTest, RoundTrip) {
  Pair p = OpenPair("roundtrip");
  ASSERT_NE(p.a, nullptr);
  const MailboxRecord r = SampleRecord("node-a", 5);
  ASSERT_TRUE(p.a->WriteOwn(r).ok());

  auto seen = p.b->ReadPartner();
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*seen, r)) << seen->DebugString();
  auto own = p.a->ReadOwn();
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*own, r));
  EXPECT_EQ(ReadFile(p.a->own_path()).size(), kMailboxBlockSize);

  // Overwritten in place; still one block.
  MailboxRecord r2 = r;
  r2.set_beat(6);
  r2.clear_fence();
  ASSERT_TRUE(p.a->WriteOwn(r2).ok());
  seen = p.b->ReadPartner();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->beat(), 6u);
  EXPECT_FALSE(seen->has_fence());
  EXPECT_EQ(ReadFile(p.a->own_path()).size(), kMailboxBlockSize);
}

TEST(MailboxTest, WriteFillsOrChecksNodeName) {
  Pair p = OpenPair("names2");
  ASSERT_NE(p.a, nullptr);
  MailboxRecord r = SampleRecord("", 1);
  ASSERT_TRUE(p.a->WriteOwn(r).ok());
  auto seen = p.b->ReadPartner();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->node_name(), "node-a");

  EXPECT_TRUE(
      absl::IsInvalidArgument(p.a->WriteOwn(SampleRecord("node-b", 2))));
  MailboxRecord huge = SampleRecord("node-a", 3);
  huge.mutable_fence()->set_reason(std::string(5000, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(p.a->WriteOwn(huge)));
  // The failed writes left the last good record alone.
  seen = p.b->ReadPartner();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->beat(), 1u);
}

TEST(MailboxTest, MissingPartnerIsNotFound) {
  const std::string dir = MakeTempDir("missing-partner");
  auto a = Mailbox::Open(dir, "node-a", "node-b");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(absl::IsNotFound((*a)->ReadPartner().status()));
  EXPECT_TRUE(absl::IsNotFound((*a)->ReadOwn().status()));  // empty file

  // The partner has opened its mailbox but written nothing yet.
  auto b = Mailbox::Open(dir, "node-b", "node-a");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(absl::IsNotFound((*a)->ReadPartner().status()));
}

TEST(MailboxTest, CorruptBlockIsDataLoss) {
  Pair p = OpenPair("corrupt");
  ASSERT_NE(p.a, nullptr);
  ASSERT_TRUE(p.a->WriteOwn(SampleRecord("node-a", 9)).ok());
  std::string good = ReadFile(p.a->own_path());
  ASSERT_EQ(good.size(), kMailboxBlockSize);

  std::string bad = good;
  bad[20] = static_cast<char>(bad[20] ^ 0x40);  // a payload byte
  WriteFile(p.a->own_path(), bad);
  auto seen = p.b->ReadPartner();
  EXPECT_TRUE(absl::IsDataLoss(seen.status())) << seen.status();
  EXPECT_TRUE(absl::IsDataLoss(p.a->ReadOwn().status()));

  bad = good;
  bad[0] = 'X';  // magic
  WriteFile(p.a->own_path(), bad);
  EXPECT_TRUE(absl::IsDataLoss(p.b->ReadPartner().status()));

  WriteFile(p.a->own_path(), good.substr(0, 100));  // short block
  EXPECT_TRUE(absl::IsDataLoss(p.b->ReadPartner().status()));

  WriteFile(p.a->own_path(), good);
  EXPECT_TRUE(p.b->ReadPartner().ok());
}

TEST(MailboxTest, TornBlockIsDataLoss) {
  // A crash (or a racing read) that mixes the front of a new block with the
  // back of the old one.
  Pair p = OpenPair("torn");
  ASSERT_NE(p.a, nullptr);
  MailboxRecord old_record = SampleRecord("node-a", 9);
  MailboxRecord new_record = SampleRecord("node-a", 10);
  new_record.mutable_fence()->set_reason("another reason, of another length");
  auto old_block = EncodeMailboxBlock(old_record);
  auto new_block = EncodeMailboxBlock(new_record);
  ASSERT_TRUE(old_block.ok() && new_block.ok());
  const size_t covered = kMailboxHeaderSize + new_record.ByteSizeLong();
  for (size_t tear = 1; tear < covered; ++tear) {
    std::string mixed = new_block->substr(0, tear) + old_block->substr(tear);
    if (mixed == *new_block || mixed == *old_block) continue;
    WriteFile(p.a->own_path(), mixed);
    auto seen = p.b->ReadPartner();
    ASSERT_TRUE(absl::IsDataLoss(seen.status()))
        << "tear at " << tear << ": " << seen.status();
  }
}

TEST(MailboxTest, RecordOfAnotherNodeIsRejected) {
  Pair p = OpenPair("misnamed");
  ASSERT_NE(p.a, nullptr);
  ASSERT_TRUE(p.b->WriteOwn(SampleRecord("node-b", 1)).ok());
  // node-a's file holds node-b's record (e.g. two nodes configured alike).
  WriteFile(p.a->own_path(), ReadFile(p.b->own_path()));
  EXPECT_TRUE(absl::IsFailedPrecondition(p.b->ReadPartner().status()));
}

TEST(MailboxTest, PartnerRecreatingItsFileIsFollowed) {
  Pair p = OpenPair("recreate");
  ASSERT_NE(p.a, nullptr);
  ASSERT_TRUE(p.a->WriteOwn(SampleRecord("node-a", 1)).ok());
  ASSERT_TRUE(p.b->ReadPartner().ok());
  p.a.reset();
  ASSERT_EQ(::unlink((p.dir + "/.ha/node-a.mailbox").c_str()), 0);
  EXPECT_TRUE(absl::IsNotFound(p.b->ReadPartner().status()));
  auto a = Mailbox::Open(p.dir, "node-a", "node-b");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->WriteOwn(SampleRecord("node-a", 2)).ok());
  auto seen = p.b->ReadPartner();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->beat(), 2u);
}

TEST(MailboxTest, OwnRecordSurvivesReopen) {
  Pair p = OpenPair("reopen");
  ASSERT_NE(p.a, nullptr);
  ASSERT_TRUE(p.a->WriteOwn(SampleRecord("node-a", 77)).ok());
  p.a.reset();
  auto a = Mailbox::Open(p.dir, "node-a", "node-b");
  ASSERT_TRUE(a.ok());
  auto own = (*a)->ReadOwn();
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->beat(), 77u);
  EXPECT_EQ(own->fence().fenced_node(), "node-b");
}

// A reader racing a writer sees whole records or kDataLoss, never a mix.
TEST(MailboxTest, ConcurrentReaderNeverAcceptsHalfARecord) {
  Mailbox::Options fast;
  fast.sync = false;  // more writes, more races
  Pair p = OpenPair("concurrent", fast);
  ASSERT_NE(p.a, nullptr);
  // The reason's length and content follow the beat, so a record mixing two
  // writes is recognisable even if it parsed.
  auto reason_for = [](uint64_t beat) {
    return std::string(1 + beat % 1500, static_cast<char>('a' + beat % 26));
  };
  auto record_for = [&](uint64_t beat) {
    MailboxRecord r = SampleRecord("node-a", beat);
    r.set_incarnation(beat * 3);
    r.mutable_fence()->set_reason(reason_for(beat));
    return r;
  };
  ASSERT_TRUE(p.a->WriteOwn(record_for(1)).ok());

  std::atomic<bool> done{false};
  absl::Status write_status;
  std::thread writer([&] {
    for (uint64_t beat = 2; beat < 20000 && write_status.ok(); ++beat) {
      write_status = p.a->WriteOwn(record_for(beat));
    }
    done = true;
  });
  uint64_t good = 0, torn = 0, last_beat = 0;
  while (!done.load()) {
    auto r = p.b->ReadPartner();
    if (absl::IsDataLoss(r.status())) {
      ++torn;
      continue;
    }
    if (!r.ok() || r->fence().reason() != reason_for(r->beat()) ||
        r->incarnation() != r->beat() * 3 || r->beat() < last_beat) {
      ADD_FAILURE() << "accepted a bad record: " << r.status() << " "
                    << (r.ok() ? r->ShortDebugString().substr(0, 200) : "");
      break;
    }
    ++good;
    last_beat = r->beat();
  }
  writer.join();
  EXPECT_TRUE(write_status.ok()) << write_status;
  EXPECT_GT(good, 0u);
  std::cout << "concurrent reads: " << good << " whole, " << torn
            << " torn (rejected)\n";
}

}  // namespace
}  // namespace appliance::ha
