// The ledger's judgement of what a block reads back as, and its file.
#include "tools/verifyload/ledger.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tools/verifyload/block_format.h"

namespace verifyload {
namespace {

constexpr uint32_t kBlockSize = 512;
constexpr uint64_t kRun = 0x00beef;

uint64_t Gen(uint64_t sequence) { return MakeGeneration(kRun, sequence); }

std::vector<uint8_t> Block(uint64_t lba, uint64_t generation) {
  std::vector<uint8_t> block(kBlockSize);
  BlockHeader h;
  h.lba = lba;
  h.generation = generation;
  h.count = 1;
  EncodeBlock(h, absl::MakeSpan(block));
  return block;
}

std::vector<uint8_t> Zeros() { return std::vector<uint8_t>(kBlockSize, 0); }

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

class LedgerJudgeTest : public ::testing::Test {
 protected:
  Ledger ledger_{kRun, kBlockSize, 64};
};

TEST_F(LedgerJudgeTest, UnwrittenLbaIsNotJudged) {
  EXPECT_FALSE(ledger_.record(5).written());
  EXPECT_EQ(ledger_.Judge(5, Zeros()).verdict, Verdict::kOk);
  EXPECT_EQ(ledger_.Judge(5, Block(9, Gen(1))).verdict, Verdict::kOk);
}

TEST_F(LedgerJudgeTest, AcknowledgedGenerationIsOk) {
  ledger_.RecordAck(3, Gen(10));
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(10))).verdict, Verdict::kOk);
}

TEST_F(LedgerJudgeTest, UnknownOutcomeAfterTheAckIsOkEitherWay) {
  ledger_.RecordAck(3, Gen(10));
  ledger_.RecordUnknown(3, Gen(11));  // connection lost while in flight
  ledger_.RecordUnknown(3, Gen(12));  // retried, then lost again
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(10))).verdict, Verdict::kOk);
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(11))).verdict, Verdict::kOk);
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(12))).verdict, Verdict::kOk);
}

TEST_F(LedgerJudgeTest, OlderGenerationIsLost) {
  ledger_.RecordAck(3, Gen(10));
  ledger_.RecordAck(3, Gen(20));
  Judgement j = ledger_.Judge(3, Block(3, Gen(10)));
  EXPECT_EQ(j.verdict, Verdict::kLost);
  EXPECT_NE(j.reason.find("older generation"), std::string::npos) << j.reason;
}

TEST_F(LedgerJudgeTest, UnknownOutcomeBeforeTheAckIsLost) {
  // Generation 11 was never acknowledged; 12 was. Reading 11 back means the
  // acknowledged 12 was overwritten by a stale write.
  ledger_.RecordUnknown(3, Gen(11));
  ledger_.RecordAck(3, Gen(12));
  EXPECT_TRUE(ledger_.record(3).unknown.empty());
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(11))).verdict, Verdict::kLost);
}

TEST_F(LedgerJudgeTest, ZerosWhereAcknowledgedAreLost) {
  ledger_.RecordAck(3, Gen(10));
  Judgement j = ledger_.Judge(3, Zeros());
  EXPECT_EQ(j.verdict, Verdict::kLost);
  EXPECT_NE(j.reason.find("zeros"), std::string::npos) << j.reason;
}

TEST_F(LedgerJudgeTest, ZerosWhereOnlyUnknownOutcomesAreOk) {
  ledger_.RecordUnknown(3, Gen(10));
  EXPECT_EQ(ledger_.Judge(3, Zeros()).verdict, Verdict::kOk);
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(10))).verdict, Verdict::kOk);
}

TEST_F(LedgerJudgeTest, AnotherLbasBlockIsCorrupt) {
  ledger_.RecordAck(3, Gen(10));
  ledger_.RecordAck(4, Gen(10));
  Judgement j = ledger_.Judge(3, Block(4, Gen(10)));
  EXPECT_EQ(j.verdict, Verdict::kCorrupt);
  EXPECT_NE(j.reason.find("lba=4"), std::string::npos) << j.reason;
  // Also where nothing was acknowledged yet: a block of this run must be
  // one of this LBA's writes.
  ledger_.RecordUnknown(7, Gen(11));
  EXPECT_EQ(ledger_.Judge(7, Block(8, Gen(11))).verdict, Verdict::kCorrupt);
}

TEST_F(LedgerJudgeTest, BadCrcIsCorrupt) {
  ledger_.RecordAck(3, Gen(10));
  std::vector<uint8_t> block = Block(3, Gen(10));
  block[300] ^= 1;
  Judgement j = ledger_.Judge(3, block);
  EXPECT_EQ(j.verdict, Verdict::kCorrupt);
  EXPECT_NE(j.reason.find("CRC"), std::string::npos) << j.reason;
  // A torn block of this run is corrupt even where nothing was acknowledged.
  ledger_.RecordUnknown(5, Gen(11));
  std::vector<uint8_t> torn = Block(5, Gen(11));
  torn[400] ^= 1;
  EXPECT_EQ(ledger_.Judge(5, torn).verdict, Verdict::kCorrupt);
}

TEST_F(LedgerJudgeTest, ForeignDataWhereAcknowledgedIsCorrupt) {
  ledger_.RecordAck(3, Gen(10));
  std::vector<uint8_t> garbage(kBlockSize, 0x5a);
  EXPECT_EQ(ledger_.Judge(3, garbage).verdict, Verdict::kCorrupt);
}

