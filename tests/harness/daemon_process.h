// Runs a real applianced process for tests: writes its bootstrap config, starts
// it, waits until it publishes its REST URL and iSCSI portals (kernel-chosen
// ports), and stops it with SIGTERM (clean) or SIGKILL (crash).
#ifndef TESTS_HARNESS_DAEMON_PROCESS_H_
#define TESTS_HARNESS_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace harness {

struct DaemonConfig {
  std::string binary;       // path of applianced
  std::string dir;          // this node's state dir is dir/node_name
  std::string node_name = "node-a";
  std::string target_name = "iqn.2026-11.com.example:test";
  std::string address = "127.0.0.1";
  // Extra textproto lines (seed_luns { ... }, ...).
  std::string extra;
};

class DaemonProcess {
 public:
  explicit DaemonProcess(DaemonConfig config) : config_(std::move(config)) {}
  ~DaemonProcess();  // SIGKILLs a process still running

  // Writes the bootstrap file (first call only) and starts the daemon; returns
  // when its endpoints are published, or an error with its output.
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));
  // SIGTERM, then waits; error unless it exits 0 within timeout.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(20));
  // SIGKILL and reap.
  void Kill();

  const std::string& rest_url() const { return rest_url_; }
  // "address:port" of each hosted LIF.
  const std::vector<std::string>& portals() const { return portals_; }
  // iscsi://portal/target/lun for the first portal.
  std::string IscsiUrl(int lun) const;
  std::string state_dir() const { return config_.dir + "/" + config_.node_name; }
  pid_t pid() const { return pid_; }

 private:
  DaemonConfig config_;
  pid_t pid_ = -1;
  std::string rest_url_;
  std::vector<std::string> portals_;
};

}  // namespace harness

#endif  // TESTS_HARNESS_DAEMON_PROCESS_H_
