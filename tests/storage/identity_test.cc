// Tests of LUN identity generation: formats, uniqueness, determinism.
#include "appliance/storage/identity.h"

#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace appliance::storage {
namespace {

bool IsHex(const std::string& s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

void ExpectWellFormed(const blockstore::LunIdentity& id) {
  // NAA 6, IEEE company id 0x001405, 32 hex digits.
  ASSERT_EQ(id.naa_id.size(), 32u) << id.naa_id;
  EXPECT_EQ(id.naa_id[0], '6');
  EXPECT_EQ(id.naa_id.substr(0, 7), "6001405");
  EXPECT_TRUE(IsHex(id.naa_id)) << id.naa_id;
  // Serial: 1..20 printable ASCII characters.
  EXPECT_FALSE(id.serial.empty());
  EXPECT_LE(id.serial.size(), 20u);
  for (char c : id.serial) {
    EXPECT_TRUE(c > 0x20 && c < 0x7F) << id.serial;
  }
  // UUID: 8-4-4-4-12 lowercase hex, version 4, RFC 4122 variant.
  ASSERT_EQ(id.uuid.size(), 36u) << id.uuid;
  for (size_t i = 0; i < id.uuid.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      EXPECT_EQ(id.uuid[i], '-') << id.uuid;
    } else {
      EXPECT_TRUE(absl::ascii_isxdigit(static_cast<unsigned char>(id.uuid[i])) &&
                  !absl::ascii_isupper(static_cast<unsigned char>(id.uuid[i])))
          << id.uuid;
    }
  }
  EXPECT_EQ(id.uuid[14], '4') << id.uuid;
  EXPECT_NE(std::string("89ab").find(id.uuid[19]), std::string::npos) << id.uuid;
  EXPECT_TRUE(ValidateLunIdentity(id).ok()) << ValidateLunIdentity(id);
}

TEST(IdentityTest, RandomIdentityIsWellFormed) {
  absl::StatusOr<blockstore::LunIdentity> id = MakeLunIdentity();
  ASSERT_TRUE(id.ok()) << id.status();
  ExpectWellFormed(*id);
}

TEST(IdentityTest, ManyRandomIdentitiesAreUnique) {
  constexpr int kCount = 10000;
  std::set<std::string> naa, serial, uuid;
  for (int i = 0; i < kCount; ++i) {
    absl::StatusOr<blockstore::LunIdentity> id = MakeLunIdentity();
    ASSERT_TRUE(id.ok()) << id.status();
    if (i % 500 == 0) ExpectWellFormed(*id);
    naa.insert(id->naa_id);
    serial.insert(id->serial);
    uuid.insert(id->uuid);
  }
  EXPECT_EQ(naa.size(), static_cast<size_t>(kCount));
  EXPECT_EQ(serial.size(), static_cast<size_t>(kCount));
  EXPECT_EQ(uuid.size(), static_cast<size_t>(kCount));
}

TEST(IdentityTest, SeededIdentityIsDeterministicAndDistinct) {
  absl::StatusOr<blockstore::LunIdentity> a = MakeLunIdentityFromSeed("lun-1");
  absl::StatusOr<blockstore::LunIdentity> b = MakeLunIdentityFromSeed("lun-1");
  absl::StatusOr<blockstore::LunIdentity> c = MakeLunIdentityFromSeed("lun-2");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ExpectWellFormed(*a);
  ExpectWellFormed(*c);
  EXPECT_EQ(a->naa_id, b->naa_id);
  EXPECT_EQ(a->serial, b->serial);
  EXPECT_EQ(a->uuid, b->uuid);
  EXPECT_NE(a->naa_id, c->naa_id);
  EXPECT_NE(a->serial, c->serial);
  EXPECT_NE(a->uuid, c->uuid);

  std::set<std::string> naa;
  for (int i = 0; i < 1000; ++i) {
    naa.insert(MakeLunIdentityFromSeed(std::to_string(i))->naa_id);
  }
  EXPECT_EQ(naa.size(), 1000u);
}

TEST(IdentityTest, CompanyIdIsPlacedAfterTheNaaNibble) {
  IdentityOptions options;
  options.ieee_company_id = 0xABCDEF;
  absl::StatusOr<blockstore::LunIdentity> id =
      MakeLunIdentityFromSeed("x", options);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->naa_id.substr(0, 7), "6abcdef");
  EXPECT_TRUE(ValidateLunIdentity(*id).ok());

  options.ieee_company_id = 0x1000000;
  EXPECT_EQ(MakeLunIdentity(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IdentityTest, ValidateRejectsMalformedIdentities) {
  const blockstore::LunIdentity good = *MakeLunIdentityFromSeed("good");
  ASSERT_TRUE(ValidateLunIdentity(good).ok());

  blockstore::LunIdentity bad = good;
  bad.naa_id[0] = '5';
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.naa_id.pop_back();
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.naa_id[5] = 'g';
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.serial = std::string(21, 'A');
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.serial = "";
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.serial = "AB\x01";
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.uuid[8] = 'x';
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
  bad = good;
  bad.uuid = "not-a-uuid";
  EXPECT_FALSE(ValidateLunIdentity(bad).ok());
}

}  // namespace
}  // namespace appliance::storage
