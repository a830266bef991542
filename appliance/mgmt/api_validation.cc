#include "appliance/mgmt/api_validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace appliance::mgmt {

uint32_t EffectiveBlockSize(const CreateLunRequest& request) {
  return request.block_size() == 0 ? kDefaultBlockSize : request.block_size();
}

absl::Status ValidateCreateLunRequest(const CreateLunRequest& request) {
  const std::string& name = request.name();
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  if (name.size() > kMaxLunNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("name is longer than ", kMaxLunNameLength, " characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          "name may only contain letters, digits, '.', '_' and '-'");
    }
  }
  const uint32_t block_size = EffectiveBlockSize(request);
  if (block_size != 512 && block_size != 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block size must be 512 or 4096, not ", request.block_size()));
  }
  if (request.size_bytes() == 0) {
    return absl::InvalidArgumentError("size must be greater than 0");
  }
  if (request.size_bytes() % block_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size ", request.size_bytes(),
                     " is not a multiple of the block size ", block_size));
  }
  if (request.has_id() && request.id() > kMaxLunId) {
    return absl::InvalidArgumentError(
        absl::StrCat("LUN id must be at most ", kMaxLunId));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParseLunId(absl::string_view text) {
  uint64_t id = 0;
  bool digits_only = !text.empty() && text.size() <= 20;
  for (char c : text) digits_only = digits_only && absl::ascii_isdigit(c);
  if (!digits_only || !absl::SimpleAtoi(text, &id) || id > kMaxLunId) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid LUN id \"", absl::CEscape(text), "\": expected 0..",
        kMaxLunId));
  }
  return id;
}

}  // namespace appliance::mgmt
