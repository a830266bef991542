#include "target/iscsi/negotiation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace iscsi {
namespace {

constexpr char kReject[] = "Reject";
constexpr char kIrrelevant[] = "Irrelevant";
constexpr char kNotUnderstood[] = "NotUnderstood";

std::optional<bool> ParseBool(const std::string& v) {
  if (v == "Yes") return true;
  if (v == "No") return false;
  return std::nullopt;
}

const char* BoolName(bool b) { return b ? "Yes" : "No"; }

std::optional<DigestType> ParseDigest(const std::string& v) {
  if (v == "None") return DigestType::kNone;
  if (v == "CRC32C") return DigestType::kCrc32c;
  return std::nullopt;
}

// Keys that carry data-transfer semantics and do not apply to discovery.
bool IsNormalSessionOnly(const std::string& key) {
  return key == "MaxConnections" || key == "InitialR2T" || key == "ImmediateData" ||
         key == "MaxBurstLength" || key == "FirstBurstLength" ||
         key == "MaxOutstandingR2T" || key == "DataPDUInOrder" ||
         key == "DataSequenceInOrder";
}

}  // namespace

const char* DigestName(DigestType d) { return d == DigestType::kCrc32c ? "CRC32C" : "None"; }

Negotiator::Negotiator(const NegotiationOptions& options, bool discovery_session)
    : options_(options), discovery_(discovery_session) {
  params_.target_max_recv_data_segment_length = options_.max_recv_data_segment_length;
}

std::string Negotiator::AnswerKey(const std::string& key, const std::string& value) {
  auto numeric = [&](uint64_t lo, uint64_t hi) -> std::optional<uint64_t> {
    auto n = ParseNumber(value);
    if (!n || *n < lo || *n > hi) return std::nullopt;
    return n;
  };
  if (key == "HeaderDigest" || key == "DataDigest") {
    const auto& allowed =
        key == "HeaderDigest" ? options_.header_digests : options_.data_digests;
    for (const auto& v : SplitListValue(value)) {
      auto d = ParseDigest(v);
      if (d && std::find(allowed.begin(), allowed.end(), *d) != allowed.end()) {
        (key == "HeaderDigest" ? params_.header_digest : params_.data_digest) = *d;
        return DigestName(*d);
      }
    }
    return kReject;
  }
  if (discovery_ && IsNormalSessionOnly(key)) return kIrrelevant;
  if (key == "MaxConnections") {
    auto n = numeric(1, 65535);
    if (!n) return kReject;
    params_.max_connections = std::min<uint32_t>(*n, options_.max_connections);
    return absl::StrCat(params_.max_connections);
  }
  if (key == "InitialR2T") {  // OR
    auto b = ParseBool(value);
    if (!b) return kReject;
    params_.initial_r2t = *b || options_.initial_r2t;
    return BoolName(params_.initial_r2t);
  }
  if (key == "ImmediateData") {  // AND
    auto b = ParseBool(value);
    if (!b) return kReject;
    params_.immediate_data = *b && options_.immediate_data;
    return BoolName(params_.immediate_data);
  }
  if (key == "DataPDUInOrder" || key == "DataSequenceInOrder") {  // OR
    auto b = ParseBool(value);
    if (!b) return kReject;
    bool& field = key == "DataPDUInOrder" ? params_.data_pdu_in_order
                                          : params_.data_sequence_in_order;
    field = *b || (key == "DataPDUInOrder" ? options_.data_pdu_in_order
                                           : options_.data_sequence_in_order);
    return BoolName(field);
  }
  if (key == "MaxRecvDataSegmentLength") {  // declarative
    auto n = numeric(512, kMaxDataSegmentLength);
    if (!n) {
      protocol_error_ = true;
      protocol_error_message_ = absl::StrCat("bad MaxRecvDataSegmentLength=", value);
      return kReject;
    }
    params_.initiator_max_recv_data_segment_length = static_cast<uint32_t>(*n);
    return "";  // declarations get no answer; ours is added separately
  }
  if (key == "MaxBurstLength") {
    auto n = numeric(512, kMaxDataSegmentLength);
    if (!n) return kReject;
    params_.max_burst_length = std::min<uint32_t>(*n, options_.max_burst_length);
    params_.first_burst_length =
        std::min(params_.first_burst_length, params_.max_burst_length);
    return absl::StrCat(params_.max_burst_length);
  }
  if (key == "FirstBurstLength") {
    auto n = numeric(512, kMaxDataSegmentLength);
    if (!n) return kReject;
    params_.first_burst_length = std::min<uint32_t>(
        {static_cast<uint32_t>(*n), options_.first_burst_length,
         params_.max_burst_length});
    return absl::StrCat(params_.first_burst_length);
  }
  if (key == "DefaultTime2Wait") {  // max
    auto n = numeric(0, 3600);
    if (!n) return kReject;
    params_.default_time2wait = std::max<uint32_t>(*n, options_.default_time2wait);
    return absl::StrCat(params_.default_time2wait);
  }
  if (key == "DefaultTime2Retain") {  // min
    auto n = numeric(0, 3600);
    if (!n) return kReject;
    params_.default_time2retain = std::min<uint32_t>(*n, options_.default_time2retain);
    return absl::StrCat(params_.default_time2retain);
  }
  if (key == "MaxOutstandingR2T") {
    auto n = numeric(1, 65535);
    if (!n) return kReject;
    params_.max_outstanding_r2t = std::min<uint32_t>(*n, options_.max_outstanding_r2t);
    return absl::StrCat(params_.max_outstanding_r2t);
  }
  if (key == "ErrorRecoveryLevel") {
    auto n = numeric(0, 2);
    if (!n) return kReject;
    params_.error_recovery_level =
        std::min<uint32_t>(*n, options_.error_recovery_level);
    return absl::StrCat(params_.error_recovery_level);
  }
  // RFC 3720 markers, removed by RFC 7143: old initiators still offer them.
  if (key == "IFMarker" || key == "OFMarker") {  // AND
    return ParseBool(value) ? "No" : kReject;
  }
  if (key == "IFMarkInt" || key == "OFMarkInt") return kIrrelevant;
  if (key == "iSCSIProtocolLevel") {  // RFC 7144: min; we implement RFC 7143 (1)
    auto n = numeric(0, 31);
    if (!n) return kReject;
    return absl::StrCat(std::min<uint64_t>(*n, 1));
  }
  return kNotUnderstood;
}

