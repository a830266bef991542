// verifyload against a real applianced: a clean load+verify finds nothing
// lost; damage done to the LUN's backing file behind the daemon's back is
// found (the verifier can fail); a daemon restart in the middle of the load
// is survived by reconnecting; SIGTERM ends the load with a saved ledger.
//
// Each test serves its LUN on its own loopback address (127.x.y.z from the
// process id and a counter) with a port chosen by the kernel once, so a
// restarted daemon listens where the generator reconnects and tests can run
// in parallel.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/harness/daemon_process.h"
#include "tools/verifyload/ledger.h"

namespace {

constexpr char kTarget[] = "iqn.2026-11.com.example:verifyload-test";
constexpr char kLunName[] = "vl";
constexpr uint64_t kLunBytes = 16 << 20;  // 32768 blocks of 512 bytes
constexpr uint32_t kBlockSize = 512;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// A private copy of the binary named by environment variable `name`, made
// once per process: the runfiles point into the shared output tree, which a
// concurrent build may be relinking while a test starts a process.
std::string Binary(const char* name) {
  static std::map<std::string, std::string>* copies =
      new std::map<std::string, std::string>();
  auto it = copies->find(name);
  if (it != copies->end()) return it->second;
  const std::string source = Env(name);
  if (source.empty()) return "";
  const std::string dir = Env("TEST_TMPDIR") + "/bin";
  std::filesystem::create_directories(dir);
  const std::string copy =
      dir + "/" + std::filesystem::path(source).filename().string();
  std::error_code error;
  std::filesystem::copy_file(
      source, copy, std::filesystem::copy_options::overwrite_existing, error);
  if (error) return "";
  return (*copies)[name] = copy;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A loopback address no other test process uses.
std::string UniqueLoopback() {
  static int counter = 0;
  const int pid = getpid();
  return absl::StrCat("127.", 100 + pid % 100, ".", (pid / 100) % 250 + 1, ".",
                      ++counter % 250 + 1);
}

// A port the kernel considers free on address.
int FreePort(const std::string& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    socklen_t len = sizeof(sa);
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  close(fd);
  return port;
}

// Extracts "key":<integer> from the report; -1 when absent.
int64_t JsonInt(const std::string& json, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + needle.size(), nullptr, 10);
}

// verifyload running as a child process, stdout and stderr in files.
class Generator {
 public:
  Generator(const std::string& dir, const std::string& name)
      : out_(dir + "/" + name + ".json"), err_(dir + "/" + name + ".log") {}
  ~Generator() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void Start(const std::vector<std::string>& args) {
    const std::string binary = Binary("VERIFYLOAD");
    pid_ = fork();
    if (pid_ == 0) {
      int out = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(binary.c_str()));
      for (const std::string& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
  }

  // Exit status, or -1 when it had to be killed after timeout.
  int Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  // Waits until the progress log shows an acknowledged write.
  bool WaitForAckedWrites(absl::Duration timeout) {
    // "writes_acked=" followed by a non-zero first digit. (No std::regex:
    // GCC 12 warns inside <regex> under ASan, and warnings are errors.)
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      const std::string log = ReadFile(err_);
      const std::string kKey = "writes_acked=";
      for (size_t at = log.find(kKey); at != std::string::npos;
           at = log.find(kKey, at + 1)) {
        const size_t digit = at + kKey.size();
        if (digit < log.size() && log[digit] >= '1' && log[digit] <= '9') {
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  void Signal(int sig) { kill(pid_, sig); }
  std::string json() const { return ReadFile(out_); }
  std::string log() const { return ReadFile(err_); }

 private:
  std::string out_;
  std::string err_;
  pid_t pid_ = -1;
};

class VerifyloadDaemonTest : public ::testing::Test {
 protected:
  VerifyloadDaemonTest()
      : dir_(absl::StrCat(
            Env("TEST_TMPDIR"), "/",
            ::testing::UnitTest::GetInstance()->current_test_info()->name())),
        address_(UniqueLoopback()),
        port_(FreePort(address_)),
        daemon_({.binary = Binary("APPLIANCED"),
                 .dir = dir_,
                 .target_name = kTarget,
                 .address = address_,
                 .extra = ""}) {}

  void SetUp() override {
    ASSERT_FALSE(Binary("VERIFYLOAD").empty());
    ASSERT_FALSE(Binary("APPLIANCED").empty());
    ASSERT_GT(port_, 0);
    // DaemonProcess writes its bootstrap only when there is none: this one
    // has a fixed LIF port, so a restart listens on the same portal.
    const std::string state = daemon_.state_dir();
    std::filesystem::create_directories(state);
    std::filesystem::create_directories(dir_ + "/shared");
    std::ofstream(state + "/bootstrap.textproto")
        << "node_name: \"node-a\"\n"
        << "target_name: \"" << kTarget << "\"\n"
        << "physical_ports { name: \"e0a\" address: \"" << address_ << "\" }\n"
        << "lifs { name: \"lif-1\" address: \"" << address_
        << "\" port: " << port_
        << " home_node: \"node-a\" home_port: \"e0a\" "
           "relative_target_port_id: 1 target_portal_group: 1 }\n"
        << "mgmt_address: \"" << address_ << ":0\"\n"
        << "shared_storage_dir: \"" << dir_ << "/shared\"\n"
        << "state_dir: \"" << state << "\"\n"
        << "seed_luns { id: 0 name: \"" << kLunName
        << "\" size_bytes: " << kLunBytes << " }\n";
    StartDaemon();
  }

  void StartDaemon() {
    absl::Status started = daemon_.Start();
    ASSERT_TRUE(started.ok()) << started;
    ASSERT_EQ(daemon_.portals().size(), 1u);
    ASSERT_EQ(daemon_.portals()[0], portal());
  }

  std::string portal() const { return absl::StrCat(address_, ":", port_); }
  std::string backing_file() const {
    return absl::StrCat(dir_, "/shared/lun0-", kLunName, ".img");
  }

  std::vector<std::string> Args(std::vector<std::string> extra) const {
    std::vector<std::string> args = {"--portal=" + portal(),
                                     absl::StrCat("--target=", kTarget),
                                     "--lun=0", "--progress_interval=0.2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Runs verifyload to completion; returns its exit status, *json the report.
  int Run(const std::string& name, std::vector<std::string> extra,
          std::string* json) {
    Generator g(dir_, name);
    g.Start(Args(std::move(extra)));
    const int status = g.Wait(absl::Seconds(60));
    *json = g.json();
    if (status != 0) std::cerr << name << " log:\n" << g.log();
    return status;
  }

  std::string dir_;
  std::string address_;
  int port_;
  harness::DaemonProcess daemon_;
};

TEST_F(VerifyloadDaemonTest, LoadThenVerifyFindsNothingLost) {
  std::string json;
  EXPECT_EQ(Run("both", {"--duration=3", "--qd=8"}, &json), 0) << json;
  EXPECT_GT(JsonInt(json, "writes_acked"), 100) << json;
  EXPECT_GT(JsonInt(json, "reads"), 100) << json;
  EXPECT_GT(JsonInt(json, "verified_blocks"), 1000) << json;
  EXPECT_EQ(JsonInt(json, "lost"), 0) << json;
  EXPECT_EQ(JsonInt(json, "corrupt"), 0) << json;
  EXPECT_EQ(JsonInt(json, "hard_errors"), 0) << json;
  EXPECT_EQ(JsonInt(json, "unknown_outcome"), 0) << json;
  EXPECT_TRUE(daemon_.Stop().ok());
}

TEST_F(VerifyloadDaemonTest, VerifyFindsDataDamagedBehindTheTargetsBack) {
  const std::string ledger_path = dir_ + "/run.ledger";
  std::string json;
  ASSERT_EQ(Run("load",
                {"--mode=load", "--duration=2", "--lba_count=2048",
                 "--ledger=" + ledger_path},
                &json),
            0)
      << json;
  // The untouched LUN verifies clean.
  ASSERT_EQ(
      Run("verify-before", {"--mode=verify", "--ledger=" + ledger_path}, &json),
      0)
      << json;
  ASSERT_EQ(JsonInt(json, "lost"), 0) << json;
  ASSERT_TRUE(daemon_.Stop().ok());

  // Behind the stopped daemon: zero 64 blocks that hold acknowledged writes,
  // and copy one acknowledged block onto its acknowledged neighbour.
  absl::StatusOr<verifyload::Ledger> ledger =
      verifyload::Ledger::Load(ledger_path, nullptr);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ASSERT_EQ(ledger->block_size(), kBlockSize);
  std::vector<uint64_t> acked;
  for (uint64_t lba : ledger->WrittenLbas()) {
    if (ledger->record(lba).acked != 0) acked.push_back(lba);
  }
  ASSERT_GT(acked.size(), 200u);
  int fd = open(backing_file().c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << backing_file();
  const std::vector<uint8_t> zeros(kBlockSize, 0);
  for (size_t i = 0; i < 64; ++i) {
    ASSERT_EQ(pwrite(fd, zeros.data(), kBlockSize, acked[i] * kBlockSize),
              static_cast<ssize_t>(kBlockSize));
  }
  uint64_t from = 0;
  for (size_t i = 64; i + 1 < acked.size(); ++i) {
    if (acked[i + 1] == acked[i] + 1) {
      from = acked[i];
      break;
    }
  }
  ASSERT_NE(from, 0u);
  std::vector<uint8_t> block(kBlockSize);
  ASSERT_EQ(pread(fd, block.data(), kBlockSize, from * kBlockSize),
            static_cast<ssize_t>(kBlockSize));
  ASSERT_EQ(pwrite(fd, block.data(), kBlockSize, (from + 1) * kBlockSize),
            static_cast<ssize_t>(kBlockSize));
  close(fd);
  StartDaemon();

  EXPECT_EQ(
      Run("verify-after", {"--mode=verify", "--ledger=" + ledger_path}, &json),
      1)
      << json;
  EXPECT_EQ(JsonInt(json, "lost"), 64) << json;
  EXPECT_EQ(JsonInt(json, "corrupt"), 1) << json;
  EXPECT_NE(json.find("reads zeros"), std::string::npos) << json;
  EXPECT_TRUE(daemon_.Stop().ok());
}

TEST_F(VerifyloadDaemonTest, SurvivesADaemonRestartDuringTheLoad) {
  Generator g(dir_, "restart");
  g.Start(Args({"--duration=8", "--qd=8", "--lba_count=4096",
                "--reconnect_timeout=30"}));
  ASSERT_TRUE(g.WaitForAckedWrites(absl::Seconds(10))) << g.log();
  ASSERT_TRUE(daemon_.Stop().ok());
  StartDaemon();
  const int status = g.Wait(absl::Seconds(50));
  const std::string json = g.json();
  EXPECT_EQ(status, 0) << json << "\n" << g.log();
  EXPECT_GE(JsonInt(json, "reconnects"), 1) << json;
  EXPECT_EQ(JsonInt(json, "lost"), 0) << json;
  EXPECT_EQ(JsonInt(json, "corrupt"), 0) << json;
  EXPECT_EQ(JsonInt(json, "hard_errors"), 0) << json;
  EXPECT_GT(JsonInt(json, "verified_blocks"), 0) << json;
  EXPECT_TRUE(daemon_.Stop().ok());
}

TEST_F(VerifyloadDaemonTest, SigtermEndsTheLoadWithASavedLedger) {
  const std::string ledger_path = dir_ + "/term.ledger";
  Generator g(dir_, "term");
  g.Start(Args({"--mode=load", "--duration=300", "--lba_count=4096",
                "--ledger=" + ledger_path}));
  ASSERT_TRUE(g.WaitForAckedWrites(absl::Seconds(10))) << g.log();
  g.Signal(SIGTERM);
  EXPECT_EQ(g.Wait(absl::Seconds(15)), 0) << g.json() << "\n" << g.log();
  EXPECT_GT(JsonInt(g.json(), "writes_acked"), 0) << g.json();
  ASSERT_TRUE(std::filesystem::exists(ledger_path)) << g.log();

  std::string json;
  EXPECT_EQ(Run("verify", {"--mode=verify", "--ledger=" + ledger_path}, &json),
            0)
      << json;
  EXPECT_GT(JsonInt(json, "verified_blocks"), 0) << json;
  EXPECT_EQ(JsonInt(json, "lost"), 0) << json;
  EXPECT_TRUE(daemon_.Stop().ok());
}

TEST_F(VerifyloadDaemonTest, NoTargetMeansExitTwo) {
  ASSERT_TRUE(daemon_.Stop().ok());
  std::string json;
  EXPECT_EQ(
      Run("unreachable", {"--duration=1", "--reconnect_timeout=1"}, &json), 2)
      << json;
  EXPECT_NE(json.find("\"error\""), std::string::npos) << json;
}

}  // namespace
