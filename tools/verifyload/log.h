// Progress and diagnostics of verifyload: one line per call on stderr,
// prefixed with the seconds since the process started. (stdout carries only
// the final JSON.)
#ifndef TOOLS_VERIFYLOAD_LOG_H_
#define TOOLS_VERIFYLOAD_LOG_H_

#include "absl/strings/string_view.h"

namespace verifyload {

void LogLine(absl::string_view line);

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_LOG_H_
