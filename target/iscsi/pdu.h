// iSCSI PDU codec (RFC 7143 §11): the 48-byte Basic Header Segment, typed views of
// every opcode, Additional Header Segments, padding and CRC32C digests, and an
// incremental reader that frames PDUs out of a TCP byte stream.
//
// Everything here is a pure function over bytes: a malformed PDU yields an
// absl::Status, never an exception or a crash. Lengths are checked against the
// negotiated limits before any buffer is allocated.
#ifndef TARGET_ISCSI_PDU_H_
#define TARGET_ISCSI_PDU_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace iscsi {

enum class Opcode : uint8_t {
  // Initiator opcodes.
  kNopOut = 0x00,
  kScsiCommand = 0x01,
  kTaskMgmtRequest = 0x02,
  kLoginRequest = 0x03,
  kTextRequest = 0x04,
  kDataOut = 0x05,
  kLogoutRequest = 0x06,
  kSnackRequest = 0x10,
  // Target opcodes.
  kNopIn = 0x20,
  kScsiResponse = 0x21,
  kTaskMgmtResponse = 0x22,
  kLoginResponse = 0x23,
  kTextResponse = 0x24,
  kDataIn = 0x25,
  kLogoutResponse = 0x26,
  kR2t = 0x31,
  kAsyncMessage = 0x32,
  kReject = 0x3f,
};

bool IsInitiatorOpcode(uint8_t opcode);
bool IsTargetOpcode(uint8_t opcode);

inline constexpr uint32_t kReservedTag = 0xffffffff;
inline constexpr size_t kBhsLength = 48;
inline constexpr size_t kDigestLength = 4;
// DataSegmentLength is a 24-bit field.
inline constexpr uint32_t kMaxDataSegmentLength = 0xffffff;

// The Basic Header Segment as raw network-order bytes, with accessors for the
// fields every opcode shares.
struct Bhs {
  std::array<uint8_t, kBhsLength> bytes{};

  uint8_t opcode() const { return bytes[0] & 0x3f; }
  bool immediate() const { return (bytes[0] & 0x40) != 0; }
  bool final_bit() const { return (bytes[1] & 0x80) != 0; }
  uint8_t total_ahs_words() const { return bytes[4]; }
  uint32_t data_segment_length() const {
    return (uint32_t{bytes[5]} << 16) | (uint32_t{bytes[6]} << 8) | bytes[7];
  }
  uint32_t itt() const { return Get32(16); }

  void set_data_segment_length(uint32_t len) {
    bytes[5] = static_cast<uint8_t>(len >> 16);
    bytes[6] = static_cast<uint8_t>(len >> 8);
    bytes[7] = static_cast<uint8_t>(len);
  }

