#include "tools/verifyload/load_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tools/verifyload/block_format.h"
#include "tools/verifyload/log.h"

namespace verifyload {
namespace {

std::string Describe(bool write, uint64_t lba, uint32_t blocks) {
  return absl::StrCat(write ? "write" : "read", " lba=", lba,
                      " blocks=", blocks);
}

// Backoff before re-issuing a command answered with a retryable status.
absl::Duration RetryDelay(int attempts) {
  return std::min(absl::Milliseconds(10) * (1 << std::min(attempts, 7)),
                  absl::Seconds(1));
}

}  // namespace

LoadRunner::LoadRunner(const Options& options, Session& session, Ledger& ledger,
                       Report& report, std::function<bool()> stop_requested)
    : options_(options),
      session_(session),
      ledger_(ledger),
      report_(report),
      stop_requested_(std::move(stop_requested)),
      rng_(options.seed),
      busy_(ledger.lba_count(), 0),
      listed_(ledger.lba_count(), 0) {}

absl::Status LoadRunner::Run() {
  start_ = absl::Now();
  last_progress_ = start_;
  const absl::Time end = start_ + absl::Seconds(options_.duration_seconds);
  absl::Time stopped_at = end;
  absl::Time drain_deadline = absl::InfiniteFuture();
  absl::Status status;
  LogLine(absl::StrFormat(
      "load: run %06x, LBAs 0..%d of %d-byte blocks, qd %d, %d%% writes, "
      "1..%d blocks per command, %.1fs, seed %d",
      ledger_.run_id(), ledger_.lba_count() - 1, ledger_.block_size(),
      options_.qd, options_.write_percent, options_.max_blocks,
      options_.duration_seconds, options_.seed));
  for (;;) {
    const absl::Time now = absl::Now();
    if (!stopping_ && (now >= end || stop_requested_() || !status.ok())) {
      stopping_ = true;
      stopped_at = std::min(now, end);
      drain_deadline = now + absl::Seconds(options_.drain_timeout_seconds);
      // Writes waiting for a retry already count as unknown-outcome.
      for (const auto& [due, op] : retries_) Release(op);
      retries_.clear();
      LogLine(absl::StrCat(now >= end ? "load time is up" : "stopping",
                           "; waiting for ", session_.in_flight(),
                           " commands in flight"));
    }
    if (!stopping_) {
      RetryDue(now);
      Fill();
    }
    if (stopping_ && session_.in_flight() == 0) break;
    if (stopping_ && now >= drain_deadline) {
      LogLine(absl::StrCat("drain timed out; abandoning ", session_.in_flight(),
                           " commands"));
      session_.Abandon();
      break;
    }
    absl::Duration wait = absl::Milliseconds(100);
    if (!stopping_) {
      wait = std::min(wait, end - now);
      for (const auto& [due, op] : retries_) wait = std::min(wait, due - now);
    }
    absl::Status polled = session_.Poll(std::max(wait, absl::ZeroDuration()));
    if (!polled.ok() && status.ok()) {
      status = polled;
      if (!absl::IsCancelled(polled)) {
        report_.HardError(absl::StrCat("session: ", polled.message()));
      }
    }
    Progress(absl::Now(), false);
  }
  report_.load_seconds = absl::ToDoubleSeconds(stopped_at - start_);
  Progress(absl::Now(), true);
  return status;
}

void LoadRunner::Fill() {
  if (session_.dead()) return;
  std::uniform_int_distribution<int> percent(0, 99);
  while (active_ < static_cast<size_t>(options_.qd)) {
    bool write = percent(rng_) < options_.write_percent;
    // Reads need something written to verify; until then, write.
    if (written_.empty() && options_.write_percent > 0) write = true;
    // All tries hit busy LBAs: wait for completions.
    if (!TryStart(write)) break;
  }
}

bool LoadRunner::TryStart(bool write) {
  const uint64_t region = ledger_.lba_count();
  const uint32_t blocks = static_cast<uint32_t>(
      std::min<uint64_t>(1 + rng_() % options_.max_blocks, region));
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint64_t lba;
    if (!write && !written_.empty()) {
      lba = std::min(written_[rng_() % written_.size()], region - blocks);
    } else {
      lba = rng_() % (region - blocks + 1);
    }
    bool free = true;
    for (uint32_t i = 0; i < blocks && free; ++i) free = busy_[lba + i] == 0;
    if (!free) continue;
    for (uint32_t i = 0; i < blocks; ++i) busy_[lba + i] = 1;
    ++active_;
    Op op;
    op.write = write;
    op.lba = lba;
    op.blocks = blocks;
    op.first_issued = absl::Now();
    Issue(op);
    return true;
  }
  return false;
}

