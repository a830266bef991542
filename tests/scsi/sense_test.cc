#include "target/scsi/sense.h"

#include <vector>

#include "gtest/gtest.h"

namespace scsi {
namespace {

TEST(SenseTest, FixedFormatInvalidFieldWithBitPointer) {
  const auto bytes = BuildSense(InvalidFieldInCdb(1, 7), SenseFormat::kFixed);
  const std::vector<uint8_t> expected = {0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0,
                                         0,    0, 0x24, 0, 0, 0xCF, 0x00, 0x01};
  EXPECT_EQ(bytes, expected);
}

TEST(SenseTest, FixedFormatParameterListPointerWithoutBit) {
  const auto bytes = BuildSense(InvalidFieldInParameterList(0x0102), SenseFormat::kFixed);
  EXPECT_EQ(bytes[15], 0x80);  // SKSV, C/D=0, BPV=0
  EXPECT_EQ(bytes[16], 0x01);
  EXPECT_EQ(bytes[17], 0x02);
  EXPECT_EQ(bytes[12], 0x26);
}

TEST(SenseTest, FixedFormatInformationSetsValid) {
  SenseData s;
  s.key = SenseKey::kMiscompare;
  s.code = asc::kMiscompareDuringVerifyOperation;
  s.information = 0x1234;
  const auto bytes = BuildSense(s, SenseFormat::kFixed);
  const std::vector<uint8_t> expected = {0xF0, 0, 0x0E, 0, 0, 0x12, 0x34, 0x0A, 0, 0,
                                         0,    0, 0x1D, 0, 0, 0,    0,    0};
  EXPECT_EQ(bytes, expected);
}

TEST(SenseTest, FixedFormatLargeInformationClearsValid) {
  SenseData s;
  s.key = SenseKey::kMediumError;
  s.code = asc::kUnrecoveredReadError;
  s.information = 0x100000000ull;
  const auto bytes = BuildSense(s, SenseFormat::kFixed);
  EXPECT_EQ(bytes[0], 0x70);
}

TEST(SenseTest, DescriptorFormat) {
  SenseData s = InvalidFieldInCdb(2, 3);
  s.information = 0x0102030405060708ull;
  const auto bytes = BuildSense(s, SenseFormat::kDescriptor);
  const std::vector<uint8_t> expected = {
      0x72, 0x05, 0x24, 0x00, 0, 0, 0, 20,
      // information descriptor
      0x00, 0x0A, 0x80, 0x00, 1, 2, 3, 4, 5, 6, 7, 8,
      // sense key specific descriptor
      0x02, 0x06, 0, 0, 0xCB, 0x00, 0x02, 0};
  EXPECT_EQ(bytes, expected);
}

TEST(SenseTest, ParseRoundTripsBothFormats) {
  SenseData s = InvalidFieldInParameterList(9, 0);
  s.information = 77;
  for (auto format : {SenseFormat::kFixed, SenseFormat::kDescriptor}) {
    auto parsed = ParseSense(BuildSense(s, format));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s) << parsed->ToString();
  }
  EXPECT_FALSE(ParseSense({}).ok());
  EXPECT_FALSE(ParseSense(std::vector<uint8_t>{0x55, 0, 0}).ok());
}

TEST(SenseTest, UnitAttentionHasNoFieldPointer) {
  auto parsed = ParseSense(BuildSense(UnitAttention(asc::kPowerOnResetOrBusDeviceResetOccurred),
                                      SenseFormat::kFixed));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->key, SenseKey::kUnitAttention);
  EXPECT_EQ(parsed->code, (Asc{0x29, 0x00}));
  EXPECT_FALSE(parsed->field_pointer.has_value());
}

}  // namespace
}  // namespace scsi
