// Checks of REST API input that need no node state, shared by the REST server
// (which rejects a bad request before it reaches the backend) and by backends
// (which must validate fully themselves, see backend.h).
#ifndef APPLIANCE_MGMT_API_VALIDATION_H_
#define APPLIANCE_MGMT_API_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "appliance/config/bootstrap.h"
#include "appliance/mgmt/api.pb.h"

namespace appliance::mgmt {

inline constexpr uint32_t kDefaultBlockSize = 512;
inline constexpr uint64_t kMaxLunId = config::kMaxLunId;
inline constexpr size_t kMaxLunNameLength = config::kMaxLunNameLength;

// The block size a request asks for: block_size, or 512 when it is 0.
uint32_t EffectiveBlockSize(const CreateLunRequest& request);

// InvalidArgument, with a message fit for the API client, unless: name matches
// [A-Za-z0-9._-]{1,64}; block_size is 0 (512), 512 or 4096; size_bytes > 0 and
// a multiple of the block size; id, when present, is at most kMaxLunId.
absl::Status ValidateCreateLunRequest(const CreateLunRequest& request);

// A LUN id as it appears in a URL path: decimal digits only, at most kMaxLunId.
absl::StatusOr<uint64_t> ParseLunId(absl::string_view text);

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_API_VALIDATION_H_
