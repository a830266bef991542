// Sense data (SPC-4 4.5): the "why" of a CHECK CONDITION.
//
// SenseData is the decoded meaning (sense key, ASC/ASCQ, optional INFORMATION
// and sense-key-specific field pointer); BuildSense() encodes it in fixed
// (0x70) or descriptor (0x72) format, as the control mode page's D_SENSE bit
// or REQUEST SENSE's DESC bit asks. ParseSense() decodes either format (tests,
// and the virtual adapter when it needs to inspect a partner's answer).
#ifndef TARGET_SCSI_SENSE_H_
#define TARGET_SCSI_SENSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace scsi {

enum class SenseKey : uint8_t {
  kNoSense = 0x0,
  kRecoveredError = 0x1,
  kNotReady = 0x2,
  kMediumError = 0x3,
  kHardwareError = 0x4,
  kIllegalRequest = 0x5,
  kUnitAttention = 0x6,
  kDataProtect = 0x7,
  kBlankCheck = 0x8,
  kCopyAborted = 0xA,
  kAbortedCommand = 0xB,
  kVolumeOverflow = 0xD,
  kMiscompare = 0xE,
};

// An additional sense code and qualifier pair.
struct Asc {
  uint8_t asc = 0;
  uint8_t ascq = 0;
  constexpr bool operator==(const Asc& o) const {
    return asc == o.asc && ascq == o.ascq;
  }
  constexpr bool operator!=(const Asc& o) const { return !(*this == o); }
};

// The ASC/ASCQ values this target reports (SPC-4 Annex D).
namespace asc {
inline constexpr Asc kNoAdditionalSenseInformation{0x00, 0x00};
inline constexpr Asc kOperationInProgress{0x00, 0x16};
inline constexpr Asc kUnreachableCopyTarget{0x08, 0x04};
inline constexpr Asc kCopyTargetDeviceNotReachable{0x0D, 0x02};
inline constexpr Asc kLogicalUnitNotReadyCauseNotReportable{0x04, 0x00};
inline constexpr Asc kLogicalUnitNotReadyInitializingCommandRequired{0x04, 0x02};
inline constexpr Asc kLogicalUnitNotReadyManualInterventionRequired{0x04, 0x03};
inline constexpr Asc kLogicalUnitNotAccessibleAsymmetricAccessStateTransition{0x04, 0x0A};
inline constexpr Asc kLogicalUnitNotAccessibleTargetPortInStandbyState{0x04, 0x0B};
inline constexpr Asc kLogicalUnitNotAccessibleTargetPortInUnavailableState{0x04, 0x0C};
inline constexpr Asc kWriteError{0x0C, 0x00};
inline constexpr Asc kUnrecoveredReadError{0x11, 0x00};
inline constexpr Asc kMiscompareDuringVerifyOperation{0x1D, 0x00};
inline constexpr Asc kParameterListLengthError{0x1A, 0x00};
inline constexpr Asc kDefectListNotFound{0x1C, 0x00};
inline constexpr Asc kInvalidCommandOperationCode{0x20, 0x00};
inline constexpr Asc kLogicalBlockAddressOutOfRange{0x21, 0x00};
inline constexpr Asc kInvalidFieldInCdb{0x24, 0x00};
inline constexpr Asc kLogicalUnitNotSupported{0x25, 0x00};
inline constexpr Asc kInvalidFieldInParameterList{0x26, 0x00};
inline constexpr Asc kInvalidReleaseOfPersistentReservation{0x26, 0x04};
inline constexpr Asc kTooManyTargetDescriptors{0x26, 0x06};
inline constexpr Asc kUnsupportedTargetDescriptorTypeCode{0x26, 0x07};
inline constexpr Asc kTooManySegmentDescriptors{0x26, 0x08};
inline constexpr Asc kUnsupportedSegmentDescriptorTypeCode{0x26, 0x09};
inline constexpr Asc kInlineDataLengthExceeded{0x26, 0x0B};
inline constexpr Asc kWriteProtected{0x27, 0x00};
inline constexpr Asc kSpaceAllocationFailedWriteProtect{0x27, 0x07};
inline constexpr Asc kPowerOnResetOrBusDeviceResetOccurred{0x29, 0x00};
inline constexpr Asc kPowerOnOccurred{0x29, 0x01};
inline constexpr Asc kScsiBusResetOccurred{0x29, 0x02};
inline constexpr Asc kBusDeviceResetFunctionOccurred{0x29, 0x03};
inline constexpr Asc kItNexusLossOccurred{0x29, 0x07};
inline constexpr Asc kParametersChanged{0x2A, 0x00};
inline constexpr Asc kModeParametersChanged{0x2A, 0x01};
inline constexpr Asc kReservationsPreempted{0x2A, 0x03};
inline constexpr Asc kReservationsReleased{0x2A, 0x04};
inline constexpr Asc kRegistrationsPreempted{0x2A, 0x05};
inline constexpr Asc kAsymmetricAccessStateChanged{0x2A, 0x06};
inline constexpr Asc kImplicitAsymmetricAccessStateTransitionFailed{0x2A, 0x07};
inline constexpr Asc kCapacityDataHasChanged{0x2A, 0x09};
inline constexpr Asc kCommandsClearedByAnotherInitiator{0x2F, 0x00};
inline constexpr Asc kSavingParametersNotSupported{0x39, 0x00};
inline constexpr Asc kReportedLunsDataHasChanged{0x3F, 0x0E};
inline constexpr Asc kInternalTargetFailure{0x44, 0x00};
inline constexpr Asc kInvalidFieldInCommandInformationUnit{0x0E, 0x03};
inline constexpr Asc kMediumNotPresent{0x3A, 0x00};
inline constexpr Asc kInsufficientRegistrationResources{0x55, 0x04};
}  // namespace asc

// Sense-key-specific field pointer (SPC-4 4.5.2.4.2): which byte (and bit) of
// the CDB or of the parameter list was wrong.
struct FieldPointer {
  bool in_cdb = true;  // C/D: true: CDB; false: parameter data
  uint16_t byte = 0;
  std::optional<uint8_t> bit;  // 0..7 when BPV is set

  bool operator==(const FieldPointer& o) const {
    return in_cdb == o.in_cdb && byte == o.byte && bit == o.bit;
  }
};

struct SenseData {
  SenseKey key = SenseKey::kNoSense;
  Asc code;
  // INFORMATION field: e.g. the failing LBA, or the miscompare offset.
  std::optional<uint64_t> information;
  // Sense-key-specific field pointer (sets SKSV).
  std::optional<FieldPointer> field_pointer;

  bool operator==(const SenseData& o) const {
    return key == o.key && code == o.code && information == o.information &&
           field_pointer == o.field_pointer;
  }
  std::string ToString() const;
};

enum class SenseFormat : uint8_t { kFixed, kDescriptor };

// Encodes sense. Fixed format is 18 bytes; when information does not fit its
// 4-byte field, VALID is clear and the field holds the low 32 bits.
std::vector<uint8_t> BuildSense(const SenseData& sense, SenseFormat format);

// Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) format sense.
absl::StatusOr<SenseData> ParseSense(absl::Span<const uint8_t> bytes);

// Common sense values.
SenseData InvalidFieldInCdb(uint16_t byte, std::optional<uint8_t> bit = {});
SenseData InvalidFieldInParameterList(uint16_t byte,
                                      std::optional<uint8_t> bit = {});
SenseData IllegalRequest(Asc code);
SenseData LbaOutOfRange();
SenseData UnitAttention(Asc code);

}  // namespace scsi

#endif  // TARGET_SCSI_SENSE_H_
