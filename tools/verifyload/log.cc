#include "tools/verifyload/log.h"

#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace verifyload {

void LogLine(absl::string_view line) {
  static const absl::Time start = absl::Now();
  std::fprintf(stderr, "verifyload %7.3fs %.*s\n",
               absl::ToDoubleSeconds(absl::Now() - start),
               static_cast<int>(line.size()), line.data());
}

}  // namespace verifyload
