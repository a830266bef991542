// Helpers shared by the NVLOG tests.
#ifndef TESTS_NVLOG_TEST_UTIL_H_
#define TESTS_NVLOG_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "appliance/nvlog/nvlog.h"

namespace nvlog_test {

// Collects one Append completion.
struct AppendDone {
  absl::Notification notification;
  absl::StatusOr<nvlog::AppendResult> result =
      absl::UnknownError("callback did not run");

  nvlog::AppendCallback Callback() {
    return [this](absl::StatusOr<nvlog::AppendResult> r) {
      result = std::move(r);
      notification.Notify();
    };
  }
  bool Wait(absl::Duration timeout = absl::Seconds(10)) {
    return notification.WaitForNotificationWithTimeout(timeout);
  }
  bool done() const { return notification.HasBeenNotified(); }
};

// n bytes, each `fill`.
inline std::vector<uint8_t> Bytes(char fill, size_t n = 4096) {
  return std::vector<uint8_t>(n, static_cast<uint8_t>(fill));
}

inline std::string AsString(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), v.end());
}

}  // namespace nvlog_test

#endif  // TESTS_NVLOG_TEST_UTIL_H_
