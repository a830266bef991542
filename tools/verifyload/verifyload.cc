#include "tools/verifyload/verifyload.h"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/verifyload/block_format.h"
#include "tools/verifyload/ledger.h"
#include "tools/verifyload/load_runner.h"
#include "tools/verifyload/log.h"
#include "tools/verifyload/session.h"
#include "tools/verifyload/verifier.h"

namespace verifyload {
namespace {

// A non-zero random value of `bits` bits (run ids, ISIDs): independent of
// --seed, so two runs with the same seed never share generations.
uint64_t RandomBits(int bits) {
  std::random_device device;
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  for (;;) {
    uint64_t v = (uint64_t{device()} << 32) ^ device() ^
                 static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                 (static_cast<uint64_t>(getpid()) << 16);
    v &= mask;
    if (v != 0) return v;
  }
}

}  // namespace

Report RunVerifyload(const Options& options_in,
                     const std::function<int()>& signal_count) {
  Options options = options_in;
  Report report;
  if (options.seed == 0) {
    options.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                   static_cast<uint64_t>(getpid());
  }

  std::optional<Ledger> ledger;
  if (options.mode == Mode::kVerify) {
    absl::StatusOr<Ledger> loaded = Ledger::Load(options.ledger_path, &report);
    if (!loaded.ok()) {
      report.fatal = absl::StrCat("ledger: ", loaded.status().message());
      return report;
    }
    ledger = std::move(*loaded);
    LogLine(
        absl::StrFormat("ledger %s: run %06x, %d-byte blocks, %d written LBAs",
                        options.ledger_path, ledger->run_id(),
                        ledger->block_size(), ledger->WrittenLbas().size()));
  }

  // Signals seen before the current phase began; a phase stops at the next.
  int signals_before_phase = 0;
  SessionOptions session_options;
  session_options.portal = options.portal;
  session_options.target = options.target;
  session_options.lun = options.lun;
  session_options.initiator = options.initiator;
  session_options.isid_random = static_cast<uint32_t>(RandomBits(24));
  session_options.reconnect_timeout =
      absl::Seconds(options.reconnect_timeout_seconds);
  session_options.io_timeout = absl::Seconds(options.io_timeout_seconds);
  session_options.should_abort = [&] {
    return signal_count() > signals_before_phase;
  };
  LogLine(absl::StrCat("connecting to ", options.portal, " ", options.target,
                       " LUN ", options.lun, " as ", options.initiator,
                       " (mode ", ModeName(options.mode), ")"));
  absl::StatusOr<std::unique_ptr<Session>> opened =
      Session::Open(session_options);
  if (!opened.ok()) {
    report.fatal = std::string(opened.status().message());
    return report;
  }
  Session& session = **opened;
  const uint32_t block_size = session.block_size();
  const uint64_t num_blocks = session.num_blocks();
  LogLine(
      absl::StrFormat("LUN has %d blocks of %d bytes", num_blocks, block_size));
  if (block_size < kMinBlockSize) {
    report.fatal =
        absl::StrCat("block size ", block_size, " is below ", kMinBlockSize);
    return report;
  }

  if (options.mode != Mode::kVerify) {
    const uint64_t region = options.lba_count != 0
                                ? options.lba_count
                                : std::min(num_blocks, kDefaultMaxLbaCount);
    if (region > num_blocks || options.max_blocks > region) {
      report.fatal = absl::StrFormat(
          "--lba_count=%d / --max_blocks=%d do not fit the LUN (%d blocks)",
          region, options.max_blocks, num_blocks);
      return report;
    }
    ledger.emplace(RandomBits(kRunIdBits), block_size, region);
    LoadRunner load(options, session, *ledger, report,
                    [&] { return signal_count() > signals_before_phase; });
    absl::Status loaded = load.Run();
    report.reconnects += session.reconnects();
    if (!options.ledger_path.empty()) {
      absl::Status saved = ledger->Save(options.ledger_path, report);
      if (saved.ok()) {
        LogLine(absl::StrCat("ledger saved to ", options.ledger_path));
      } else {
        report.HardError(absl::StrCat("saving the ledger: ", saved.message()));
      }
    }
    if (options.mode == Mode::kLoad || !loaded.ok()) {
      if (!loaded.ok() && options.mode == Mode::kBoth) {
        report.verify_incomplete = true;
      }
      session.Close();
      return report;
    }
  } else if (ledger->block_size() != block_size ||
             ledger->lba_count() > num_blocks) {
    report.fatal = absl::StrFormat(
        "the ledger (%d LBAs of %d bytes) does not fit this LUN (%d of %d)",
        ledger->lba_count(), ledger->block_size(), num_blocks, block_size);
    return report;
  }

  signals_before_phase = signal_count();
  const uint64_t reconnects_before = session.reconnects();
  Verifier verifier(options, session, *ledger, report,
                    [&] { return signal_count() > signals_before_phase; });
  verifier.Run().IgnoreError();  // everything it found is in the report
  report.reconnects += session.reconnects() - reconnects_before;
  session.Close();
  return report;
}

}  // namespace verifyload
