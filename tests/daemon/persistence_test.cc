// A real applianced, real libiscsi initiators: data written over iSCSI and
// persistent reservations made with APTPL survive a restart of the daemon;
// reservations made without APTPL do not (SPC-4 5.14.5).
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/harness/daemon_process.h"
#include "tests/harness/iscsi_client.h"

namespace {

using harness::Connect;
using harness::Initiator;
using harness::Pattern;
using harness::Task;

constexpr int kLun = 0;

int Write(iscsi_context* c, uint64_t lba, std::vector<uint8_t>& data) {
  return harness::Write16(c, kLun, lba, data);
}
int Register(iscsi_context* c, uint64_t key, bool aptpl) {
  return harness::PrRegister(c, kLun, key, aptpl);
}
int Reserve(iscsi_context* c, uint64_t key) {
  return harness::PrReserve(c, kLun, key,
                            SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE);
}
std::vector<uint64_t> ReadKeys(iscsi_context* c) {
  return harness::PrReadKeys(c, kLun);
}

class PersistenceTest : public ::testing::Test {
 protected:
  PersistenceTest()
      : daemon_({.binary = binary(),
                 .dir = std::string(getenv("TEST_TMPDIR")) + "/" +
                        ::testing::UnitTest::GetInstance()
                            ->current_test_info()
                            ->name(),
                 .extra = "seed_luns { id: 0 name: \"pr\" size_bytes: "
                          "16777216 }"}) {}
  static std::string binary() {
    const char* b = getenv("APPLIANCED");
    return b == nullptr ? "" : b;
  }
  harness::DaemonProcess daemon_;
};

TEST_F(PersistenceTest, DataAndAptplReservationSurviveRestart) {
  { absl::Status started = daemon_.Start(); ASSERT_TRUE(started.ok()) << started; }
  std::vector<uint8_t> data = Pattern(64 * 1024, 3);
  {
    Initiator a = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-a");
    Initiator b = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-b");
    ASSERT_TRUE(a && b);
    ASSERT_EQ(Write(a.get(), 100, data), SCSI_STATUS_GOOD);
    ASSERT_EQ(Register(a.get(), 0xabc, /*aptpl=*/true), SCSI_STATUS_GOOD);
    ASSERT_EQ(Reserve(a.get(), 0xabc), SCSI_STATUS_GOOD);
    std::vector<uint8_t> other = Pattern(512, 9);
    EXPECT_EQ(Write(b.get(), 0, other), SCSI_STATUS_RESERVATION_CONFLICT);
  }
  absl::Status stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped;
  { absl::Status started = daemon_.Start(); ASSERT_TRUE(started.ok()) << started; }

  {
    Initiator b = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-b");
    ASSERT_TRUE(b);
    EXPECT_EQ(ReadKeys(b.get()), std::vector<uint64_t>{0xabc});
    std::vector<uint8_t> other = Pattern(512, 9);
    EXPECT_EQ(Write(b.get(), 0, other), SCSI_STATUS_RESERVATION_CONFLICT);

    Initiator a = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-a");
    ASSERT_TRUE(a);
    Task t(
        iscsi_read16_sync(a.get(), kLun, 100, data.size(), 512, 0, 0, 0, 0, 0));
    ASSERT_TRUE(t);
    ASSERT_EQ(t->status, SCSI_STATUS_GOOD);
    ASSERT_EQ(static_cast<size_t>(t->datain.size), data.size());
    EXPECT_EQ(
        std::vector<uint8_t>(t->datain.data, t->datain.data + t->datain.size),
        data);
  }  // initiators log out while the target is up
  ASSERT_TRUE(daemon_.Stop().ok());
}

TEST_F(PersistenceTest, RegistrationWithoutAptplIsGoneAfterRestart) {
  { absl::Status started = daemon_.Start(); ASSERT_TRUE(started.ok()) << started; }
  {
    Initiator a = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-a");
    ASSERT_TRUE(a);
    ASSERT_EQ(Register(a.get(), 0x77, /*aptpl=*/false), SCSI_STATUS_GOOD);
    EXPECT_EQ(ReadKeys(a.get()), std::vector<uint64_t>{0x77});
  }
  ASSERT_TRUE(daemon_.Stop().ok());
  { absl::Status started = daemon_.Start(); ASSERT_TRUE(started.ok()) << started; }
  {
    Initiator a = Connect(daemon_.IscsiUrl(kLun), "iqn.2026-11.test:host-a");
    ASSERT_TRUE(a);
    EXPECT_TRUE(ReadKeys(a.get()).empty());
  }
  ASSERT_TRUE(daemon_.Stop().ok());
}

}  // namespace
