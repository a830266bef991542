// The load phase of verifyload: keeps --qd reads and writes in flight on a
// Session, writes self-describing blocks (block_format.h) with a new
// generation per command, records every outcome in the Ledger, and verifies
// the blocks it reads online against it.
//
// No two commands in flight overlap (a busy map of the region), so every
// block's expected content is exact. Retryable answers (NOT READY 04/xx, UNIT
// ATTENTION, BUSY, TASK SET FULL) re-issue the command after a short backoff,
// writes under a new generation (the old one becomes unknown-outcome);
// commands lost with the connection are not re-issued.
#ifndef TOOLS_VERIFYLOAD_LOAD_RUNNER_H_
#define TOOLS_VERIFYLOAD_LOAD_RUNNER_H_

#include <cstdint>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tools/verifyload/ledger.h"
#include "tools/verifyload/options.h"
#include "tools/verifyload/report.h"
#include "tools/verifyload/session.h"

namespace verifyload {

class LoadRunner {
 public:
  // The region is [0, ledger.lba_count()); ledger.block_size() must be the
  // session's. stop_requested is asked between commands (SIGTERM/SIGINT).
  LoadRunner(const Options& options, Session& session, Ledger& ledger,
             Report& report, std::function<bool()> stop_requested);

  // Runs for options.duration_seconds or until stop_requested(), then waits
  // up to options.drain_timeout_seconds for the commands in flight (after
  // that they are abandoned as unknown-outcome). Counts into the report; the
  // status is not OK when the session died (could not reconnect).
  absl::Status Run();

 private:
  struct Op {
    bool write = false;
    uint64_t lba = 0;
    uint32_t blocks = 0;
    uint64_t generation = 0;  // writes: of the current attempt
    absl::Time first_issued;
    int attempts = 0;
  };

  // Starts commands until qd are active.
  void Fill();
  bool TryStart(bool write);
  void Issue(Op op);
  void OnDone(Op op, IoResult result);
  void Release(const Op& op);
  void RetryDue(absl::Time now);
  void Progress(absl::Time now, bool force);

  const Options& options_;
  Session& session_;
  Ledger& ledger_;
  Report& report_;
  std::function<bool()> stop_requested_;
  std::mt19937_64 rng_;
  uint64_t sequence_ = 0;
  std::vector<uint8_t> busy_;      // per LBA: a command holds it
  std::vector<uint64_t> written_;  // LBAs ever written, read targets
  std::vector<uint8_t> listed_;    // per LBA: in written_
  std::vector<std::pair<absl::Time, Op>> retries_;  // due time, op
  size_t active_ = 0;  // ops holding LBAs (incl. retries)
  bool stopping_ = false;
  absl::Time start_;
  absl::Time last_progress_;
};

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_LOAD_RUNNER_H_
