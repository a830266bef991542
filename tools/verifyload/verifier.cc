#include "tools/verifyload/verifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tools/verifyload/log.h"

namespace verifyload {
namespace {

// Largest read of the verify pass: 256 blocks or 1 MiB.
uint32_t MaxExtentBlocks(uint32_t block_size) {
  return std::max<uint32_t>(1,
                            std::min<uint32_t>(256, (1u << 20) / block_size));
}

}  // namespace

Verifier::Verifier(const Options& options, Session& session,
                   const Ledger& ledger, Report& report,
                   std::function<bool()> abort_requested)
    : options_(options),
      session_(session),
      ledger_(ledger),
      report_(report),
      abort_requested_(std::move(abort_requested)) {
  const uint32_t max_blocks = MaxExtentBlocks(ledger.block_size());
  for (uint64_t lba : ledger.WrittenLbas()) {
    ++total_blocks_;
    if (!todo_.empty() && todo_.back().lba + todo_.back().blocks == lba &&
        todo_.back().blocks < max_blocks) {
      ++todo_.back().blocks;
    } else {
      Extent e;
      e.lba = lba;
      e.blocks = 1;
      todo_.push_back(e);
    }
  }
}

absl::Status Verifier::Run() {
  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  LogLine(absl::StrCat("verify: ", total_blocks_, " written blocks in ",
                       todo_.size(), " reads"));
  absl::Status status;
  bool aborted = false;
  while (!todo_.empty() || !retries_.empty() || in_flight_ > 0) {
    if (!aborted && abort_requested_()) {
      aborted = true;
      LogLine("verify aborted by a signal");
      session_.Abandon();
      continue;  // in-flight reads complete as lost
    }
    const absl::Time now = absl::Now();
    if (aborted || !status.ok()) {
      // Count what will not be read, then let the session drain.
      for (const Extent& e : todo_) failed_blocks_ += e.blocks;
      for (const auto& [due, e] : retries_) failed_blocks_ += e.blocks;
      todo_.clear();
      retries_.clear();
      if (in_flight_ == 0) break;
    } else {
      auto it = std::partition(retries_.begin(), retries_.end(),
                               [&](const auto& r) { return r.first > now; });
      for (auto i = it; i != retries_.end(); ++i) todo_.push_front(i->second);
      retries_.erase(it, retries_.end());
      while (in_flight_ < static_cast<size_t>(options_.qd) && !todo_.empty()) {
        Extent e = todo_.front();
        todo_.pop_front();
        Issue(e);
      }
    }
    absl::Duration wait = absl::Milliseconds(100);
    for (const auto& [due, e] : retries_) {
      wait = std::max(absl::ZeroDuration(), std::min(wait, due - now));
    }
    absl::Status polled = session_.Poll(wait);
    if (!polled.ok() && status.ok() && !aborted) {
      if (absl::IsCancelled(polled)) {
        aborted = true;  // a signal while reconnecting
      } else {
        status = polled;
        report_.HardError(
            absl::StrCat("session during verify: ", polled.message()));
      }
    }
    if (options_.progress_seconds > 0 &&
        absl::Now() - last_progress >=
            absl::Seconds(options_.progress_seconds)) {
      last_progress = absl::Now();
      LogLine(absl::StrFormat("verify: %d/%d blocks, lost=%d corrupt=%d",
                              done_blocks_, total_blocks_,
                              report_.lost_lbas.size(),
                              report_.corrupt_lbas.size()));
    }
  }
  if (aborted || failed_blocks_ > 0) {
    report_.verify_incomplete = true;
    report_.AddProblem(absl::StrCat("verification incomplete: ", failed_blocks_,
                                    " of ", total_blocks_,
                                    " blocks not verified"));
  }
  LogLine(absl::StrFormat(
      "verify done in %.1fs: %d blocks checked, %d not checked, lost=%d "
      "corrupt=%d",
      absl::ToDoubleSeconds(absl::Now() - start), done_blocks_, failed_blocks_,
      report_.lost_lbas.size(), report_.corrupt_lbas.size()));
  if (aborted) return absl::CancelledError("verify aborted");
  return status;
}

void Verifier::Issue(Extent e) {
  ++in_flight_;
  ++e.attempts;
  if (e.first_issued == absl::InfinitePast()) e.first_issued = absl::Now();
  session_.Read(e.lba, e.blocks,
                [this, e](IoResult r) { OnDone(e, std::move(r)); });
}

void Verifier::OnDone(Extent e, IoResult result) {
  --in_flight_;
  const std::string what =
      absl::StrCat("verify read lba=", e.lba, " blocks=", e.blocks, ": ");
  const bool giving_up = session_.dead();
  switch (result.outcome) {
    case Outcome::kGood: {
      const uint32_t bs = ledger_.block_size();
      for (uint32_t i = 0; i < e.blocks; ++i) {
        const uint64_t lba = e.lba + i;
        const Judgement j = ledger_.Judge(
            lba, absl::MakeConstSpan(
                     result.data.data() + static_cast<size_t>(i) * bs, bs));
        ++report_.verified_blocks;
        ++done_blocks_;
        if (j.verdict == Verdict::kLost) {
          report_.Lost(lba, j.reason);
        } else if (j.verdict == Verdict::kCorrupt) {
          report_.Corrupt(lba, j.reason);
        }
      }
      return;
    }
    case Outcome::kRetry:
      ++report_.retries;
      if (!giving_up && absl::Now() - e.first_issued <
                            absl::Seconds(options_.reconnect_timeout_seconds)) {
        retries_.emplace_back(
            absl::Now() + std::min(absl::Milliseconds(10) *
                                       (1 << std::min(e.attempts, 7)),
                                   absl::Seconds(1)),
            e);
        return;
      }
      report_.HardError(absl::StrCat(what, "still ", result.description,
                                     " after ", e.attempts, " attempts"));
      failed_blocks_ += e.blocks;
      return;
    case Outcome::kHardError:
      report_.HardError(absl::StrCat(what, result.description));
      failed_blocks_ += e.blocks;
      return;
    case Outcome::kConnectionLost:
      // Read it again on the next connection.
      if (giving_up) {
        failed_blocks_ += e.blocks;
      } else {
        todo_.push_front(e);
      }
      return;
  }
}

}  // namespace verifyload
