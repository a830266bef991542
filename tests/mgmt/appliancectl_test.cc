// Runs the built appliancectl binary against an in-process server and checks
// its output and exit codes. The binary's path comes as the first argument
// ($(rootpath //appliance/mgmt:appliancectl) in BUILD).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mgmt/test_server.h"

extern char** environ;

namespace appliance::mgmt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string* appliancectl_path = nullptr;

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

CliResult RunCli(const std::vector<std::string>& args) {
  const std::string dir = MakeTempDir();
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> argv_strings = {*appliancectl_path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  CliResult result;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(spawned, 0) << "cannot run " << argv[0];
  if (spawned != 0) return result;
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = Slurp(out_path);
  result.err = Slurp(err_path);
  return result;
}

class AppliancectlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(env_.server, nullptr); }

  // Connection flags, verifying against the server's certificate.
  std::vector<std::string> With(std::vector<std::string> command) {
    std::vector<std::string> args = {absl::StrCat("--url=", env_.url()),
                                     absl::StrCat("--token-file=", env_.token_file),
                                     absl::StrCat("--cacert=", env_.cert_file)};
    args.insert(args.end(), command.begin(), command.end());
    return args;
  }

  TestServer env_;
};

TEST_F(AppliancectlTest, LunLifecycleWithTables) {
  CliResult created = RunCli(With({"lun", "create", "db1", "64M", "--block_size=4096"}));
  EXPECT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("created LUN 0"));
  EXPECT_THAT(created.out, HasSubstr("64M (67108864 bytes)"));

  CliResult second = RunCli(With({"lun", "create", "logs", "1G", "--id", "5", "--owner=node-b"}));
  EXPECT_EQ(second.exit_code, 0) << second.err;

  CliResult list = RunCli(With({"lun", "list"}));
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("ID  NAME  SIZE  BLOCK  OWNER   HOME"));
  EXPECT_THAT(list.out, HasSubstr("0   db1   64M   4096   node-a  node-a"));
  EXPECT_THAT(list.out, HasSubstr("5   logs  1G    512    node-b  node-b"));

  CliResult show = RunCli(With({"lun", "show", "5"}));
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("logs"));

  CliResult deleted = RunCli(With({"lun", "delete", "5"}));
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_THAT(deleted.out, HasSubstr("deleted LUN 5"));
  EXPECT_EQ(env_.backend.lun_count(), 1u);
}

TEST_F(AppliancectlTest, CreatesReadOnlyLunWithPhysicalBlockSize) {
  CliResult created = RunCli(With({"lun", "create", "ro", "1M", "--physical_block_size=4096",
                                   "--read-only", "--id=3"}));
  EXPECT_EQ(created.exit_code, 0) << created.err;
  CliResult show = RunCli(With({"lun", "show", "3"}));
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, ::testing::ContainsRegex("physical_block_size +4096"));
  EXPECT_THAT(show.out, ::testing::ContainsRegex("read_only +yes"));

  ASSERT_EQ(RunCli(With({"lun", "create", "rw", "1M", "--id=4"})).exit_code, 0);
  CliResult plain = RunCli(With({"lun", "show", "4"}));
  EXPECT_THAT(plain.out, ::testing::ContainsRegex("physical_block_size +512"));
  EXPECT_THAT(plain.out, ::testing::ContainsRegex("read_only +no"));

  CliResult bad = RunCli(With({"lun", "create", "odd", "1M", "--physical_block_size=1536"}));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("physical block size 1536"));
}

TEST_F(AppliancectlTest, NodeJsonAndMetrics) {
  CliResult node = RunCli(With({"node"}));
  EXPECT_EQ(node.exit_code, 0) << node.err;
  EXPECT_THAT(node.out, HasSubstr("node-a"));
  EXPECT_THAT(node.out, HasSubstr("lif-a1"));

  CliResult json = RunCli(With({"--json", "node"}));
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"nodeName\":\"node-a\""));

  CliResult metrics = RunCli(With({"metrics"}));
  EXPECT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_THAT(metrics.out, HasSubstr("# TYPE appliance_mgmt_http_requests_total counter"));
}

TEST_F(AppliancectlTest, ApiErrorsExit1WithServerMessage) {
  CliResult missing = RunCli(With({"lun", "show", "9"}));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no LUN 9 (HTTP 404)"));

  ASSERT_EQ(RunCli(With({"lun", "create", "db1", "1M"})).exit_code, 0);
  CliResult duplicate = RunCli(With({"lun", "create", "db1", "1M"}));
  EXPECT_EQ(duplicate.exit_code, 1);
  EXPECT_THAT(duplicate.err, HasSubstr("HTTP 409"));

  CliResult zero = RunCli(With({"lun", "create", "empty", "0"}));
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_THAT(zero.err, HasSubstr("size must be greater than 0"));

  CliResult bad_token = RunCli({absl::StrCat("--url=", env_.url()), "--token=nope",
                                "--insecure", "lun", "list"});
  EXPECT_EQ(bad_token.exit_code, 1);
  EXPECT_THAT(bad_token.err, HasSubstr("HTTP 401"));

  // Nothing listens on port 1.
  CliResult unreachable = RunCli({"--url=https://127.0.0.1:1", "--token=t", "node"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_THAT(unreachable.err, HasSubstr("request failed"));
  EXPECT_EQ(env_.backend.lun_count(), 1u);
}

TEST_F(AppliancectlTest, LifListMigrateAndPortFault) {
  CliResult list = RunCli(With({"lif", "list"}));
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("LIF     PORTAL          HOME        CURRENT"));
  EXPECT_THAT(list.out, HasSubstr("lif-a1  127.0.0.2:3260  node-a/e0a  node-a/e0a  1"));

  CliResult moved = RunCli(With({"lif", "migrate", "lif-a1", "node-b"}));
  EXPECT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_THAT(moved.out, HasSubstr("LIF lif-a1 now on node-b"));
  CliResult again = RunCli(With({"lif", "migrate", "lif-a1", "node-b"}));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("HTTP 409"));
  CliResult unknown = RunCli(With({"lif", "migrate", "lif-zz", "node-b"}));
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("HTTP 404"));

  CliResult down = RunCli(With({"fault", "port", "e0a", "down"}));
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_THAT(down.out, HasSubstr("port e0a down"));
  CliResult json = RunCli(With({"--json", "fault", "port", "e0a", "up"}));
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"up\":true"));
  CliResult no_port = RunCli(With({"fault", "port", "e7x", "down"}));
  EXPECT_EQ(no_port.exit_code, 1);
  EXPECT_THAT(no_port.err, HasSubstr("HTTP 404"));
}