void LoadRunner::Issue(Op op) {
  ++op.attempts;
  if (!op.write) {
    session_.Read(op.lba, op.blocks,
                  [this, op](IoResult r) { OnDone(op, std::move(r)); });
    return;
  }
  op.generation = MakeGeneration(ledger_.run_id(), ++sequence_);
  const uint32_t bs = ledger_.block_size();
  std::vector<uint8_t> data(static_cast<size_t>(op.blocks) * bs);
  for (uint32_t i = 0; i < op.blocks; ++i) {
    BlockHeader h;
    h.lba = op.lba + i;
    h.generation = op.generation;
    h.index = i;
    h.count = op.blocks;
    EncodeBlock(h,
                absl::MakeSpan(data.data() + static_cast<size_t>(i) * bs, bs));
    if (!listed_[h.lba]) {
      listed_[h.lba] = 1;
      written_.push_back(h.lba);
    }
  }
  session_.Write(op.lba, std::move(data),
                 [this, op](IoResult r) { OnDone(op, std::move(r)); });
}

void LoadRunner::OnDone(Op op, IoResult result) {
  const std::string what =
      absl::StrCat(Describe(op.write, op.lba, op.blocks), ": ");
  auto unknown = [&] {
    for (uint32_t i = 0; i < op.blocks; ++i) {
      ledger_.RecordUnknown(op.lba + i, op.generation);
    }
    ++report_.unknown_outcome;
  };
  switch (result.outcome) {
    case Outcome::kGood:
      if (op.write) {
        for (uint32_t i = 0; i < op.blocks; ++i) {
          ledger_.RecordAck(op.lba + i, op.generation);
        }
        ++report_.writes_acked;
      } else {
        ++report_.reads;
        const uint32_t bs = ledger_.block_size();
        for (uint32_t i = 0; i < op.blocks; ++i) {
          const uint64_t lba = op.lba + i;
          if (!ledger_.record(lba).written()) continue;
          ++report_.verified_blocks;
          const Judgement j = ledger_.Judge(
              lba, absl::MakeConstSpan(
                       result.data.data() + static_cast<size_t>(i) * bs, bs));
          if (j.verdict == Verdict::kLost) {
            report_.Lost(lba, absl::StrCat("(online read) ", j.reason));
          } else if (j.verdict == Verdict::kCorrupt) {
            report_.Corrupt(lba, absl::StrCat("(online read) ", j.reason));
          }
        }
      }
      Release(op);
      return;
    case Outcome::kRetry: {
      ++report_.retries;
      if (op.write) unknown();
      const absl::Time now = absl::Now();
      if (stopping_ || session_.dead()) {
        Release(op);
        return;
      }
      if (now - op.first_issued >
          absl::Seconds(options_.reconnect_timeout_seconds)) {
        report_.HardError(absl::StrCat(what, "still ", result.description,
                                       " after ", op.attempts, " attempts"));
        Release(op);
        return;
      }
      retries_.emplace_back(now + RetryDelay(op.attempts), op);
      return;
    }
    case Outcome::kHardError:
      if (op.write) unknown();
      report_.HardError(absl::StrCat(what, result.description));
      Release(op);
      return;
    case Outcome::kConnectionLost:
      if (op.write) unknown();
      Release(op);
      return;
  }
}

void LoadRunner::Release(const Op& op) {
  for (uint32_t i = 0; i < op.blocks; ++i) busy_[op.lba + i] = 0;
  --active_;
}

void LoadRunner::RetryDue(absl::Time now) {
  std::vector<Op> due;
  auto it = std::partition(retries_.begin(), retries_.end(),
                           [&](const auto& r) { return r.first > now; });
  for (auto i = it; i != retries_.end(); ++i) due.push_back(i->second);
  retries_.erase(it, retries_.end());
  for (Op& op : due) Issue(op);
}

void LoadRunner::Progress(absl::Time now, bool force) {
  if (options_.progress_seconds <= 0 && !force) return;
  if (!force &&
      now - last_progress_ < absl::Seconds(options_.progress_seconds)) {
    return;
  }
  last_progress_ = now;
  LogLine(absl::StrFormat(
      "load %.1fs: writes_acked=%d reads=%d in_flight=%d retries=%d "
      "reconnects=%d unknown_outcome=%d hard_errors=%d lost=%d corrupt=%d",
      absl::ToDoubleSeconds(now - start_), report_.writes_acked, report_.reads,
      session_.in_flight(), report_.retries, session_.reconnects(),
      report_.unknown_outcome, report_.hard_errors, report_.lost_lbas.size(),
      report_.corrupt_lbas.size()));
}

}  // namespace verifyload
