#include "appliance/config/config_db.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace appliance::config {
namespace {

std::string FreshDir(const std::string& name) {
  std::string dir = std::string(getenv("TEST_TMPDIR")) + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

LunDefinition Lun(uint64_t id, const std::string& name) {
  LunDefinition lun;
  lun.set_id(id);
  lun.set_name(name);
  lun.set_size_bytes(1 << 20);
  lun.set_block_size(512);
  lun.set_owner_node("node-a");
  return lun;
}

TEST(ConfigDbTest, LunsSurviveReopen) {
  std::string dir = FreshDir("reopen");
  {
    auto db = ConfigDb::Open(dir);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->PutLun(Lun(7, "seven")).ok());
    ASSERT_TRUE((*db)->PutLun(Lun(2, "two")).ok());
    ASSERT_TRUE((*db)->PutLun(Lun(100, "hundred")).ok());
    NodeSettings settings;
    settings.set_node_name("node-a");
    settings.set_config_generation(5);
    ASSERT_TRUE((*db)->PutNodeSettings(settings).ok());
  }
  auto db = ConfigDb::Open(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  auto luns = (*db)->ListLuns();
  ASSERT_TRUE(luns.ok());
  ASSERT_EQ(luns->size(), 3u);
  // Ordered by id, numerically (not lexically: 100 after 7).
  EXPECT_EQ((*luns)[0].id(), 2u);
  EXPECT_EQ((*luns)[1].id(), 7u);
  EXPECT_EQ((*luns)[2].id(), 100u);
  auto seven = (*db)->GetLun(7);
  ASSERT_TRUE(seven.ok());
  EXPECT_EQ(seven->name(), "seven");
  auto settings = (*db)->GetNodeSettings();
  ASSERT_TRUE(settings.ok());
  ASSERT_TRUE(settings->has_value());
  EXPECT_EQ((*settings)->config_generation(), 5u);
}

TEST(ConfigDbTest, MissingRecords) {
  auto db = ConfigDb::Open(FreshDir("missing"));
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->GetLun(3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*db)->DeleteLun(3).code(), absl::StatusCode::kNotFound);
  auto settings = (*db)->GetNodeSettings();
  ASSERT_TRUE(settings.ok());
  EXPECT_FALSE(settings->has_value());
  auto luns = (*db)->ListLuns();
  ASSERT_TRUE(luns.ok());
  EXPECT_TRUE(luns->empty());
}

TEST(ConfigDbTest, DeleteIsPersistent) {
  std::string dir = FreshDir("delete");
  {
    auto db = ConfigDb::Open(dir);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->PutLun(Lun(1, "one")).ok());
    ASSERT_TRUE((*db)->PutLun(Lun(2, "two")).ok());
    ASSERT_TRUE((*db)->DeleteLun(1).ok());
  }
  auto db = ConfigDb::Open(dir);
  ASSERT_TRUE(db.ok());
  auto luns = (*db)->ListLuns();
  ASSERT_TRUE(luns.ok());
  ASSERT_EQ(luns->size(), 1u);
  EXPECT_EQ((*luns)[0].id(), 2u);
}

TEST(ConfigDbTest, PrStateKeepsHighestSequenceAcrossReopen) {
  std::string dir = FreshDir("pr");
  auto record = [](uint64_t seq, const std::string& state) {
    PrStateRecord r;
    r.set_sequence(seq);
    r.set_state(state);
    return r;
  };
  {
    auto db = ConfigDb::Open(dir);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->PutPrState("6001405aa", record(2, "two")).ok());
    // An older save that completes late must not overwrite the newer state.
    ASSERT_TRUE((*db)->PutPrState("6001405aa", record(1, "one")).ok());
    ASSERT_TRUE((*db)->PutPrState("6001405bb", record(1, "other")).ok());
    ASSERT_TRUE((*db)->DeletePrState("6001405bb").ok());
    ASSERT_TRUE((*db)->DeletePrState("never-stored").ok());
  }
  auto db = ConfigDb::Open(dir);
  ASSERT_TRUE(db.ok());
  auto pr = (*db)->GetPrState("6001405aa");
  ASSERT_TRUE(pr.ok());
  ASSERT_TRUE(pr->has_value());
  EXPECT_EQ((*pr)->state(), "two");
  EXPECT_EQ((*pr)->sequence(), 2u);
  auto gone = (*db)->GetPrState("6001405bb");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
}

TEST(ConfigDbTest, LifPlacementsSurviveReopenAndStayApartFromLuns) {
  std::string dir = FreshDir("placements");
  {
    auto db = ConfigDb::Open(dir);
    ASSERT_TRUE(db.ok()) << db.status();
    auto none = (*db)->GetLifPlacement("lif-a");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    ASSERT_TRUE((*db)->PutLun(Lun(1, "one")).ok());
    for (const char* name : {"lif-b", "lif-a"}) {
      LifPlacement p;
      p.set_lif_name(name);
      p.set_current_node("node-b");
      p.set_current_port("e0a");
      p.set_revision(7);
      ASSERT_TRUE((*db)->PutLifPlacement(p).ok());
    }
    LifPlacement moved;
    moved.set_lif_name("lif-a");
    moved.set_current_node("node-a");
    moved.set_revision(9);
    ASSERT_TRUE((*db)->PutLifPlacement(moved).ok());
    EXPECT_EQ((*db)->PutLifPlacement(LifPlacement()).code(),
              absl::StatusCode::kInvalidArgument);
  }
  auto db = ConfigDb::Open(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  auto all = (*db)->ListLifPlacements();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].lif_name(), "lif-a");
  EXPECT_EQ((*all)[0].current_node(), "node-a");
  EXPECT_EQ((*all)[0].revision(), 9u);
  EXPECT_EQ((*all)[1].lif_name(), "lif-b");
  auto one = (*db)->GetLifPlacement("lif-b");
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->current_port(), "e0a");
  auto luns = (*db)->ListLuns();
  ASSERT_TRUE(luns.ok());
  EXPECT_EQ(luns->size(), 1u);
}

TEST(ConfigDbTest, SecondOpenOfSameDirIsRefused) {
  std::string dir = FreshDir("locked");
  auto first = ConfigDb::Open(dir);
  ASSERT_TRUE(first.ok());
  auto second = ConfigDb::Open(dir);
  EXPECT_FALSE(second.ok());
}

TEST(ConfigDbTest, UnwritableDirectoryIsAnError) {
  auto db = ConfigDb::Open("/proc/no-such-dir/db");
  EXPECT_FALSE(db.ok());
}

}  // namespace
}  // namespace appliance::config
