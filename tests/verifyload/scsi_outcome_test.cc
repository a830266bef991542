// Which answers verifyload retries, reports, or treats as a lost connection.
#include "tools/verifyload/scsi_outcome.h"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "gtest/gtest.h"

namespace verifyload {
namespace {

Outcome Check(int key, int asc, int ascq) {
  return ClassifyCompletion(SCSI_STATUS_CHECK_CONDITION, key, (asc << 8) | ascq)
      .outcome;
}

TEST(ScsiOutcomeTest, Good) {
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_GOOD, 0, 0).outcome, Outcome::kGood);
}

TEST(ScsiOutcomeTest, TransientAnswersAreRetried) {
  EXPECT_EQ(Check(SCSI_SENSE_NOT_READY, 0x04, 0x0a), Outcome::kRetry);  // ALUA
  EXPECT_EQ(Check(SCSI_SENSE_NOT_READY, 0x04, 0x0c),
            Outcome::kRetry);  // unavail.
  EXPECT_EQ(Check(SCSI_SENSE_NOT_READY, 0x04, 0x01), Outcome::kRetry);
  EXPECT_EQ(Check(SCSI_SENSE_UNIT_ATTENTION, 0x29, 0x00), Outcome::kRetry);
  EXPECT_EQ(Check(SCSI_SENSE_UNIT_ATTENTION, 0x2a, 0x06), Outcome::kRetry);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_BUSY, 0, 0).outcome,
            Outcome::kRetry);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_TASK_SET_FULL, 0, 0).outcome,
            Outcome::kRetry);
}

TEST(ScsiOutcomeTest, OtherAnswersAreHardErrors) {
  EXPECT_EQ(Check(SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0x00), Outcome::kHardError);
  EXPECT_EQ(Check(SCSI_SENSE_MEDIUM_ERROR, 0x11, 0x00), Outcome::kHardError);
  EXPECT_EQ(Check(SCSI_SENSE_NOT_READY, 0x3a, 0x00), Outcome::kHardError);
  EXPECT_EQ(Check(SCSI_SENSE_HARDWARE_ERROR, 0x44, 0x00), Outcome::kHardError);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_RESERVATION_CONFLICT, 0, 0).outcome,
            Outcome::kHardError);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_TASK_ABORTED, 0, 0).outcome,
            Outcome::kHardError);
}

TEST(ScsiOutcomeTest, TransportFailuresMeanTheConnectionIsLost) {
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_CANCELLED, 0, 0).outcome,
            Outcome::kConnectionLost);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_ERROR, 0, 0).outcome,
            Outcome::kConnectionLost);
  EXPECT_EQ(ClassifyCompletion(SCSI_STATUS_TIMEOUT, 0, 0).outcome,
            Outcome::kConnectionLost);
}

TEST(ScsiOutcomeTest, DescriptionNamesTheSense) {
  Classified c = ClassifyCompletion(SCSI_STATUS_CHECK_CONDITION,
                                    SCSI_SENSE_ILLEGAL_REQUEST, 0x2100);
  EXPECT_NE(c.description.find("05/21/00"), std::string::npos) << c.description;
}

}  // namespace
}  // namespace verifyload
