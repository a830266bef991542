// verifyload's command line.
#include "tools/verifyload/options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace verifyload {
namespace {

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "verifyload");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseArgs(static_cast<int>(args.size()), argv.data());
}

const std::vector<std::string> kRequired = {
    "--portal=127.0.0.2:3260", "--target=iqn.2026-11.com.example:appliance"};

std::vector<std::string> With(std::vector<std::string> extra) {
  std::vector<std::string> args = kRequired;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(OptionsTest, Defaults) {
  absl::StatusOr<Options> o = Parse(kRequired);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->portal, "127.0.0.2:3260");
  EXPECT_EQ(o->target, "iqn.2026-11.com.example:appliance");
  EXPECT_EQ(o->lun, 0);
  EXPECT_EQ(o->initiator.rfind("iqn.2026-11.com.example:verifyload-", 0), 0u);
  EXPECT_EQ(o->mode, Mode::kBoth);
  EXPECT_EQ(o->qd, 8);
  EXPECT_EQ(o->lba_count, 0u);
  EXPECT_DOUBLE_EQ(o->reconnect_timeout_seconds, 60);
}

TEST(OptionsTest, EveryFlag) {
  absl::StatusOr<Options> o = Parse(With(
      {"--lun=3", "--initiator=iqn.x:y", "--duration=2.5", "--qd", "16",
       "--write_percent=70", "--max_blocks=4", "--lba_count=1000", "--seed=42",
       "--ledger=/tmp/l", "--mode=load", "--reconnect_timeout=5",
       "--io_timeout=2", "--drain_timeout=1", "--progress_interval=0"}));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->lun, 3);
  EXPECT_EQ(o->initiator, "iqn.x:y");
  EXPECT_DOUBLE_EQ(o->duration_seconds, 2.5);
  EXPECT_EQ(o->qd, 16);
  EXPECT_EQ(o->write_percent, 70);
  EXPECT_EQ(o->max_blocks, 4u);
  EXPECT_EQ(o->lba_count, 1000u);
  EXPECT_EQ(o->seed, 42u);
  EXPECT_EQ(o->ledger_path, "/tmp/l");
  EXPECT_EQ(o->mode, Mode::kLoad);
  EXPECT_DOUBLE_EQ(o->reconnect_timeout_seconds, 5);
  EXPECT_DOUBLE_EQ(o->io_timeout_seconds, 2);
  EXPECT_DOUBLE_EQ(o->drain_timeout_seconds, 1);
  EXPECT_DOUBLE_EQ(o->progress_seconds, 0);
}

TEST(OptionsTest, UsageErrors) {
  const std::vector<std::vector<std::string>> bad = {
      {"--target=iqn.x:y"},       // no portal
      {"--portal=1.2.3.4:3260"},  // no target
      With({"--mode=fast"}),
      With({"--qd=0"}),
      With({"--write_percent=101"}),
      With({"--duration=-1"}),
      With({"--lun=abc"}),
      With({"--colour=blue"}),
      With({"--qd"}),           // missing value
      With({"--mode=verify"}),  // verify needs a ledger
      With({"--lba_count=4", "--max_blocks=8"}),
      With({"stray"}),
  };
  for (const auto& args : bad) {
    absl::StatusOr<Options> o = Parse(args);
    EXPECT_TRUE(absl::IsInvalidArgument(o.status()))
        << args.back() << " -> " << o.status();
  }
}

TEST(OptionsTest, ParsesAgainAfterAnError) {
  // getopt keeps global state; ParseArgs resets it.
  EXPECT_FALSE(Parse(With({"--colour=blue"})).ok());
  absl::StatusOr<Options> o = Parse(With({"--qd=3"}));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->qd, 3);
}

TEST(OptionsTest, Help) {
  absl::StatusOr<Options> o = Parse({"--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  EXPECT_NE(UsageText().find("--reconnect_timeout"), std::string::npos);
}

}  // namespace
}  // namespace verifyload
