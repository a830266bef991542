// Helpers shared by the appliance/ha tests.
#ifndef TESTS_HA_TEST_UTIL_H_
#define TESTS_HA_TEST_UTIL_H_

#include <stdlib.h>

#include <functional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace appliance::ha::testing {

// A fresh directory under the test's temporary directory.
inline std::string MakeTempDir(const std::string& name) {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl =
      std::string(base != nullptr ? base : "/tmp") + "/" + name + ".XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  return dir != nullptr ? std::string(dir) : std::string();
}

// A clock that only moves when told to.
class FakeClock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'000'000))
      : now_(start) {}
  absl::Time Now() const {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  std::function<absl::Time()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_;
};

// Polls predicate until it holds or timeout passes (for tests that run real
// heartbeat threads); returns its last value.
inline bool WaitFor(const std::function<bool()>& predicate,
                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return predicate();
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace appliance::ha::testing

#endif  // TESTS_HA_TEST_UTIL_H_