  uint16_t Get16(size_t off) const {
    return static_cast<uint16_t>((bytes[off] << 8) | bytes[off + 1]);
  }
  uint32_t Get32(size_t off) const {
    return (uint32_t{bytes[off]} << 24) | (uint32_t{bytes[off + 1]} << 16) |
           (uint32_t{bytes[off + 2]} << 8) | bytes[off + 3];
  }
  uint64_t Get64(size_t off) const {
    return (uint64_t{Get32(off)} << 32) | Get32(off + 4);
  }
  void Put16(size_t off, uint16_t v) {
    bytes[off] = static_cast<uint8_t>(v >> 8);
    bytes[off + 1] = static_cast<uint8_t>(v);
  }
  void Put32(size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[off + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  }
  void Put64(size_t off, uint64_t v) {
    Put32(off, static_cast<uint32_t>(v >> 32));
    Put32(off + 4, static_cast<uint32_t>(v));
  }
};
static_assert(sizeof(Bhs) == 48, "the BHS is 48 bytes on the wire");

// A whole PDU: header, raw AHS bytes (a multiple of 4) and the data segment
// without padding.
struct Pdu {
  Bhs bhs;
  std::vector<uint8_t> ahs;
  std::vector<uint8_t> data;
  // Set by PduReader when data digests are on and the data digest did not match
  // (the header was intact, so the caller can answer with a Reject).
  bool data_digest_error = false;
};

// ---- CRC32C (iSCSI digests, RFC 7143 §13.1 / Appendix B.4) ----

// CRC32C of data as iSCSI transmits it (initial value ~0, final complement).
uint32_t Crc32c(absl::Span<const uint8_t> data);
// Continues a running CRC; start with kCrc32cInit and finish with ~crc.
uint32_t Crc32cUpdate(uint32_t crc, absl::Span<const uint8_t> data);
inline constexpr uint32_t kCrc32cInit = 0xffffffff;

inline uint32_t PaddingFor(uint32_t len) { return (4 - (len & 3)) & 3; }

// ---- Additional Header Segments (RFC 7143 §11.2.2) ----

enum class AhsType : uint8_t { kExtendedCdb = 1, kBidiReadLength = 2 };

struct ParsedAhs {
  // CDB bytes beyond the first 16 (from an extended-CDB AHS).
  std::vector<uint8_t> extended_cdb;
  std::optional<uint32_t> bidi_read_length;
};

absl::StatusOr<ParsedAhs> ParseAhs(absl::Span<const uint8_t> ahs);
// Builds an extended-CDB AHS for the bytes of the CDB beyond 16 (padded).
std::vector<uint8_t> BuildExtendedCdbAhs(absl::Span<const uint8_t> cdb_tail);
std::vector<uint8_t> BuildBidiReadLengthAhs(uint32_t length);

// ---- Serialization ----

// Appends pdu's wire form to out: BHS (with TotalAHSLength and
// DataSegmentLength filled in), AHS, header digest, data, padding, data digest.
// Fails if the AHS is not a multiple of 4 / too long or the data is too long.
absl::Status SerializePdu(const Pdu& pdu, bool header_digest, bool data_digest,
                          std::vector<uint8_t>* out);
// The same wire form in two parts around a data segment the caller keeps in
// place (so it can go to the socket without being copied): the header part
// (BHS with the lengths filled in, AHS, header digest) and the trailer part
// (padding, data digest over data and padding). SerializePdu is header, data,
// trailer.
absl::Status SerializePduHeader(const Bhs& bhs, absl::Span<const uint8_t> ahs,
                                size_t data_length, bool header_digest,
                                std::vector<uint8_t>* out);
void SerializePduTrailer(absl::Span<const uint8_t> data, bool data_digest,
                         std::vector<uint8_t>* out);
std::vector<uint8_t> SerializePduOrDie(const Pdu& pdu, bool header_digest,
                                       bool data_digest);

// ---- Typed opcode views ----
// Decode() checks the opcode and the fields the RFC fixes, and copies the header
// fields into the struct. Encode() builds the BHS (DataSegmentLength and
// TotalAHSLength are filled in by SerializePdu from the actual segments).

struct NopOut {
  bool immediate = false;
  uint64_t lun = 0;
  uint32_t itt = kReservedTag;
  uint32_t ttt = kReservedTag;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
};

struct ScsiCommand {
  bool immediate = false;
  bool final_bit = true;
  bool read = false;
  bool write = false;
  uint8_t attribute = 0;  // ATTR field (3 bits): see task_attribute.h
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t expected_data_transfer_length = 0;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
  std::array<uint8_t, 16> cdb{};
};

enum class TmfFunctionCode : uint8_t {
  kAbortTask = 1,
  kAbortTaskSet = 2,
  kClearAca = 3,
  kClearTaskSet = 4,
  kLogicalUnitReset = 5,
  kTargetWarmReset = 6,
  kTargetColdReset = 7,
  kTaskReassign = 8,
};

struct TaskMgmtRequest {
  bool immediate = false;
  uint8_t function = 0;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t referenced_task_tag = kReservedTag;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
  uint32_t ref_cmd_sn = 0;
  uint32_t exp_data_sn = 0;
};

enum class LoginStage : uint8_t {
  kSecurityNegotiation = 0,
  kOperationalNegotiation = 1,
  kFullFeature = 3,
};

struct LoginRequest {
  bool transit = false;
  bool continue_bit = false;
  uint8_t csg = 0;
  uint8_t nsg = 0;
  uint8_t version_max = 0;
  uint8_t version_min = 0;
  std::array<uint8_t, 6> isid{};
  uint16_t tsih = 0;
  uint32_t itt = 0;
  uint16_t cid = 0;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
};

struct TextRequest {
  bool immediate = false;
  bool final_bit = true;
  bool continue_bit = false;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = kReservedTag;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
};

struct DataOut {
  bool final_bit = false;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = kReservedTag;
  uint32_t exp_stat_sn = 0;
  uint32_t data_sn = 0;
  uint32_t buffer_offset = 0;
};

enum class LogoutReason : uint8_t {
  kCloseSession = 0,
  kCloseConnection = 1,
  kRemoveConnectionForRecovery = 2,
};

struct LogoutRequest {
  bool immediate = false;
  uint8_t reason = 0;
  uint32_t itt = 0;
  uint16_t cid = 0;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
};

struct SnackRequest {
  uint8_t type = 0;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = 0;
  uint32_t exp_stat_sn = 0;
  uint32_t beg_run = 0;
  uint32_t run_length = 0;
};

struct NopIn {
  uint64_t lun = 0;
  uint32_t itt = kReservedTag;
  uint32_t ttt = kReservedTag;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
};

struct ScsiResponse {
  bool bidi_overflow = false;   // o
  bool bidi_underflow = false;  // u
  bool overflow = false;        // O
  bool underflow = false;       // U
  uint8_t response = 0;         // 0x00 command completed at target
  uint8_t status = 0;
  uint32_t itt = 0;
  uint32_t snack_tag = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint32_t exp_data_sn = 0;
  uint32_t bidi_read_residual_count = 0;
  uint32_t residual_count = 0;
};

enum class TmfResponseCode : uint8_t {
  kComplete = 0,
  kTaskDoesNotExist = 1,
  kLunDoesNotExist = 2,
  kTaskStillAllegiant = 3,
  kAllegianceReassignmentNotSupported = 4,
  kNotSupported = 5,
  kAuthorizationFailed = 6,
  kRejected = 255,
};

struct TaskMgmtResponse {
  uint8_t response = 0;
  uint32_t itt = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
};

struct LoginResponse {
  bool transit = false;
  bool continue_bit = false;
  uint8_t csg = 0;
  uint8_t nsg = 0;
  uint8_t version_max = 0;
  uint8_t version_active = 0;
  std::array<uint8_t, 6> isid{};
  uint16_t tsih = 0;
  uint32_t itt = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint8_t status_class = 0;
  uint8_t status_detail = 0;
};

struct TextResponse {
  bool final_bit = true;
  bool continue_bit = false;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = kReservedTag;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
};

struct DataIn {
  bool final_bit = false;
  bool acknowledge = false;
  bool overflow = false;
  bool underflow = false;
  bool status_present = false;  // S
  uint8_t status = 0;
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = kReservedTag;
  uint32_t stat_sn = 0;  // meaningful only with S
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint32_t data_sn = 0;
  uint32_t buffer_offset = 0;
  uint32_t residual_count = 0;
};

enum class LogoutResponseCode : uint8_t {
  kSuccess = 0,
  kCidNotFound = 1,
  kRecoveryNotSupported = 2,
  kCleanupFailed = 3,
};

struct LogoutResponse {
  uint8_t response = 0;
  uint32_t itt = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint16_t time2wait = 0;
  uint16_t time2retain = 0;
};

struct R2t {
  uint64_t lun = 0;
  uint32_t itt = 0;
  uint32_t ttt = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint32_t r2t_sn = 0;
  uint32_t buffer_offset = 0;
  uint32_t desired_data_transfer_length = 0;
};

enum class AsyncEvent : uint8_t {
  kScsiAsyncEvent = 0,
  kRequestLogout = 1,
  kDropConnection = 2,
  kDropAllConnections = 3,
  kRequestNegotiation = 4,
  kVendorSpecific = 255,
};

struct AsyncMessage {
  uint64_t lun = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint8_t async_event = 0;
  uint8_t async_vcode = 0;
  uint16_t parameter1 = 0;
  uint16_t parameter2 = 0;
  uint16_t parameter3 = 0;
};

enum class RejectReason : uint8_t {
  kDataDigestError = 0x02,
  kSnackReject = 0x03,
  kProtocolError = 0x04,
  kCommandNotSupported = 0x05,
  kImmediateCommandReject = 0x06,
  kTaskInProgress = 0x07,
  kInvalidDataAck = 0x08,
  kInvalidPduField = 0x09,
  kLongOperationReject = 0x0a,
  kWaitingForLogout = 0x0c,
};

struct Reject {
  uint8_t reason = 0;
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
  uint32_t data_sn = 0;  // DataSN/R2TSN
};

#define ISCSI_DECLARE_CODEC(T)                          \
  absl::Status Decode(const Bhs& bhs, T* out);          \
  Bhs Encode(const T& in);

ISCSI_DECLARE_CODEC(NopOut)
ISCSI_DECLARE_CODEC(ScsiCommand)
ISCSI_DECLARE_CODEC(TaskMgmtRequest)
ISCSI_DECLARE_CODEC(LoginRequest)
ISCSI_DECLARE_CODEC(TextRequest)
ISCSI_DECLARE_CODEC(DataOut)
ISCSI_DECLARE_CODEC(LogoutRequest)
ISCSI_DECLARE_CODEC(SnackRequest)
ISCSI_DECLARE_CODEC(NopIn)
ISCSI_DECLARE_CODEC(ScsiResponse)
ISCSI_DECLARE_CODEC(TaskMgmtResponse)
ISCSI_DECLARE_CODEC(LoginResponse)
ISCSI_DECLARE_CODEC(TextResponse)
ISCSI_DECLARE_CODEC(DataIn)
ISCSI_DECLARE_CODEC(LogoutResponse)
ISCSI_DECLARE_CODEC(R2t)
ISCSI_DECLARE_CODEC(AsyncMessage)
ISCSI_DECLARE_CODEC(Reject)
#undef ISCSI_DECLARE_CODEC

// Decodes the 8-byte LUN field (SAM-5 §4.7: peripheral and flat addressing) to
// the LUN number; other addressing methods yield the raw first level.
uint64_t DecodeLun(uint64_t lun_field);
// Encodes a LUN number < 256 as peripheral, otherwise flat (up to 16383).
uint64_t EncodeLun(uint64_t lun);

// ---- Incremental reader ----

// Frames PDUs from a byte stream. A resumable state machine:
// BHS -> AHS -> header digest -> data -> padding -> data digest. Every length is
// checked against the limits before its buffer is allocated.
class PduReader {
 public:
  struct Limits {
    // Largest data segment accepted (our MaxRecvDataSegmentLength; 8192 during
    // login as RFC 7143 §13.12 fixes).
    uint32_t max_data_segment_length = 8192;
    bool header_digest = false;
    bool data_digest = false;
    // A target reads initiator opcodes; a test client reads target opcodes.
    bool from_initiator = true;
  };

  PduReader() = default;
  explicit PduReader(Limits limits) : limits_(limits) {}

  // Changes the limits; takes effect from the next PDU's header.
  void set_limits(const Limits& limits) { pending_limits_ = limits; }
  const Limits& limits() const { return limits_; }

  struct Result {
    size_t consumed = 0;
    // Set when a whole PDU has been framed (at most one per call).
    std::optional<Pdu> pdu;
  };
  // Consumes bytes from input until a PDU is complete or input runs out.
  // Errors are fatal for the stream (bad length, header digest mismatch, an
  // opcode a target never receives): the connection must be dropped.
  absl::StatusOr<Result> Feed(absl::Span<const uint8_t> input);

 private:
  enum class State { kBhs, kAhs, kHeaderDigest, kData, kDataDigest };
  absl::Status OnBhsComplete();
  absl::Status OnHeaderComplete();

  Limits limits_;
  std::optional<Limits> pending_limits_;
  State state_ = State::kBhs;
  size_t filled_ = 0;   // bytes of the current field received
  size_t needed_ = kBhsLength;
  Pdu current_;
  std::array<uint8_t, kDigestLength> digest_{};
  uint32_t data_wire_length_ = 0;  // data + padding
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_PDU_H_
