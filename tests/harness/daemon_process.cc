#include "tests/harness/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace harness {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls child until it exits or deadline passes; returns its wait status or -1.
int WaitUntil(pid_t pid, absl::Time deadline) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

DaemonProcess::~DaemonProcess() { Kill(); }

absl::Status DaemonProcess::Start(absl::Duration timeout) {
  const std::string state = state_dir();
  const std::string shared = config_.dir + "/shared";
  std::filesystem::create_directories(state);
  std::filesystem::create_directories(shared);
  const std::string config_path = state + "/bootstrap.textproto";
  if (!std::filesystem::exists(config_path)) {
    std::ofstream out(config_path);
    out << "node_name: \"" << config_.node_name << "\"\n"
        << "target_name: \"" << config_.target_name << "\"\n"
        << "physical_ports { name: \"e0a\" address: \"" << config_.address
        << "\" }\n"
        << "lifs { name: \"lif-1\" address: \"" << config_.address
        << "\" port: 0 home_node: \"" << config_.node_name
        << "\" home_port: \"e0a\" relative_target_port_id: 1 "
           "target_portal_group: 1 }\n"
        << "mgmt_address: \"" << config_.address << ":0\"\n"
        << "shared_storage_dir: \"" << shared << "\"\n"
        << "state_dir: \"" << state << "\"\n"
        << config_.extra << "\n";
  }
  std::filesystem::remove(state + "/mgmt.url");
  std::filesystem::remove(state + "/iscsi.portals");
  const std::string log = state + "/applianced.out";
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    const std::string flag = "--config=" + config_path;
    execl(config_.binary.c_str(), config_.binary.c_str(), flag.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("applianced exited during start:\n", ReadFile(log)));
    }
    // iscsi.portals is written after mgmt.url: both are there once it appears.
    if (std::filesystem::exists(state + "/iscsi.portals")) {
      rest_url_ = std::string(
          absl::StripAsciiWhitespace(ReadFile(state + "/mgmt.url")));
      portals_ = absl::StrSplit(ReadFile(state + "/iscsi.portals"), '\n',
                                absl::SkipWhitespace());
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("applianced did not come up:\n", ReadFile(log)));
}

absl::Status DaemonProcess::Stop(absl::Duration timeout) {
  if (pid_ < 0) return absl::FailedPreconditionError("not running");
  kill(pid_, SIGTERM);
  int status = WaitUntil(pid_, absl::Now() + timeout);
  if (status == -1) {
    Kill();
    return absl::DeadlineExceededError("applianced ignored SIGTERM");
  }
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("applianced exited with status ", status, ":\n",
                     ReadFile(state_dir() + "/applianced.out")));
  }
  return absl::OkStatus();
}

void DaemonProcess::Kill() {
  if (pid_ < 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string DaemonProcess::IscsiUrl(int lun) const {
  return absl::StrCat("iscsi://", portals_.empty() ? "" : portals_[0], "/",
                      config_.target_name, "/", lun);
}

}  // namespace harness
