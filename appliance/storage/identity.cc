#include "appliance/storage/identity.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace appliance::storage {
namespace {

// Random bytes consumed per identity: 13 for the NAA (100 bits used), 10 for
// the serial, 16 for the UUID.
constexpr size_t kNaaRandomBytes = 13;
constexpr size_t kSerialRandomBytes = 10;
constexpr size_t kUuidRandomBytes = 16;
constexpr size_t kRandomBytes =
    kNaaRandomBytes + kSerialRandomBytes + kUuidRandomBytes;
using RandomBytes = std::array<uint8_t, kRandomBytes>;

absl::StatusOr<blockstore::LunIdentity> FromBytes(const RandomBytes& bytes,
                                                  const IdentityOptions& options) {
  if (options.ieee_company_id > 0xFFFFFF) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IEEE company id 0x%x does not fit in 24 bits", options.ieee_company_id));
  }
  const uint8_t* r = bytes.data();
  // NAA 6: nibble 6, 24-bit company id, then 100 random bits: 36 of vendor
  // specific identifier and the 64-bit extension.
  std::array<uint8_t, 16> naa{};
  const uint32_t cid = options.ieee_company_id;
  naa[0] = static_cast<uint8_t>(0x60 | ((cid >> 20) & 0x0F));
  naa[1] = static_cast<uint8_t>(cid >> 12);
  naa[2] = static_cast<uint8_t>(cid >> 4);
  naa[3] = static_cast<uint8_t>(((cid & 0x0F) << 4) | (r[0] & 0x0F));
  for (size_t i = 4; i < 16; ++i) naa[i] = r[i - 3];  // r[1..12]
  r += kNaaRandomBytes;

  blockstore::LunIdentity identity;
  identity.naa_id = absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(naa.data()), naa.size()));
  identity.serial = absl::AsciiStrToUpper(absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(r), kSerialRandomBytes)));
  r += kSerialRandomBytes;

  std::array<uint8_t, 16> uuid;
  for (size_t i = 0; i < 16; ++i) uuid[i] = r[i];
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0F) | 0x40);  // version 4
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3F) | 0x80);  // RFC 4122 variant
  const std::string hex = absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(uuid.data()), uuid.size()));
  identity.uuid = absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-",
                               hex.substr(12, 4), "-", hex.substr(16, 4), "-",
                               hex.substr(20, 12));
  return identity;
}

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<blockstore::LunIdentity> MakeLunIdentity(
    const IdentityOptions& options) {
  RandomBytes bytes;
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return absl::InternalError(absl::StrCat(
        "RAND_bytes failed: ", ERR_error_string(ERR_get_error(), nullptr)));
  }
  return FromBytes(bytes, options);
}

absl::StatusOr<blockstore::LunIdentity> MakeLunIdentityFromSeed(
    absl::string_view seed, const IdentityOptions& options) {
  // SHA-256 over (counter byte, seed) blocks, concatenated until long enough.
  RandomBytes bytes;
  size_t filled = 0;
  for (uint8_t counter = 0; filled < bytes.size(); ++counter) {
    const std::string input = absl::StrCat(
        std::string(1, static_cast<char>(counter)), "lun-identity:", seed);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(input.data(), input.size(), digest, &digest_len,
                   EVP_sha256(), nullptr) != 1) {
      return absl::InternalError("EVP_Digest(SHA-256) failed");
    }
    for (unsigned int i = 0; i < digest_len && filled < bytes.size(); ++i) {
      bytes[filled++] = digest[i];
    }
  }
  return FromBytes(bytes, options);
}

absl::Status ValidateLunIdentity(const blockstore::LunIdentity& identity) {
  const std::string& naa = identity.naa_id;
  if (naa.size() != 32 || naa[0] != '6' || !IsLowerHex(naa)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NAA id '", naa, "' is not NAA 6 in 32 lowercase hex digits"));
  }
  const std::string& serial = identity.serial;
  if (serial.empty() || serial.size() > kMaxSerialLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "serial '", serial, "' must have 1 to ", kMaxSerialLength, " characters"));
  }
  for (char c : serial) {
    // Printable ASCII without spaces (VPD 0x80 pads with spaces on the right).
    if (c <= 0x20 || c >= 0x7F) {
      return absl::InvalidArgumentError(
          absl::StrCat("serial '", serial, "' is not printable ASCII"));
    }
  }
  const std::string& uuid = identity.uuid;
  bool uuid_ok = uuid.size() == 36;
  for (size_t i = 0; uuid_ok && i < uuid.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    uuid_ok = dash ? uuid[i] == '-' : IsLowerHex(uuid.substr(i, 1));
  }
  if (uuid_ok) {
    const char variant = uuid[19];
    uuid_ok = variant == '8' || variant == '9' || variant == 'a' || variant == 'b';
  }
  if (!uuid_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("UUID '", uuid, "' is not a canonical RFC 4122 UUID"));
  }
  return absl::OkStatus();
}

}  // namespace appliance::storage
