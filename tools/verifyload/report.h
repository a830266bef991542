// What one verifyload invocation found: counters, the LBAs where an
// acknowledged write was lost or corrupted, the first problems in words, and
// the JSON line and exit status that report them.
#ifndef TOOLS_VERIFYLOAD_REPORT_H_
#define TOOLS_VERIFYLOAD_REPORT_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace verifyload {

// Exit statuses of the verifyload binary.
inline constexpr int kExitClean = 0;   // nothing lost, corrupt or failed
inline constexpr int kExitFailed = 1;  // lost/corrupt data, hard errors, or
                                       // verification could not finish
inline constexpr int kExitUsage = 2;   // bad flags or ledger, never connected

struct Report {
  // How many distinct problems are kept in words.
  static constexpr size_t kMaxProblems = 10;

  uint64_t writes_acked = 0;     // write commands acknowledged GOOD
  uint64_t reads = 0;            // load-phase read commands completed GOOD
  uint64_t reconnects = 0;       // sessions re-established after a loss
  uint64_t retries = 0;          // commands re-issued after a retryable answer
  uint64_t hard_errors = 0;      // commands failed with a non-retryable answer
  uint64_t unknown_outcome = 0;  // write commands never acknowledged
  uint64_t verified_blocks = 0;  // blocks judged (online reads + verify pass)
  double load_seconds = 0;       // wall time of the load phase
  // LBAs where an acknowledged write was found missing (older data, zeros) or
  // damaged (bad CRC, another LBA's block, garbage).
  std::set<uint64_t> lost_lbas;
  std::set<uint64_t> corrupt_lbas;
  std::vector<std::string> first_problems;

  // Set when verification did not check every written block (aborted by a
  // signal, or the target stayed unreachable).
  bool verify_incomplete = false;
  // Fatal error before any result: exit kExitUsage with this message.
  std::string fatal;

  void Lost(uint64_t lba, const std::string& reason);
  void Corrupt(uint64_t lba, const std::string& reason);
  void HardError(const std::string& reason);
  // Keeps reason when fewer than kMaxProblems are kept.
  void AddProblem(const std::string& reason);

  // (writes_acked + reads) per second of load.
  double iops() const;
  // One line of JSON (no newline).
  std::string ToJson() const;
  int ExitCode() const;
};

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_REPORT_H_
