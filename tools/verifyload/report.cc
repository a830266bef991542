#include "tools/verifyload/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace verifyload {
namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

void Report::Lost(uint64_t lba, const std::string& reason) {
  if (lost_lbas.insert(lba).second) AddProblem(absl::StrCat("LOST ", reason));
}

void Report::Corrupt(uint64_t lba, const std::string& reason) {
  if (corrupt_lbas.insert(lba).second) {
    AddProblem(absl::StrCat("CORRUPT ", reason));
  }
}

void Report::HardError(const std::string& reason) {
  ++hard_errors;
  AddProblem(absl::StrCat("HARD ERROR ", reason));
}

void Report::AddProblem(const std::string& reason) {
  if (first_problems.size() < kMaxProblems) first_problems.push_back(reason);
}

double Report::iops() const {
  if (load_seconds <= 0) return 0;
  return static_cast<double>(writes_acked + reads) / load_seconds;
}

std::string Report::ToJson() const {
  std::vector<std::string> problems;
  for (const std::string& p : first_problems) problems.push_back(JsonString(p));
  std::string json = absl::StrCat(
      "{\"writes_acked\":", writes_acked, ",\"reads\":", reads,
      ",\"reconnects\":", reconnects, ",\"retries\":", retries,
      ",\"hard_errors\":", hard_errors,
      ",\"unknown_outcome\":", unknown_outcome,
      ",\"verified_blocks\":", verified_blocks, ",\"lost\":", lost_lbas.size(),
      ",\"corrupt\":", corrupt_lbas.size(), ",\"first_problems\":[",
      absl::StrJoin(problems, ","), "]",
      ",\"iops\":", absl::StrFormat("%.1f", iops()));
  if (verify_incomplete) absl::StrAppend(&json, ",\"verify_incomplete\":true");
  if (!fatal.empty()) absl::StrAppend(&json, ",\"error\":", JsonString(fatal));
  return json + "}";
}

int Report::ExitCode() const {
  if (!fatal.empty()) return kExitUsage;
  if (!lost_lbas.empty() || !corrupt_lbas.empty() || hard_errors > 0 ||
      verify_incomplete) {
    return kExitFailed;
  }
  return kExitClean;
}

}  // namespace verifyload
