// Residuals of a SCSI command (RFC 7143 §11.4.5.1 / §11.9.6): how the bytes a
// command called for compare with what the initiator said it would transfer
// (the Expected Data Transfer Length, or the bidirectional read length).
// Pure arithmetic, shared by the data-in and data-out directions.
#ifndef TARGET_ISCSI_RESIDUAL_H_
#define TARGET_ISCSI_RESIDUAL_H_

#include <cstdint>

namespace iscsi {

struct Residual {
  bool overflow = false;   // the command wanted more than expected: O (or o) bit
  bool underflow = false;  // fewer bytes moved than expected: U (or u) bit
  uint32_t count = 0;      // the Residual Count (0 when neither bit is set)

  bool operator==(const Residual& o) const {
    return overflow == o.overflow && underflow == o.underflow && count == o.count;
  }
};

// expected: the initiator's expected length for the direction. wanted: the bytes
// the command called for (CDB transfer length, or the allocation-limited length
// of the data it built). transferred: the bytes that really crossed the wire
// (never more than min(expected, wanted)).
//
// Overflow (wanted > expected) takes precedence: the count is wanted - expected,
// the bytes the initiator's buffer could not take. Otherwise a short transfer
// is underflow with count expected - transferred (this also covers a command
// that ended early with CHECK CONDITION).
inline Residual ComputeResidual(uint32_t expected, uint32_t wanted, uint32_t transferred) {
  Residual r;
  if (wanted > expected) {
    r.overflow = true;
    r.count = wanted - expected;
  } else if (transferred < expected) {
    r.underflow = true;
    r.count = expected - transferred;
  }
  return r;
}

}  // namespace iscsi

#endif  // TARGET_ISCSI_RESIDUAL_H_
