// verifyload end to end: connect, load (recording every outcome in the
// ledger), save the ledger, verify. The composition root of the tool; main.cc
// only parses flags, handles signals and prints the report.
#ifndef TOOLS_VERIFYLOAD_VERIFYLOAD_H_
#define TOOLS_VERIFYLOAD_VERIFYLOAD_H_

#include <functional>

#include "tools/verifyload/options.h"
#include "tools/verifyload/report.h"

namespace verifyload {

// Runs what options.mode says. signal_count() is the number of SIGTERM/SIGINT
// received so far: the first ends the load phase (drain, save the ledger, and
// in mode both go on to verify); one more during verification aborts it.
// Problems end up in the report (report.fatal for usage errors and "never
// connected").
Report RunVerifyload(const Options& options,
                     const std::function<int()>& signal_count);

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_VERIFYLOAD_H_
