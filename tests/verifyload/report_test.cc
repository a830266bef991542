// The JSON report and the exit status.
#include "tools/verifyload/report.h"

#include <string>

#include "gtest/gtest.h"

namespace verifyload {
namespace {

TEST(ReportTest, CleanRunExitsZeroWithEveryField) {
  Report r;
  r.writes_acked = 10;
  r.reads = 10;
  r.load_seconds = 2;
  const std::string json = r.ToJson();
  for (const char* key :
       {"\"writes_acked\":10", "\"reads\":10", "\"reconnects\":0",
        "\"retries\":0", "\"hard_errors\":0", "\"unknown_outcome\":0",
        "\"verified_blocks\":0", "\"lost\":0", "\"corrupt\":0",
        "\"first_problems\":[]", "\"iops\":10.0"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_EQ(r.ExitCode(), kExitClean);
}

TEST(ReportTest, LostDataExitsOne) {
  Report r;
  r.Lost(7, "lba=7 reads zeros");
  r.Lost(7, "lba=7 again");  // one LBA counts once
  EXPECT_NE(r.ToJson().find("\"lost\":1"), std::string::npos);
  EXPECT_EQ(r.first_problems.size(), 1u);
  EXPECT_EQ(r.ExitCode(), kExitFailed);
}

TEST(ReportTest, HardErrorsAndIncompleteVerifyExitOne) {
  Report hard;
  hard.HardError("write lba=1: CHECK CONDITION MEDIUM_ERROR 03/11/00");
  EXPECT_EQ(hard.hard_errors, 1u);
  EXPECT_EQ(hard.ExitCode(), kExitFailed);
  Report incomplete;
  incomplete.verify_incomplete = true;
  EXPECT_EQ(incomplete.ExitCode(), kExitFailed);
}

TEST(ReportTest, FatalErrorExitsTwo) {
  Report r;
  r.fatal = "could not log in";
  EXPECT_EQ(r.ExitCode(), kExitUsage);
  EXPECT_NE(r.ToJson().find("\"error\":\"could not log in\""),
            std::string::npos);
}

TEST(ReportTest, KeepsTenProblemsEscaped) {
  Report r;
  for (int i = 0; i < 25; ++i) r.Corrupt(i, "say \"hi\"\n");
  EXPECT_EQ(r.corrupt_lbas.size(), 25u);
  EXPECT_EQ(r.first_problems.size(), Report::kMaxProblems);
  EXPECT_NE(r.ToJson().find("say \\\"hi\\\"\\n"), std::string::npos);
}

}  // namespace
}  // namespace verifyload
