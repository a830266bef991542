// How verifyload treats the answer to a command: done, retry as a new
// command, a hard error to report, or a lost connection (outcome unknown).
#ifndef TOOLS_VERIFYLOAD_SCSI_OUTCOME_H_
#define TOOLS_VERIFYLOAD_SCSI_OUTCOME_H_

#include <string>

namespace verifyload {

enum class Outcome {
  kGood,
  // NOT READY 02/04/xx (becoming ready, ALUA transition, unavailable...),
  // UNIT ATTENTION 06/xx/xx, BUSY, TASK SET FULL: the command did not run;
  // issue it again.
  kRetry,
  // Any other status or sense (05/21/00 LBA out of range, MEDIUM ERROR,
  // RESERVATION CONFLICT, ...).
  kHardError,
  // libiscsi gave up on the command (connection lost, cancelled, timed
  // out): the target may or may not have executed it.
  kConnectionLost,
};

struct Classified {
  Outcome outcome = Outcome::kHardError;
  std::string description;  // e.g. "CHECK CONDITION NOT READY 04/0a"
};

// status: the status libiscsi passed to the command callback (SCSI status or
// SCSI_STATUS_CANCELLED/ERROR/TIMEOUT); sense_key and asc_ascq
// ((ASC << 8) | ASCQ) from the task's parsed sense when status is CHECK
// CONDITION.
Classified ClassifyCompletion(int status, int sense_key, int asc_ascq);

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_SCSI_OUTCOME_H_
