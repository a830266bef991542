// The SCSI Command PDU's ATTR field (RFC 7143 §11.3.1.1) as a SAM task attribute.
#ifndef TARGET_ISCSI_TASK_ATTRIBUTE_H_
#define TARGET_ISCSI_TASK_ATTRIBUTE_H_

#include <cstdint>

#include "target/scsi/task.h"

namespace iscsi {

// ATTR: 0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA, 5-7 reserved.
// Untagged and reserved values are treated as simple (SAM-5: an untagged task
// is a simple task).
inline scsi::TaskAttribute TaskAttributeFromIscsi(uint8_t attr) {
  switch (attr & 0x7) {
    case 2:
      return scsi::TaskAttribute::kOrdered;
    case 3:
      return scsi::TaskAttribute::kHeadOfQueue;
    case 4:
      return scsi::TaskAttribute::kAca;
    default:
      return scsi::TaskAttribute::kSimple;
  }
}

}  // namespace iscsi

#endif  // TARGET_ISCSI_TASK_ATTRIBUTE_H_
