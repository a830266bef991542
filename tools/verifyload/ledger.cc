#include "tools/verifyload/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/verifyload/block_format.h"

namespace verifyload {
namespace {

constexpr char kFileMagic[] = "verifyload-ledger 1";

Judgement Ok() { return Judgement{}; }

Judgement Lost(std::string reason) {
  return Judgement{Verdict::kLost, std::move(reason)};
}

Judgement Corrupt(std::string reason) {
  return Judgement{Verdict::kCorrupt, std::move(reason)};
}

std::string Expected(const LbaRecord& r) {
  std::string s = r.acked == 0 ? "nothing acknowledged"
                               : absl::StrCat("acknowledged generation ",
                                              GenerationString(r.acked));
  if (!r.unknown.empty()) {
    absl::StrAppend(&s, ", ", r.unknown.size(), " unknown-outcome");
  }
  return s;
}

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

Ledger::Ledger(uint64_t run_id, uint32_t block_size, uint64_t lba_count)
    : run_id_(run_id & kRunIdMask),
      block_size_(block_size),
      records_(lba_count) {}

void Ledger::RecordAck(uint64_t lba, uint64_t generation) {
  LbaRecord& r = records_[lba];
  if (generation <= r.acked) return;  // writes to one LBA never overlap
  r.acked = generation;
  r.unknown.erase(std::remove_if(r.unknown.begin(), r.unknown.end(),
                                 [&](uint64_t g) { return g <= generation; }),
                  r.unknown.end());
}

void Ledger::RecordUnknown(uint64_t lba, uint64_t generation) {
  LbaRecord& r = records_[lba];
  if (generation <= r.acked) return;
  if (std::find(r.unknown.begin(), r.unknown.end(), generation) ==
      r.unknown.end()) {
    r.unknown.push_back(generation);
  }
}

std::vector<uint64_t> Ledger::WrittenLbas() const {
  std::vector<uint64_t> out;
  for (uint64_t lba = 0; lba < records_.size(); ++lba) {
    if (records_[lba].written()) out.push_back(lba);
  }
  return out;
}

Judgement Ledger::Judge(uint64_t lba, absl::Span<const uint8_t> block) const {
  const LbaRecord& r = records_[lba];
  if (!r.written()) return Ok();
  const DecodedBlock d = DecodeBlock(block);
  const bool ours = d.kind != BlockKind::kZero &&
                    d.kind != BlockKind::kForeign &&
                    RunIdOf(d.header.generation) == run_id_;
  const std::string where = absl::StrCat("lba=", lba, " (", Expected(r), "): ");

  if (r.acked == 0) {
    // Nothing was promised here: whatever was there before is fine, only a
    // block that claims to come from this run must be one of its writes.
    if (!ours) return Ok();
    if (d.kind != BlockKind::kValid) {
      return Corrupt(absl::StrCat(where, BlockKindName(d.kind)));
    }
    if (d.header.lba != lba) {
      return Corrupt(
          absl::StrCat(where, "holds the block of lba=", d.header.lba));
    }
    if (std::find(r.unknown.begin(), r.unknown.end(), d.header.generation) !=
        r.unknown.end()) {
      return Ok();
    }
    return Corrupt(absl::StrCat(where, "generation ",
                                GenerationString(d.header.generation),
                                " was never written here"));
  }

  switch (d.kind) {
    case BlockKind::kZero:
      return Lost(absl::StrCat(where, "reads zeros"));
    case BlockKind::kForeign:
    case BlockKind::kBadCrc:
    case BlockKind::kBadPayload:
      return Corrupt(absl::StrCat(where, BlockKindName(d.kind)));
    case BlockKind::kValid:
      break;
  }
  const uint64_t g = d.header.generation;
  if (d.header.lba != lba) {
    return Corrupt(absl::StrCat(where, "holds the block of lba=", d.header.lba,
                                " generation ", GenerationString(g)));
  }
  if (g == r.acked) return Ok();
  if (std::find(r.unknown.begin(), r.unknown.end(), g) != r.unknown.end()) {
    return Ok();
  }
  if (!ours) {
    return Lost(absl::StrCat(where, "holds generation ", GenerationString(g),
                             " of another run"));
  }
  if (g < r.acked) {
    return Lost(
        absl::StrCat(where, "holds older generation ", GenerationString(g)));
  }
  return Corrupt(absl::StrCat(where, "generation ", GenerationString(g),
                              " was never written here"));
}

absl::Status Ledger::Save(const std::string& path, const Report& report) const {
  std::string out =
      absl::StrCat(kFileMagic, "\nrun_id ", run_id_, "\nblock_size ",
                   block_size_, "\nlba_count ", records_.size(), "\n");
  absl::StrAppend(
      &out, "stat writes_acked ", report.writes_acked, "\n", "stat reads ",
      report.reads, "\n", "stat reconnects ", report.reconnects, "\n",
      "stat retries ", report.retries, "\n", "stat hard_errors ",
      report.hard_errors, "\n", "stat unknown_outcome ", report.unknown_outcome,
      "\n", "stat verified_blocks ", report.verified_blocks, "\n",
      "stat load_ms ", static_cast<uint64_t>(report.load_seconds * 1000), "\n");
  for (uint64_t lba : report.lost_lbas)
    absl::StrAppend(&out, "lost ", lba, "\n");
  for (uint64_t lba : report.corrupt_lbas) {
    absl::StrAppend(&out, "corrupt ", lba, "\n");
  }
  for (std::string p : report.first_problems) {
    std::replace(p.begin(), p.end(), '\n', ' ');
    absl::StrAppend(&out, "problem ", p, "\n");
  }
  uint64_t lines = 0;
  for (uint64_t lba = 0; lba < records_.size(); ++lba) {
    const LbaRecord& r = records_[lba];
    if (!r.written()) continue;
    absl::StrAppend(&out, "lba ", lba, " ", r.acked);
    for (uint64_t g : r.unknown) absl::StrAppend(&out, " ", g);
    out += "\n";
    ++lines;
  }
  absl::StrAppend(&out, "end ", lines, "\n");

  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", tmp));
  absl::Status written = WriteAll(fd, out);
  if (written.ok() && fsync(fd) != 0) written = ErrnoError("fsync");
  close(fd);
  if (!written.ok() || rename(tmp.c_str(), path.c_str()) != 0) {
    if (written.ok()) written = ErrnoError(absl::StrCat("rename to ", path));
    unlink(tmp.c_str());
    return written;
  }
  // Make the rename itself durable.
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, slash + 1);
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<Ledger> Ledger::Load(const std::string& path, Report* report) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  auto bad = [&](int line_no, const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ":", line_no, ": ", why));
  };
  std::string line;
  int line_no = 1;
  if (!std::getline(in, line) || line != kFileMagic) {
    return bad(line_no, "not a verifyload ledger");
  }
  uint64_t run_id = 0, block_size = 0, lba_count = 0;
  for (auto [key, value] :
       {std::pair<const char*, uint64_t*>{"run_id", &run_id},
        {"block_size", &block_size},
        {"lba_count", &lba_count}}) {
    ++line_no;
    if (!std::getline(in, line)) return bad(line_no, "truncated");
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() != 2 || f[0] != key || !absl::SimpleAtoi(f[1], value)) {
      return bad(line_no, absl::StrCat("expected ", key));
    }
  }
  if (block_size < kMinBlockSize || block_size > (1u << 20) || lba_count == 0 ||
      lba_count > (uint64_t{1} << 32)) {
    return bad(line_no, "implausible block_size or lba_count");
  }
  Ledger ledger(run_id, static_cast<uint32_t>(block_size), lba_count);
  Report saved;
  uint64_t lba_lines = 0;
  bool ended = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (ended) return bad(line_no, "data after end");
    if (absl::StartsWith(line, "problem ")) {
      saved.first_problems.push_back(line.substr(8));
      continue;
    }
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.empty()) return bad(line_no, "empty line");
    const std::string kind = f[0];
    if (kind == "stat") {
      uint64_t v = 0;
      if (f.size() != 3 || !absl::SimpleAtoi(f[2], &v)) {
        return bad(line_no, "bad stat line");
      }
      const std::string& name = f[1];
      if (name == "writes_acked") {
        saved.writes_acked = v;
      } else if (name == "reads") {
        saved.reads = v;
      } else if (name == "reconnects") {
        saved.reconnects = v;
      } else if (name == "retries") {
        saved.retries = v;
      } else if (name == "hard_errors") {
        saved.hard_errors = v;
      } else if (name == "unknown_outcome") {
        saved.unknown_outcome = v;
      } else if (name == "verified_blocks") {
        saved.verified_blocks = v;
      } else if (name == "load_ms") {
        saved.load_seconds = static_cast<double>(v) / 1000.0;
      }  // counters from a newer writer are ignored
      continue;
    }
    std::vector<uint64_t> n(f.size() - 1);
    for (size_t i = 1; i < f.size(); ++i) {
      if (!absl::SimpleAtoi(f[i], &n[i - 1])) return bad(line_no, "bad number");
    }
    if ((kind == "lost" || kind == "corrupt") && n.size() == 1) {
      (kind == "lost" ? saved.lost_lbas : saved.corrupt_lbas).insert(n[0]);
    } else if (kind == "lba" && n.size() >= 2) {
      const uint64_t lba = n[0];
      if (lba >= lba_count) return bad(line_no, "lba outside the region");
      LbaRecord& r = ledger.records_[lba];
      if (r.written()) return bad(line_no, "lba listed twice");
      r.acked = n[1];
      r.unknown.assign(n.begin() + 2, n.end());
      ++lba_lines;
    } else if (kind == "end" && n.size() == 1) {
      if (n[0] != lba_lines) return bad(line_no, "lba count mismatch");
      ended = true;
    } else {
      return bad(line_no, absl::StrCat("unexpected line: ", line));
    }
  }
  if (!ended) return bad(line_no, "truncated (no end line)");
  if (report != nullptr) *report = std::move(saved);
  return ledger;
}

}  // namespace verifyload
