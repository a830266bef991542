// The verify phase of verifyload: reads every LBA the ledger lists (with up to
// --qd reads in flight, contiguous LBAs batched) and judges each block
// against the ledger. Reads lost with the connection or answered with a
// retryable status are issued again, so a failover during verification only
// delays it.
#ifndef TOOLS_VERIFYLOAD_VERIFIER_H_
#define TOOLS_VERIFYLOAD_VERIFIER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tools/verifyload/ledger.h"
#include "tools/verifyload/options.h"
#include "tools/verifyload/report.h"
#include "tools/verifyload/session.h"

namespace verifyload {

class Verifier {
 public:
  // abort_requested is asked between reads (a signal during verification).
  Verifier(const Options& options, Session& session, const Ledger& ledger,
           Report& report, std::function<bool()> abort_requested);

  // Verifies every written LBA; sets report.verify_incomplete when some
  // could not be read (aborted, hard errors, session died).
  absl::Status Run();

 private:
  struct Extent {
    uint64_t lba = 0;
    uint32_t blocks = 0;
    absl::Time first_issued = absl::InfinitePast();
    int attempts = 0;
  };

  void Issue(Extent e);
  void OnDone(Extent e, IoResult result);

  const Options& options_;
  Session& session_;
  const Ledger& ledger_;
  Report& report_;
  std::function<bool()> abort_requested_;
  std::deque<Extent> todo_;
  std::vector<std::pair<absl::Time, Extent>> retries_;
  size_t in_flight_ = 0;
  uint64_t total_blocks_ = 0;
  uint64_t done_blocks_ = 0;
  uint64_t failed_blocks_ = 0;
};

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_VERIFIER_H_
