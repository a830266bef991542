// CHAP authentication (RFC 1994 with RFC 7143 §12.1.3): the target side of the
// security negotiation stage. Only CHAP_A=5 (MD5) is supported. One-way CHAP
// proves the initiator knows its secret; mutual CHAP also proves ours.
#ifndef TARGET_ISCSI_CHAP_H_
#define TARGET_ISCSI_CHAP_H_

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "target/iscsi/text.h"

namespace iscsi {

struct ChapSecret {
  std::string user;    // CHAP_N
  std::string secret;  // at least 12 bytes recommended (RFC 7143 §12.1.3)
};

// Credentials for one initiator name.
struct ChapCredentials {
  // What the initiator must prove (its CHAP_N and secret).
  ChapSecret initiator;
  // When set, mutual CHAP is allowed: we answer the initiator's challenge as
  // this user with this secret. It must differ from initiator.secret.
  std::optional<ChapSecret> target;
};

// CHAP binary values: "0x" hex or "0b" base64 (RFC 7143 §6.1).
absl::StatusOr<std::vector<uint8_t>> DecodeChapBinary(std::string_view value);
std::string EncodeChapHex(absl::Span<const uint8_t> bytes);

// MD5(id || secret || challenge) (RFC 1994 §4.1).
std::array<uint8_t, 16> ChapMd5Response(uint8_t id, std::string_view secret,
                                        absl::Span<const uint8_t> challenge);

// Remembers challenges seen recently (ours and those initiators sent for mutual
// CHAP) so a reflected or replayed challenge is refused. Thread-safe, bounded.
class ChapChallengeCache {
 public:
  explicit ChapChallengeCache(size_t capacity = 4096) : capacity_(capacity) {}
  // Returns false if challenge was already recorded.
  bool Record(absl::Span<const uint8_t> challenge);

 private:
  absl::Mutex mu_;
  size_t capacity_;
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

// The target's half of one CHAP exchange.
//   1. initiator: CHAP_A=<list>     -> target: CHAP_A=5 CHAP_I=<id> CHAP_C=<challenge>
//   2. initiator: CHAP_N, CHAP_R [, CHAP_I, CHAP_C]
//                                   -> target: [CHAP_N, CHAP_R] (mutual only)
class ChapTargetExchange {
 public:
  // credentials may be null (unknown initiator): the exchange then runs to the
  // end and fails, so the initiator learns nothing about which names exist.
  ChapTargetExchange(const ChapCredentials* credentials, ChapChallengeCache* cache,
                     size_t challenge_length = 16);

  enum class Result { kContinue, kSucceeded, kFailed };
  // Consumes the CHAP_* keys of one login request and appends our answers.
  Result Step(const KeyValueList& keys, KeyValueList* answers);

  bool done() const { return state_ == State::kDone; }
  const std::string& failure_reason() const { return failure_; }

 private:
  enum class State { kAwaitAlgorithm, kAwaitResponse, kDone, kFailed };
  Result Fail(std::string why);

  const ChapCredentials* credentials_;
  ChapChallengeCache* cache_;
  size_t challenge_length_;
  State state_ = State::kAwaitAlgorithm;
  uint8_t id_ = 0;
  std::vector<uint8_t> challenge_;
  std::string failure_;
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_CHAP_H_
