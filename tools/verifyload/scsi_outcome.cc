#include "tools/verifyload/scsi_outcome.h"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "absl/strings/str_format.h"

namespace verifyload {

Classified ClassifyCompletion(int status, int sense_key, int asc_ascq) {
  switch (status) {
    case SCSI_STATUS_GOOD:
      return {Outcome::kGood, "GOOD"};
    case SCSI_STATUS_BUSY:
      return {Outcome::kRetry, "BUSY"};
    case SCSI_STATUS_TASK_SET_FULL:
      return {Outcome::kRetry, "TASK SET FULL"};
    case SCSI_STATUS_CANCELLED:
      return {Outcome::kConnectionLost, "cancelled (connection lost)"};
    case SCSI_STATUS_ERROR:
      return {Outcome::kConnectionLost, "transport error"};
    case SCSI_STATUS_TIMEOUT:
      return {Outcome::kConnectionLost, "timed out"};
    case SCSI_STATUS_CHECK_CONDITION: {
      const int asc = (asc_ascq >> 8) & 0xff;
      const int ascq = asc_ascq & 0xff;
      const std::string what =
          absl::StrFormat("CHECK CONDITION %s %02x/%02x/%02x",
                          scsi_sense_key_str(sense_key), sense_key, asc, ascq);
      if ((sense_key == SCSI_SENSE_NOT_READY && asc == 0x04) ||
          sense_key == SCSI_SENSE_UNIT_ATTENTION) {
        return {Outcome::kRetry, what};
      }
      return {Outcome::kHardError, what};
    }
    case SCSI_STATUS_RESERVATION_CONFLICT:
      return {Outcome::kHardError, "RESERVATION CONFLICT"};
    default:
      return {Outcome::kHardError,
              absl::StrFormat("SCSI status 0x%02x", status)};
  }
}

}  // namespace verifyload
