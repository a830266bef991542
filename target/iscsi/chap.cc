#include "target/iscsi/chap.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace iscsi {

absl::StatusOr<std::vector<uint8_t>> DecodeChapBinary(std::string_view value) {
  if (value.size() < 3 || value[0] != '0') {
    return absl::InvalidArgumentError("CHAP binary value needs 0x or 0b prefix");
  }
  const char kind = absl::ascii_tolower(static_cast<unsigned char>(value[1]));
  std::string_view body = value.substr(2);
  std::string raw;
  if (kind == 'x') {
    std::string padded;
    if (body.size() % 2) padded = "0";
    padded.append(body);
    for (char c : padded) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError("bad hex digit in CHAP value");
      }
    }
    raw = absl::HexStringToBytes(padded);
  } else if (kind == 'b') {
    if (!absl::Base64Unescape(absl::string_view(body.data(), body.size()), &raw)) {
      return absl::InvalidArgumentError("bad base64 in CHAP value");
    }
  } else {
    return absl::InvalidArgumentError("CHAP binary value needs 0x or 0b prefix");
  }
  return std::vector<uint8_t>(raw.begin(), raw.end());
}

std::string EncodeChapHex(absl::Span<const uint8_t> bytes) {
  return "0x" + absl::BytesToHexString(absl::string_view(
                    reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::array<uint8_t, 16> ChapMd5Response(uint8_t id, std::string_view secret,
                                        absl::Span<const uint8_t> challenge) {
  std::array<uint8_t, 16> out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  if (ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_md5(), nullptr) == 1 &&
      EVP_DigestUpdate(ctx, &id, 1) == 1 &&
      EVP_DigestUpdate(ctx, secret.data(), secret.size()) == 1 &&
      EVP_DigestUpdate(ctx, challenge.data(), challenge.size()) == 1) {
    EVP_DigestFinal_ex(ctx, out.data(), &len);
  }
  EVP_MD_CTX_free(ctx);
  return out;
}

bool ChapChallengeCache::Record(absl::Span<const uint8_t> challenge) {
  std::string key(reinterpret_cast<const char*>(challenge.data()), challenge.size());
  absl::MutexLock lock(&mu_);
  if (!seen_.insert(key).second) return false;
  order_.push_back(std::move(key));
  if (order_.size() > capacity_) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

ChapTargetExchange::ChapTargetExchange(const ChapCredentials* credentials,
                                       ChapChallengeCache* cache,
                                       size_t challenge_length)
    : credentials_(credentials), cache_(cache), challenge_length_(challenge_length) {}

ChapTargetExchange::Result ChapTargetExchange::Fail(std::string why) {
  state_ = State::kFailed;
  failure_ = std::move(why);
  return Result::kFailed;
}

ChapTargetExchange::Result ChapTargetExchange::Step(const KeyValueList& keys,
                                                    KeyValueList* answers) {
  switch (state_) {
    case State::kAwaitAlgorithm: {
      auto algorithms = FindKey(keys, "CHAP_A");
      if (!algorithms) return Result::kContinue;  // nothing CHAP in this PDU yet
      bool md5 = false;
      for (const auto& a : SplitListValue(*algorithms)) md5 |= (a == "5");
      if (!md5) {
        answers->push_back({"CHAP_A", "Reject"});
        return Fail("initiator offers no CHAP_A we support (MD5=5)");
      }
      challenge_.resize(challenge_length_);
      do {
        if (RAND_bytes(challenge_.data(), static_cast<int>(challenge_.size())) != 1 ||
            RAND_bytes(&id_, 1) != 1) {
          return Fail("RAND_bytes failed");
        }
      } while (cache_ != nullptr && !cache_->Record(challenge_));
      answers->push_back({"CHAP_A", "5"});
      answers->push_back({"CHAP_I", std::to_string(id_)});
      answers->push_back({"CHAP_C", EncodeChapHex(challenge_)});
      state_ = State::kAwaitResponse;
      return Result::kContinue;
    }
    case State::kAwaitResponse: {
      auto name = FindKey(keys, "CHAP_N");
      auto response = FindKey(keys, "CHAP_R");
      if (!name || !response) return Fail("CHAP_N/CHAP_R missing");
      auto r = DecodeChapBinary(*response);
      if (!r.ok() || r->size() != 16) return Fail("malformed CHAP_R");
      if (credentials_ == nullptr) return Fail("no CHAP secret for this initiator");
      if (*name != credentials_->initiator.user) return Fail("unknown CHAP_N");
      const auto expected =
          ChapMd5Response(id_, credentials_->initiator.secret, challenge_);
      if (CRYPTO_memcmp(expected.data(), r->data(), 16) != 0) {
        return Fail("CHAP_R does not match");
      }
      auto their_id = FindKey(keys, "CHAP_I");
      auto their_challenge = FindKey(keys, "CHAP_C");
      if (!their_id && !their_challenge) {
        state_ = State::kDone;
        return Result::kSucceeded;
      }
      // Mutual CHAP.
      if (!their_id || !their_challenge) return Fail("CHAP_I without CHAP_C");
      if (!credentials_->target) return Fail("mutual CHAP not configured");
      auto id = ParseNumber(*their_id);
      if (!id || *id > 255) return Fail("bad CHAP_I");
      auto c = DecodeChapBinary(*their_challenge);
      if (!c.ok() || c->empty() || c->size() > 1024) return Fail("bad CHAP_C");
      if (*c == challenge_) return Fail("initiator reflected our challenge");
      if (cache_ != nullptr && !cache_->Record(*c)) {
        return Fail("initiator reused a CHAP challenge");
      }
      const auto ours = ChapMd5Response(static_cast<uint8_t>(*id),
                                        credentials_->target->secret, *c);
      answers->push_back({"CHAP_N", credentials_->target->user});
      answers->push_back({"CHAP_R", EncodeChapHex(ours)});
      state_ = State::kDone;
      return Result::kSucceeded;
    }
    case State::kDone:
      return Result::kSucceeded;
    case State::kFailed:
      return Result::kFailed;
  }
  return Result::kFailed;
}

}  // namespace iscsi
