// Identity of a logical unit: its NAA designator, serial number and UUID.
//
// Made once when a LUN is created and then stored by the caller (the
// configuration database, replicated to the partner), never in the backing file:
// initiators recognise a LUN by these values across reboots, takeover and
// giveback, so they must never change for the life of the LUN.
//
// NAA: the IEEE Registered Extended format (NAA 6), 16 bytes written as 32
// lowercase hex digits:
//   4 bits   NAA = 6
//   24 bits  IEEE company id (kDefaultIeeeCompanyId unless told otherwise)
//   36 bits  vendor specific identifier    } random (or derived from a seed)
//   64 bits  vendor specific extension     }
// kDefaultIeeeCompanyId is 0x001405, the value Linux-IO (LIO) targets use; we have
// no OUI of our own, so it is a locally chosen placeholder. Pass a registered OUI
// in IdentityOptions once there is one. The 100 random bits make a collision
// between LUNs vanishingly unlikely; callers may still check against the LUNs
// they know.
//
// Serial: 20 uppercase hex digits (80 random bits), printable ASCII as VPD page
// 0x80 wants. UUID: RFC 4122 version 4 in canonical lowercase text form.
#ifndef APPLIANCE_STORAGE_IDENTITY_H_
#define APPLIANCE_STORAGE_IDENTITY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blockstore/block_store.h"

namespace appliance::storage {

inline constexpr uint32_t kDefaultIeeeCompanyId = 0x001405;
inline constexpr size_t kMaxSerialLength = 20;

struct IdentityOptions {
  // 24-bit IEEE company id (OUI) placed in the NAA designator.
  uint32_t ieee_company_id = kDefaultIeeeCompanyId;
};

// Makes a new identity from OpenSSL's RAND_bytes. Fails (kInternal) only if the
// random generator fails, or kInvalidArgument for a company id over 24 bits.
absl::StatusOr<blockstore::LunIdentity> MakeLunIdentity(
    const IdentityOptions& options = {});

// Deterministic variant for tests and reproducible set-ups: the same seed (and
// options) always gives the same identity; different seeds give different ones.
absl::StatusOr<blockstore::LunIdentity> MakeLunIdentityFromSeed(
    absl::string_view seed, const IdentityOptions& options = {});

// Checks the formats above (NAA 6 with 32 hex digits, a non-empty printable
// serial of at most 20 characters, a canonical RFC 4122 UUID): kInvalidArgument
// otherwise. For identities read back from configuration.
absl::Status ValidateLunIdentity(const blockstore::LunIdentity& identity);

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_IDENTITY_H_