absl::Status Negotiator::Negotiate(const KeyValueList& offered, KeyValueList* answers) {
  // MaxBurstLength first so FirstBurstLength is bounded by the result.
  std::vector<const KeyValue*> order;
  for (const auto& kv : offered) {
    if (kv.key == "MaxBurstLength") order.push_back(&kv);
  }
  for (const auto& kv : offered) {
    if (kv.key != "MaxBurstLength") order.push_back(&kv);
  }
  KeyValueList pending;
  for (const KeyValue* kv : order) {
    if (!seen_.insert(kv->key).second) {
      return absl::InvalidArgumentError(absl::StrCat("key negotiated twice: ", kv->key));
    }
    std::string answer = AnswerKey(kv->key, kv->value);
    if (protocol_error_) return absl::InvalidArgumentError(protocol_error_message_);
    if (!answer.empty()) pending.push_back({kv->key, std::move(answer)});
  }
  // Answer in the initiator's order (easier to read in traces).
  for (const auto& kv : offered) {
    for (auto& p : pending) {
      if (p.key == kv.key && !p.value.empty()) {
        answers->push_back(p);
        p.value.clear();
      }
    }
  }
  return absl::OkStatus();
}

void Negotiator::AddDeclarations(KeyValueList* answers) {
  if (!declared_recv_length_) {
    answers->push_back({"MaxRecvDataSegmentLength",
                        absl::StrCat(options_.max_recv_data_segment_length)});
    declared_recv_length_ = true;
  }
}

}  // namespace iscsi
