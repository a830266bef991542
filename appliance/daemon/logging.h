// Process-wide logging setup for applianced: glog to stderr and to files under
// the node's state directory.
#ifndef APPLIANCE_DAEMON_LOGGING_H_
#define APPLIANCE_DAEMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace appliance::daemon {

// Logs go to stderr and to log_dir/applianced.{INFO,WARNING,ERROR}.* (log_dir
// is created when missing). Call once, before starting threads.
absl::Status SetUpLogging(const char* argv0, const std::string& log_dir);

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_LOGGING_H_
