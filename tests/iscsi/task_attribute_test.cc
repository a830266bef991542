#include "target/iscsi/task_attribute.h"

#include "gtest/gtest.h"

namespace iscsi {
namespace {

// Regression: the ATTR value was cast to scsi::TaskAttribute, so every SIMPLE
// command (ATTR 1) became ORDERED and every ORDERED one HEAD OF QUEUE.
TEST(TaskAttributeTest, MapsRfc7143AttrToSam) {
  EXPECT_EQ(TaskAttributeFromIscsi(0), scsi::TaskAttribute::kSimple);  // untagged
  EXPECT_EQ(TaskAttributeFromIscsi(1), scsi::TaskAttribute::kSimple);
  EXPECT_EQ(TaskAttributeFromIscsi(2), scsi::TaskAttribute::kOrdered);
  EXPECT_EQ(TaskAttributeFromIscsi(3), scsi::TaskAttribute::kHeadOfQueue);
  EXPECT_EQ(TaskAttributeFromIscsi(4), scsi::TaskAttribute::kAca);
  for (uint8_t reserved = 5; reserved <= 7; ++reserved) {
    EXPECT_EQ(TaskAttributeFromIscsi(reserved), scsi::TaskAttribute::kSimple);
  }
}

}  // namespace
}  // namespace iscsi
