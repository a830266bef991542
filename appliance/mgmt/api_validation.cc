#include "appliance/mgmt/api_validation.h"

#include "appliance/config/bootstrap.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace appliance::mgmt {

uint32_t EffectiveBlockSize(const CreateLunRequest& request) {
  return request.block_size() == 0 ? kDefaultBlockSize : request.block_size();
}

absl::Status ValidateCreateLunRequest(const CreateLunRequest& request) {
  config::LunDefinition lun;
  lun.set_name(request.name());
  lun.set_size_bytes(request.size_bytes());
  lun.set_block_size(EffectiveBlockSize(request));
  lun.set_id(request.has_id() ? request.id() : 0);
  lun.set_physical_block_size(request.physical_block_size());
  lun.set_read_only(request.read_only());
  return config::ValidateLunDefinition(lun);
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