TEST_F(LedgerJudgeTest, PriorContentWhereNothingWasAcknowledgedIsOk) {
  ledger_.RecordUnknown(3, Gen(10));
  std::vector<uint8_t> garbage(kBlockSize, 0x5a);
  EXPECT_EQ(ledger_.Judge(3, garbage).verdict, Verdict::kOk);
  EXPECT_EQ(ledger_.Judge(3, Block(3, MakeGeneration(0x111111, 5))).verdict,
            Verdict::kOk);
}

TEST_F(LedgerJudgeTest, AnotherRunsBlockWhereAcknowledgedIsLost) {
  ledger_.RecordAck(3, Gen(10));
  EXPECT_EQ(ledger_.Judge(3, Block(3, MakeGeneration(0x111111, 50))).verdict,
            Verdict::kLost);
}

TEST_F(LedgerJudgeTest, GenerationNeverWrittenHereIsCorrupt) {
  ledger_.RecordAck(3, Gen(10));
  EXPECT_EQ(ledger_.Judge(3, Block(3, Gen(15))).verdict, Verdict::kCorrupt);
  ledger_.RecordUnknown(4, Gen(16));
  EXPECT_EQ(ledger_.Judge(4, Block(4, Gen(17))).verdict, Verdict::kCorrupt);
}

TEST_F(LedgerJudgeTest, StaleUnknownIsIgnored) {
  ledger_.RecordAck(3, Gen(10));
  ledger_.RecordUnknown(3, Gen(9));
  EXPECT_TRUE(ledger_.record(3).unknown.empty());
  ledger_.RecordAck(3, Gen(8));  // older ack cannot replace a newer one
  EXPECT_EQ(ledger_.record(3).acked, Gen(10));
}

TEST(LedgerFileTest, SaveAndLoadRoundTrip) {
  Ledger ledger(kRun, kBlockSize, 100);
  ledger.RecordAck(0, Gen(1));
  ledger.RecordAck(50, Gen(2));
  ledger.RecordUnknown(50, Gen(3));
  ledger.RecordUnknown(50, Gen(4));
  ledger.RecordUnknown(99, Gen(5));
  Report report;
  report.writes_acked = 2;
  report.reads = 7;
  report.reconnects = 1;
  report.retries = 3;
  report.unknown_outcome = 3;
  report.verified_blocks = 9;
  report.load_seconds = 2.5;
  report.Lost(42, "lba=42 reads zeros");
  report.Corrupt(43, "lba=43 bad CRC");

  const std::string path = TempPath("roundtrip.ledger");
  ASSERT_TRUE(ledger.Save(path, report).ok());
  Report loaded_report;
  absl::StatusOr<Ledger> loaded = Ledger::Load(path, &loaded_report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->run_id(), kRun);
  EXPECT_EQ(loaded->block_size(), kBlockSize);
  EXPECT_EQ(loaded->lba_count(), 100u);
  EXPECT_EQ(loaded->WrittenLbas(), (std::vector<uint64_t>{0, 50, 99}));
  EXPECT_EQ(loaded->record(50).acked, Gen(2));
  EXPECT_EQ(loaded->record(50).unknown,
            (std::vector<uint64_t>{Gen(3), Gen(4)}));
  EXPECT_EQ(loaded->record(99).acked, 0u);
  EXPECT_EQ(loaded->Judge(50, Block(50, Gen(4))).verdict, Verdict::kOk);
  EXPECT_EQ(loaded->Judge(0, Zeros()).verdict, Verdict::kLost);
  EXPECT_EQ(loaded_report.writes_acked, 2u);
  EXPECT_EQ(loaded_report.reads, 7u);
  EXPECT_EQ(loaded_report.reconnects, 1u);
  EXPECT_EQ(loaded_report.retries, 3u);
  EXPECT_EQ(loaded_report.unknown_outcome, 3u);
  EXPECT_EQ(loaded_report.verified_blocks, 9u);
  EXPECT_DOUBLE_EQ(loaded_report.load_seconds, 2.5);
  EXPECT_EQ(loaded_report.lost_lbas, (std::set<uint64_t>{42}));
  EXPECT_EQ(loaded_report.corrupt_lbas, (std::set<uint64_t>{43}));
  EXPECT_EQ(loaded_report.first_problems, report.first_problems);
  // Saved atomically: nothing but the ledger is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(
           std::filesystem::path(path).parent_path())) {
    if (e.path().filename().string().rfind("roundtrip.ledger", 0) == 0) ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(LedgerFileTest, TruncatedFileIsRejected) {
  Ledger ledger(kRun, kBlockSize, 10);
  ledger.RecordAck(1, Gen(1));
  ledger.RecordAck(2, Gen(2));
  const std::string path = TempPath("truncated.ledger");
  ASSERT_TRUE(ledger.Save(path, Report{}).ok());
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  in.close();
  // Drop the "end" line.
  text.erase(text.rfind("end "));
  std::ofstream(path, std::ios::trunc) << text;
  absl::StatusOr<Ledger> loaded = Ledger::Load(path, nullptr);
  EXPECT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("truncated"), std::string::npos)
      << loaded.status();
}

TEST(LedgerFileTest, OtherFilesAreRejected) {
  const std::string path = TempPath("not-a.ledger");
  std::ofstream(path) << "hello\n";
  EXPECT_FALSE(Ledger::Load(path, nullptr).ok());
  EXPECT_TRUE(absl::IsNotFound(
      Ledger::Load(TempPath("missing.ledger"), nullptr).status()));
}

}  // namespace
}  // namespace verifyload
