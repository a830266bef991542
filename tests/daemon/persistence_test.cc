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

namespace {

struct ContextDeleter {
  void operator()(iscsi_context* c) const {
    iscsi_logout_sync(c);
    iscsi_destroy_context(c);
  }
};
using Initiator = std::unique_ptr<iscsi_context, ContextDeleter>;

struct TaskDeleter {
  void operator()(scsi_task* t) const { scsi_free_scsi_task(t); }
};
using Task = std::unique_ptr<scsi_task, TaskDeleter>;

constexpr int kLun = 0;

// Logs in as initiator_name and consumes the power-on unit attention.
Initiator Connect(const std::string& url, const std::string& initiator_name) {
  Initiator ctx(iscsi_create_context(initiator_name.c_str()));
  if (!ctx) return nullptr;
  iscsi_url* parsed = iscsi_parse_full_url(ctx.get(), url.c_str());
  if (parsed == nullptr) return nullptr;
  iscsi_set_targetname(ctx.get(), parsed->target);
  iscsi_set_session_type(ctx.get(), ISCSI_SESSION_NORMAL);
  int rc = iscsi_full_connect_sync(ctx.get(), parsed->portal, parsed->lun);
  iscsi_destroy_url(parsed);
  if (rc != 0) return nullptr;
  for (int i = 0; i < 5; ++i) {
    Task t(iscsi_testunitready_sync(ctx.get(), kLun));
    if (t && t->status == SCSI_STATUS_GOOD) break;
  }
  return ctx;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

int Write(iscsi_context* c, uint64_t lba, std::vector<uint8_t>& data) {
  Task t(iscsi_write16_sync(c, kLun, lba, data.data(), data.size(), 512, 0, 0,
                            0, 0, 0));
  return t ? t->status : -1;
}

int Register(iscsi_context* c, uint64_t key, bool aptpl) {
  scsi_persistent_reserve_out_basic params{};
  params.service_action_reservation_key = key;
  params.aptpl = aptpl ? 1 : 0;
  Task t(iscsi_persistent_reserve_out_sync(
      c, kLun, SCSI_PERSISTENT_RESERVE_REGISTER, 0,
      SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, &params));
  return t ? t->status : -1;
}

int Reserve(iscsi_context* c, uint64_t key) {
  scsi_persistent_reserve_out_basic params{};
  params.reservation_key = key;
  Task t(iscsi_persistent_reserve_out_sync(
      c, kLun, SCSI_PERSISTENT_RESERVE_RESERVE, 0,
      SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, &params));
  return t ? t->status : -1;
}

std::vector<uint64_t> ReadKeys(iscsi_context* c) {
  Task t(iscsi_persistent_reserve_in_sync(c, kLun,
                                          SCSI_PERSISTENT_RESERVE_READ_KEYS, 1024));
  if (!t || t->status != SCSI_STATUS_GOOD) return {0xdead};
  auto* keys = static_cast<scsi_persistent_reserve_in_read_keys*>(
      scsi_datain_unmarshall(t.get()));
  if (keys == nullptr) return {0xdead};
  return std::vector<uint64_t>(keys->keys, keys->keys + keys->num_keys);
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
