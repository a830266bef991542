#include "appliance/mgmt/cli_util.h"

#include "gtest/gtest.h"

namespace appliance::mgmt {
namespace {

TEST(ParseSizeTest, AcceptsUnitsAndBytes) {
  EXPECT_EQ(*ParseSize("64M"), 64ull << 20);
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("512K"), 512ull << 10);
  EXPECT_EQ(*ParseSize("2t"), 2ull << 40);
  EXPECT_EQ(*ParseSize("64MiB"), 64ull << 20);
  EXPECT_EQ(*ParseSize("1gb"), 1ull << 30);
  EXPECT_EQ(*ParseSize("1048576"), 1048576ull);
  EXPECT_EQ(*ParseSize("100B"), 100ull);
}

TEST(ParseSizeTest, RejectsGarbage) {
  for (const char* text : {"", "M", "-1", "1.5G", "12X", "1 G", "100iB", "0x10",
                           "99999999999999999999", "16777216T"}) {
    EXPECT_FALSE(ParseSize(text).ok()) << text;
  }
}

TEST(FormatSizeTest, ShortestExactUnit) {
  EXPECT_EQ(FormatSize(64ull << 20), "64M");
  EXPECT_EQ(FormatSize(1536ull << 10), "1536K");
  EXPECT_EQ(FormatSize(1000), "1000");
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_EQ(*ParseSize(FormatSize(3ull << 30)), 3ull << 30);
}

TEST(ParseServerUrlTest, HostAndPort) {
  absl::StatusOr<ServerUrl> url = ParseServerUrl("https://127.0.0.2:8443");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "127.0.0.2");
  EXPECT_EQ(url->port, 8443);
  url = ParseServerUrl("https://node-a/");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->port, 443);
  url = ParseServerUrl("https://[::1]:9443");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 9443);
  for (const char* bad : {"http://h:1", "h:1", "https://", "https://h:", "https://h:0",
                          "https://h:70000", "https://h:1/api", "https://[::1"}) {
    EXPECT_FALSE(ParseServerUrl(bad).ok()) << bad;
  }
}

TEST(FormatTableTest, AlignsColumns) {
  EXPECT_EQ(FormatTable({"ID", "NAME"}, {{"0", "db1"}, {"12", "x"}}),
            "ID  NAME\n"
            "0   db1\n"
            "12  x\n");
}

}  // namespace
}  // namespace appliance::mgmt
