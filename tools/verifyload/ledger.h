// The ledger of a verifyload run: for every LBA of the load region, the last
// acknowledged write generation and the generations whose outcome is unknown,
// and the judgement of a block read back against it.
//
// Writes in flight never overlap (the load generator keeps a set of busy
// LBAs), so the expected content of a block is exact:
//   - acknowledged generation A (0 when none) and unknown-outcome generations
//     U (issued after A, never acknowledged: connection lost, timeout,
//     retried, error);
//   - OK: the block shows A, or one of U, or (A == 0) anything that does not
//     claim to be from this run (zeros, older runs' blocks, other data);
//   - LOST: A != 0 and the block shows zeros, an older generation of this run
//     or another run's block for this LBA;
//   - CORRUPT: another LBA's block, a bad CRC or fill, data that is not a
//     verifyload block where A was acknowledged, or a generation of this run
//     that was never written to this LBA.
// The ledger is saved as text (atomically: temporary file, fsync, rename) so
// that a later `verifyload --mode=verify` can check it, for example after a
// failover.
#ifndef TOOLS_VERIFYLOAD_LEDGER_H_
#define TOOLS_VERIFYLOAD_LEDGER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/verifyload/report.h"

namespace verifyload {

struct LbaRecord {
  uint64_t acked = 0;             // last acknowledged generation, 0 = none
  std::vector<uint64_t> unknown;  // unknown-outcome generations after acked
  bool written() const { return acked != 0 || !unknown.empty(); }
};

enum class Verdict { kOk, kLost, kCorrupt };

struct Judgement {
  Verdict verdict = Verdict::kOk;
  std::string reason;  // why, for kLost and kCorrupt ("lba=... ...")
};

class Ledger {
 public:
  // run_id: the run whose generations are recorded (24 bits); block_size in
  // bytes; lba_count: the load region is LBAs [0, lba_count).
  Ledger(uint64_t run_id, uint32_t block_size, uint64_t lba_count);

  uint64_t run_id() const { return run_id_; }
  uint32_t block_size() const { return block_size_; }
  uint64_t lba_count() const { return records_.size(); }

  // A write of generation (of this run) to lba was acknowledged: it becomes
  // the expected content, and unknown outcomes issued before it are dropped.
  void RecordAck(uint64_t lba, uint64_t generation);
  // A write of generation to lba ended without an acknowledgement.
  void RecordUnknown(uint64_t lba, uint64_t generation);

  const LbaRecord& record(uint64_t lba) const { return records_[lba]; }
  // LBAs with a write recorded (acknowledged or unknown), ascending.
  std::vector<uint64_t> WrittenLbas() const;

  // Judges the content read from lba (one block) against the record.
  Judgement Judge(uint64_t lba, absl::Span<const uint8_t> block) const;

  // Writes the ledger and the load's report (counters, problems found online)
  // to path atomically.
  absl::Status Save(const std::string& path, const Report& report) const;
  // Reads a ledger written by Save; report (if not null) gets the saved
  // counters and problems.
  static absl::StatusOr<Ledger> Load(const std::string& path, Report* report);

 private:
  uint64_t run_id_;
  uint32_t block_size_;
  std::vector<LbaRecord> records_;
};

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_LEDGER_H_
