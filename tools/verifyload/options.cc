#include "tools/verifyload/options.h"

#include <getopt.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verifyload {
namespace {

enum Flag {
  kPortal = 1000,
  kTarget,
  kLun,
  kInitiator,
  kDuration,
  kQd,
  kWritePercent,
  kMaxBlocks,
  kLbaCount,
  kSeed,
  kLedger,
  kMode,
  kReconnectTimeout,
  kIoTimeout,
  kDrainTimeout,
  kProgressInterval,
  kHelp,
};

absl::Status Bad(const std::string& flag, const std::string& value,
                 const std::string& want) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, ": expected ", want));
}

template <typename T>
absl::Status ParseInt(const char* flag, const char* value, T min, T max,
                      T* out) {
  T v{};
  if (!absl::SimpleAtoi(value, &v) || v < min || v > max) {
    return Bad(flag, value, absl::StrCat("an integer in ", min, "..", max));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ParseSeconds(const char* flag, const char* value, double min,
                          double* out) {
  double v = 0;
  if (!absl::SimpleAtod(value, &v) || !(v >= min) || v > 1e7) {
    return Bad(flag, value, absl::StrCat("seconds >= ", min));
  }
  *out = v;
  return absl::OkStatus();
}

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kLoad:
      return "load";
    case Mode::kVerify:
      return "verify";
    case Mode::kBoth:
      return "both";
  }
  return "?";
}

std::string UsageText() {
  return R"(usage: verifyload --portal=IP:PORT --target=IQN [flags]

A verifying load generator: keeps --qd reads and writes in flight on one iSCSI
session, records every acknowledged write, survives reconnects and failovers,
then checks that every acknowledged write reads back. One JSON object on
stdout; progress on stderr. Exit 0 clean, 1 lost/corrupt data or hard errors,
2 usage error or never connected.

  --portal=IP:PORT          target portal (required)
  --target=IQN              target name (required)
  --lun=N                   logical unit (0)
  --initiator=IQN           initiator name
                            (iqn.2026-11.com.example:verifyload-<pid>)
  --duration=SECONDS        length of the load phase (10)
  --qd=N                    commands in flight (8)
  --write_percent=0..100    share of writes among commands (50)
  --max_blocks=N            each command moves 1..N blocks (8)
  --lba_count=N             load region LBAs 0..N-1 (whole LUN, max 65536)
  --seed=N                  seed of the operation mix (from the clock)
  --ledger=FILE             save the ledger after load / read it to verify
  --mode=load|verify|both   (both): load, then verify every written LBA
  --reconnect_timeout=SECS  keep trying to reconnect this long (60)
  --io_timeout=SECS         unanswered command drops the connection (30)
  --drain_timeout=SECS      wait for in-flight commands at the end (10)
  --progress_interval=SECS  progress lines on stderr, 0 = none (1)
  --help
SIGTERM/SIGINT during load: stop issuing, drain, save the ledger, (verify in
mode both), report. A second signal during verify aborts it.
)";
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  static const struct option kLongOptions[] = {
      {"portal", required_argument, nullptr, kPortal},
      {"target", required_argument, nullptr, kTarget},
      {"lun", required_argument, nullptr, kLun},
      {"initiator", required_argument, nullptr, kInitiator},
      {"duration", required_argument, nullptr, kDuration},
      {"qd", required_argument, nullptr, kQd},
      {"write_percent", required_argument, nullptr, kWritePercent},
      {"max_blocks", required_argument, nullptr, kMaxBlocks},
      {"lba_count", required_argument, nullptr, kLbaCount},
      {"seed", required_argument, nullptr, kSeed},
      {"ledger", required_argument, nullptr, kLedger},
      {"mode", required_argument, nullptr, kMode},
      {"reconnect_timeout", required_argument, nullptr, kReconnectTimeout},
      {"io_timeout", required_argument, nullptr, kIoTimeout},
      {"drain_timeout", required_argument, nullptr, kDrainTimeout},
      {"progress_interval", required_argument, nullptr, kProgressInterval},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  Options o;
  o.initiator = absl::StrCat("iqn.2026-11.com.example:verifyload-", getpid());
  optind = 0;  // getopt keeps state between calls; start over
  opterr = 0;  // errors are reported by the caller
  // "+": stop at the first non-option instead of permuting argv; ":": report
  // a missing value as ':' rather than '?'.
  const char* const kShortOptions = "+:";
  int c;
  while ((c = getopt_long(argc, argv, kShortOptions, kLongOptions, nullptr)) !=
         -1) {
    absl::Status s;
    switch (c) {
      case kPortal:
        o.portal = optarg;
        break;
      case kTarget:
        o.target = optarg;
        break;
      case kLun:
        s = ParseInt("lun", optarg, 0, 16383, &o.lun);
        break;
      case kInitiator:
        o.initiator = optarg;
        break;
      case kDuration:
        s = ParseSeconds("duration", optarg, 0, &o.duration_seconds);
        break;
      case kQd:
        s = ParseInt("qd", optarg, 1, 1024, &o.qd);
        break;
      case kWritePercent:
        s = ParseInt("write_percent", optarg, 0, 100, &o.write_percent);
        break;
      case kMaxBlocks:
        s = ParseInt<uint32_t>("max_blocks", optarg, 1, 65536, &o.max_blocks);
        break;
      case kLbaCount:
        s = ParseInt<uint64_t>("lba_count", optarg, 0, uint64_t{1} << 32,
                               &o.lba_count);
        break;
      case kSeed:
        s = ParseInt<uint64_t>("seed", optarg, 0, ~uint64_t{0}, &o.seed);
        break;
      case kLedger:
        o.ledger_path = optarg;
        break;
      case kMode: {
        const std::string m = optarg;
        if (m == "load") {
          o.mode = Mode::kLoad;
        } else if (m == "verify") {
          o.mode = Mode::kVerify;
        } else if (m == "both") {
          o.mode = Mode::kBoth;
        } else {
          s = Bad("mode", m, "load, verify or both");
        }
        break;
      }
      case kReconnectTimeout:
        s = ParseSeconds("reconnect_timeout", optarg, 0,
                         &o.reconnect_timeout_seconds);
        break;
      case kIoTimeout:
        s = ParseSeconds("io_timeout", optarg, 0.1, &o.io_timeout_seconds);
        break;
      case kDrainTimeout:
        s = ParseSeconds("drain_timeout", optarg, 0, &o.drain_timeout_seconds);
        break;
      case kProgressInterval:
        s = ParseSeconds("progress_interval", optarg, 0, &o.progress_seconds);
        break;
      case kHelp:
        o.help = true;
        break;
      case ':':
        return absl::InvalidArgumentError(
            absl::StrCat(argv[optind - 1], ": missing value"));
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag ", argv[optind - 1]));
    }
    if (!s.ok()) return s;
  }
  if (optind < argc) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument ", argv[optind]));
  }
  if (o.help) return o;
  if (o.portal.empty())
    return absl::InvalidArgumentError("--portal is required");
  if (o.target.empty())
    return absl::InvalidArgumentError("--target is required");
  if (o.initiator.empty()) {
    return absl::InvalidArgumentError("--initiator must not be empty");
  }
  if (o.mode == Mode::kVerify && o.ledger_path.empty()) {
    return absl::InvalidArgumentError("--mode=verify needs --ledger=FILE");
  }
  if (o.lba_count != 0 && o.max_blocks > o.lba_count) {
    return absl::InvalidArgumentError(
        "--max_blocks must not exceed --lba_count");
  }
  return o;
}

}  // namespace verifyload
