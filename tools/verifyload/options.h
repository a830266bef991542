// Command line of verifyload (parsed with getopt_long): where to connect, the
// shape of the load, and what to do (load, verify a saved ledger, or both).
#ifndef TOOLS_VERIFYLOAD_OPTIONS_H_
#define TOOLS_VERIFYLOAD_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace verifyload {

enum class Mode {
  kLoad,    // load for --duration, save the ledger
  kVerify,  // read --ledger and verify every LBA it lists
  kBoth,    // load, then verify (default)
};

// The default load region: the whole LUN, at most this many blocks.
inline constexpr uint64_t kDefaultMaxLbaCount = 65536;

struct Options {
  std::string portal;            // --portal=IP:PORT (required)
  std::string target;            // --target=IQN (required)
  int lun = 0;                   // --lun
  std::string initiator;         // --initiator, default
                                 // iqn.2026-11.com.example:verifyload-<pid>
  double duration_seconds = 10;  // --duration: length of the load phase
  int qd = 8;                    // --qd: commands in flight, 1..1024
  int write_percent = 50;        // --write_percent: 0..100
  uint32_t max_blocks = 8;       // --max_blocks: each command 1..N blocks
  // --lba_count: the load region is LBAs [0, N); 0 = the whole LUN capped
  // at kDefaultMaxLbaCount.
  uint64_t lba_count = 0;
  // --seed for the choice of operations, LBAs and lengths; 0 = from the
  // clock. (Block contents depend on the generation, not on the seed.)
  uint64_t seed = 0;
  std::string ledger_path;  // --ledger: saved after load, read by verify
  Mode mode = Mode::kBoth;  // --mode=load|verify|both
  // --reconnect_timeout: how long to keep trying to (re)connect.
  double reconnect_timeout_seconds = 60;
  // --io_timeout: a command unanswered this long drops the connection (its
  // outcome becomes unknown) and the session is re-established.
  double io_timeout_seconds = 30;
  // --drain_timeout: at the end of load (or on SIGTERM), how long to wait
  // for commands in flight before dropping them as unknown-outcome.
  double drain_timeout_seconds = 10;
  // --progress_interval: seconds between progress lines on stderr (0: none).
  double progress_seconds = 1;
  bool help = false;  // --help
};

// Parses argv. kInvalidArgument with a message on a usage error.
absl::StatusOr<Options> ParseArgs(int argc, char** argv);

std::string UsageText();

const char* ModeName(Mode mode);

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_OPTIONS_H_