TEST_F(AppliancectlTest, UntrustedCertificateFails) {
  TestServer other;
  ASSERT_NE(other.server, nullptr);
  CliResult result = RunCli({absl::StrCat("--url=", env_.url()),
                             absl::StrCat("--token=", env_.token),
                             absl::StrCat("--cacert=", other.cert_file), "node"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("certificate"));
  // Without --cacert verification is skipped.
  CliResult insecure = RunCli({absl::StrCat("--url=", env_.url()),
                               absl::StrCat("--token=", env_.token), "node"});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.err;
}

TEST_F(AppliancectlTest, HaStatusActionsAndMailboxFault) {
  env_.ha.status.set_node_name("node-b");
  env_.ha.status.set_state("in_takeover");
  env_.ha.status.set_partner_name("node-a");
  env_.ha.status.set_partner_state("failed");
  env_.ha.status.add_luns_served(0);
  env_.ha.status.add_luns_served(1);
  env_.ha.status.mutable_last_takeover()->set_partner("node-a");
  env_.ha.status.mutable_last_takeover()->set_replayed_entries(12);
  CliResult status = RunCli(With({"ha", "status"}));
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("in_takeover"));
  EXPECT_THAT(status.out, HasSubstr("node-a (failed"));
  EXPECT_THAT(status.out, HasSubstr("0,1"));
  EXPECT_THAT(status.out, HasSubstr("replayed 12"));

  CliResult takeover = RunCli(With({"ha", "takeover"}));
  EXPECT_EQ(takeover.exit_code, 0) << takeover.err;
  EXPECT_EQ(env_.ha.takeovers, 1);
  env_.ha.error = absl::FailedPreconditionError("partner is not waiting for giveback");
  CliResult giveback = RunCli(With({"ha", "giveback"}));
  EXPECT_EQ(giveback.exit_code, 1);
  EXPECT_THAT(giveback.err, HasSubstr("not waiting for giveback (HTTP 409)"));
  env_.ha.error = absl::OkStatus();
  CliResult clear = RunCli(With({"ha", "clear-offline", "3", "5"}));
  EXPECT_EQ(clear.exit_code, 0) << clear.err;
  ASSERT_EQ(env_.ha.cleared.luns_size(), 2);
  EXPECT_EQ(env_.ha.cleared.luns(0), 3u);

  CliResult stop = RunCli(With({"fault", "mailbox", "stop"}));
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_THAT(stop.out, HasSubstr("stopped (fault)"));
  EXPECT_TRUE(env_.ha.status.mailbox_writes_stopped());
}

TEST_F(AppliancectlTest, UsageErrorsExit2WithoutRequests) {
  const std::vector<std::vector<std::string>> usage_errors = {
      {},
      {"frobnicate"},
      {"lun"},
      {"lun", "show"},
      {"lun", "show", "abc"},
      {"lun", "create", "db1"},
      {"lun", "create", "db1", "12X"},
      {"lun", "create", "db1", "1M", "--block_size=1024"},
      {"lun", "create", "db1", "1M", "--id=-3"},
      {"--no_such_flag", "node"},
      {"--block_size=abc", "node"},
      {"lif"},
      {"lif", "migrate", "lif-a1"},
      {"fault", "port", "e0a"},
      {"fault", "port", "e0a", "sideways"},
      {"fault", "mailbox", "pause"},
      {"ha"},
      {"ha", "status", "extra"},
      {"ha", "clear-offline", "zero"},
  };
  for (const auto& command : usage_errors) {
    CliResult result = RunCli(With(command));
    EXPECT_EQ(result.exit_code, 2) << ::testing::PrintToString(command) << result.err;
    EXPECT_THAT(result.err, HasSubstr("usage:"));
  }
  CliResult no_token = RunCli({absl::StrCat("--url=", env_.url()), "node"});
  EXPECT_EQ(no_token.exit_code, 2);
  CliResult bad_url = RunCli({"--url=http://127.0.0.1:1", "--token=t", "node"});
  EXPECT_EQ(bad_url.exit_code, 2);
  CliResult help = RunCli({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("lun create NAME SIZE"));
  EXPECT_EQ(env_.backend.create_calls(), 0);
  // No request reached the server at all.
  EXPECT_THAT(env_.registry.RenderPrometheusText(),
              Not(HasSubstr("appliance_mgmt_http_requests_total{")));
}

}  // namespace
}  // namespace appliance::mgmt::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH_TO_APPLIANCECTL\n", argv[0]);
    return 2;
  }
  appliance::mgmt::testing::appliancectl_path = new std::string(argv[1]);
  return RUN_ALL_TESTS();
}
