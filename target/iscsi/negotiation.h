// Operational key negotiation (RFC 7143 §6.2, §13) from the target's side: the
// initiator offers, we answer. Each key has one of the standard result
// functions: list (first offered value we support), numerical minimum or
// maximum, boolean AND / OR, or declarative (each side states its own value).
#ifndef TARGET_ISCSI_NEGOTIATION_H_
#define TARGET_ISCSI_NEGOTIATION_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "target/iscsi/pdu.h"
#include "target/iscsi/text.h"

namespace iscsi {

enum class DigestType : uint8_t { kNone, kCrc32c };

// What the target is willing to do. Defaults are RFC 7143's defaults except
// where noted; every value is what we answer with or the bound we apply.
struct NegotiationOptions {
  // Digests we accept, in no particular order (the initiator's order decides).
  std::vector<DigestType> header_digests = {DigestType::kCrc32c, DigestType::kNone};
  std::vector<DigestType> data_digests = {DigestType::kCrc32c, DigestType::kNone};
  // MaxConnections (min). Multi-connection sessions are not implemented yet: 1.
  uint32_t max_connections = 1;
  // InitialR2T (OR): No lets initiators send unsolicited data.
  bool initial_r2t = false;
  // ImmediateData (AND).
  bool immediate_data = true;
  // Our MaxRecvDataSegmentLength (declarative): the largest data segment we
  // accept in full feature phase. Default 256 KiB (RFC default is 8192).
  uint32_t max_recv_data_segment_length = 262144;
  // MaxBurstLength (min). Default 1 MiB (RFC default 262144).
  uint32_t max_burst_length = 1048576;
  // FirstBurstLength (min). RFC default 65536.
  uint32_t first_burst_length = 65536;
  // DefaultTime2Wait (max) and DefaultTime2Retain (min), seconds.
  uint32_t default_time2wait = 2;
  uint32_t default_time2retain = 0;  // ERL 0: nothing to retain
  // MaxOutstandingR2T (min). RFC default 1.
  uint32_t max_outstanding_r2t = 4;
  // DataPDUInOrder / DataSequenceInOrder (OR). We require in-order data.
  bool data_pdu_in_order = true;
  bool data_sequence_in_order = true;
  // ErrorRecoveryLevel (min). Only 0 is implemented.
  uint32_t error_recovery_level = 0;
};

// The negotiated operational parameters of a session/connection.
struct SessionParams {
  DigestType header_digest = DigestType::kNone;
  DigestType data_digest = DigestType::kNone;
  uint32_t max_connections = 1;
  bool initial_r2t = true;
  bool immediate_data = true;
  // What we accept (our declaration) and what we may send (the initiator's).
  uint32_t target_max_recv_data_segment_length = 8192;
  uint32_t initiator_max_recv_data_segment_length = 8192;
  uint32_t max_burst_length = 262144;
  uint32_t first_burst_length = 65536;
  uint32_t default_time2wait = 2;
  uint32_t default_time2retain = 20;
  uint32_t max_outstanding_r2t = 1;
  bool data_pdu_in_order = true;
  bool data_sequence_in_order = true;
  uint32_t error_recovery_level = 0;
};

// Negotiates the operational keys of one login. Keys the login layer owns
// (InitiatorName, TargetName, SessionType, AuthMethod, CHAP_*, aliases) must be
// taken out before calling Negotiate().
class Negotiator {
 public:
  Negotiator(const NegotiationOptions& options, bool discovery_session);

  // Answers every key in offered, appending to answers. Unknown keys get
  // NotUnderstood, bad values of negotiated keys get Reject, keys that do not
  // apply to a discovery session get Irrelevant. Returns InvalidArgument for a
  // protocol error that must fail the login (a key offered twice, a malformed
  // declarative value).
  absl::Status Negotiate(const KeyValueList& offered, KeyValueList* answers);

  // Our declarations for the login response that transits to full feature
  // phase (MaxRecvDataSegmentLength), each sent once.
  void AddDeclarations(KeyValueList* answers);

  const SessionParams& params() const { return params_; }

 private:
  std::string AnswerKey(const std::string& key, const std::string& value);

  NegotiationOptions options_;
  bool discovery_;
  SessionParams params_;
  std::set<std::string> seen_;
  bool declared_recv_length_ = false;
  bool protocol_error_ = false;
  std::string protocol_error_message_;
};

const char* DigestName(DigestType d);

}  // namespace iscsi

#endif  // TARGET_ISCSI_NEGOTIATION_H_
