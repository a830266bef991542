#include "appliance/daemon/logging.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace appliance::daemon {

absl::Status SetUpLogging(const char* argv0, const std::string& log_dir) {
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create log directory ", log_dir, ": ", ec.message()));
  }
  FLAGS_alsologtostderr = true;
  FLAGS_colorlogtostderr = false;
  FLAGS_logbufsecs = 0;
  google::InitGoogleLogging(argv0);
  const std::string prefix = log_dir + "/applianced.";
  google::SetLogDestination(google::GLOG_INFO, (prefix + "INFO.").c_str());
  google::SetLogDestination(google::GLOG_WARNING,
                            (prefix + "WARNING.").c_str());
  google::SetLogDestination(google::GLOG_ERROR, (prefix + "ERROR.").c_str());
  google::SetLogDestination(google::GLOG_FATAL, (prefix + "FATAL.").c_str());
  google::InstallFailureSignalHandler();
  return absl::OkStatus();
}

}  // namespace appliance::daemon
