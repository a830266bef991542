// Persistent reservations (and their interplay with SPC-2 reservations)
// between several I_T nexuses, through the engine.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/engine.h"
#include "target/scsi/persistent_reservations.h"
#include "tests/fakes/fault_injecting_block_store.h"
#include "tests/fakes/memory_block_store.h"
#include "tests/scsi/engine_harness.h"

namespace scsi {
namespace {

using fakes::MemoryBlockStore;
using testing::ExpectInvalidField;
using testing::Harness;
using testing::MakeNexus;

constexpr uint8_t kRegister = 0, kReserve = 1, kRelease = 2, kClear = 3, kPreempt = 4,
                  kPreemptAndAbort = 5, kRegisterAndIgnore = 6, kRegisterAndMove = 7;

// A PrPersistence backed by a map; saves complete immediately.
class MapPersistence : public PrPersistence {
 public:
  void Save(const std::string& key, uint64_t sequence, std::string state,
            SaveCallback done) override {
    ++saves;
    if (sequence > sequences[key]) {
      sequences[key] = sequence;
      states[key] = std::move(state);
    }
    std::move(done)(absl::OkStatus());
  }
  absl::StatusOr<std::string> Load(const std::string& key) override {
    auto it = states.find(key);
    if (it == states.end()) return absl::NotFoundError(key);
    return it->second;
  }
  std::map<std::string, std::string> states;
  std::map<std::string, uint64_t> sequences;
  int saves = 0;
};

class ReservationsTest : public ::testing::Test, public Harness {
 protected:
  void SetUp() override { MakeEngine(nullptr); }

  void MakeEngine(std::shared_ptr<PrPersistence> persistence) {
    memory_ = std::make_shared<MemoryBlockStore>(MemoryBlockStore::Options{});
    store_ = std::make_shared<fakes::FaultInjectingBlockStore>(memory_);
    EngineOptions options;
    options.pr_persistence = std::move(persistence);
    engine_ = std::move(*Engine::Create(options));
    ASSERT_TRUE(engine_->AddLogicalUnit(0, store_).ok());
    for (auto n : {a_, b_, c_}) ClearUas(*engine_, n);
  }

  static std::vector<uint8_t> ProutCdb(uint8_t sa, uint8_t type, uint32_t length) {
    std::vector<uint8_t> cdb = {0x5F, sa, type, 0, 0, 0, 0, 0, 0, 0};
    PutBe32(&cdb[5], length);
    return cdb;
  }
  TaskResponse Prout(std::shared_ptr<const ItNexus> n, uint8_t sa, uint8_t type, uint64_t key,
                     uint64_t sa_key, uint8_t flags = 0, std::vector<uint8_t> extra = {}) {
    std::vector<uint8_t> p(24, 0);
    PutBe64(&p[0], key);
    PutBe64(&p[8], sa_key);
    p[20] = flags;
    p.insert(p.end(), extra.begin(), extra.end());
    return Exec(*engine_, ProutCdb(sa, type, static_cast<uint32_t>(p.size())), p, n);
  }
  TaskResponse Prin(std::shared_ptr<const ItNexus> n, uint8_t sa, uint16_t alloc = 1024) {
    std::vector<uint8_t> cdb = {0x5E, sa, 0, 0, 0, 0, 0, 0, 0, 0};
    PutBe16(&cdb[7], alloc);
    return Exec(*engine_, cdb, {}, n, 0, alloc);
  }
  ScsiStatus ReadStatus(std::shared_ptr<const ItNexus> n) {
    return Exec(*engine_, Cdb10(0x28, 0, 1), {}, n).status;
  }
  ScsiStatus WriteStatus(std::shared_ptr<const ItNexus> n) {
    return Exec(*engine_, Cdb10(0x2A, 0, 1), std::vector<uint8_t>(512, 0), n).status;
  }
  static std::vector<uint8_t> IscsiTransportId(const std::string& name, bool with_isid) {
    std::vector<uint8_t> v = {static_cast<uint8_t>(with_isid ? 0x45 : 0x05), 0, 0, 0};
    std::vector<uint8_t> s(name.begin(), name.end());
    s.push_back(0);
    while (s.size() % 4) s.push_back(0);
    PutBe16(&v[2], static_cast<uint16_t>(s.size()));
    v.insert(v.end(), s.begin(), s.end());
    return v;
  }

  std::shared_ptr<const ItNexus> c_ = MakeNexus("iqn.1991-05.com.microsoft:host-c", "400001370000");
  std::shared_ptr<MemoryBlockStore> memory_;
  std::shared_ptr<fakes::FaultInjectingBlockStore> store_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ReservationsTest, RegisterReadKeysAndReservation) {
  auto r = Prin(a_, 0);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xAAAA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xBBBB));
  r = Prin(c_, 0);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0xAA,
                                             0xAA, 0, 0, 0, 0, 0, 0, 0xBB, 0xBB}));
  EXPECT_GOOD(Prout(a_, kReserve, 0x01, 0xAAAA, 0));
  r = Prin(c_, 1);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0xAA,
                                             0xAA, 0, 0, 0, 0, 0, 0x01, 0, 0}));
  // Truncated READ KEYS still reports the full additional length.
  r = Prin(c_, 0, 12);
  EXPECT_EQ(r.data_in.size(), 12u);
  EXPECT_EQ(GetBe32(&r.data_in[4]), 16u);
  ExpectInvalidField(Prin(c_, 4), 1, 4);
}

TEST_F(ReservationsTest, RegistrationKeyRules) {
  EXPECT_EQ(Prout(a_, kRegister, 0, 5, 0xAAAA).status, ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xAAAA));
  EXPECT_EQ(Prout(a_, kRegister, 0, 0x1234, 0xAAAB).status, ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0xAAAA, 0xAAAB));  // change key
  EXPECT_GOOD(Prout(a_, kRegisterAndIgnore, 0, 0, 0xAAAC));
  EXPECT_EQ(GetBe64(&Prin(a_, 0).data_in[8]), 0xAAACu);
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0xAAAC, 0));  // unregister
  EXPECT_EQ(GetBe32(&Prin(a_, 0).data_in[4]), 0u);
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0));  // unregistered, key 0: no-op
  // Reserve requires a registration.
  EXPECT_EQ(Prout(a_, kReserve, 1, 0, 0).status, ScsiStatus::kReservationConflict);
  // Wrong parameter list length.
  std::vector<uint8_t> p(20, 0);
  EXPECT_SENSE(Exec(*engine_, ProutCdb(kRegister, 0, 20), p, a_), SenseKey::kIllegalRequest,
               asc::kParameterListLengthError);
  // APTPL without a persistence hook.
  ExpectInvalidField(Prout(a_, kRegister, 0, 0, 1, 0x01), 20, 0, false);
  // Invalid type / scope.
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  ExpectInvalidField(Prout(a_, kReserve, 0x02, 0xA, 0), 2, 3);
  ExpectInvalidField(Prout(a_, kReserve, 0x11, 0xA, 0), 2, 7);
}

struct AccessCase {
  uint8_t type;
  bool registered_read, registered_write, unregistered_read, unregistered_write;
};

class ReservationAccessTest : public ReservationsTest,
                              public ::testing::WithParamInterface<AccessCase> {};

TEST_P(ReservationAccessTest, NonHolderAccess) {
  const AccessCase& c = GetParam();
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, c.type, 0xA, 0));
  auto ok = [](bool allowed) {
    return allowed ? ScsiStatus::kGood : ScsiStatus::kReservationConflict;
  };
  EXPECT_EQ(ReadStatus(a_), ScsiStatus::kGood);
  EXPECT_EQ(WriteStatus(a_), ScsiStatus::kGood);
  EXPECT_EQ(ReadStatus(b_), ok(c.registered_read));
  EXPECT_EQ(WriteStatus(b_), ok(c.registered_write));
  EXPECT_EQ(ReadStatus(c_), ok(c.unregistered_read));
  EXPECT_EQ(WriteStatus(c_), ok(c.unregistered_write));
  // Always allowed.
  EXPECT_GOOD(Exec(*engine_, Cdb({0x12, 0, 0, 0, 36, 0}), {}, c_));
  EXPECT_GOOD(Prin(c_, 1));
  // Another nexus cannot reserve; the holder re-reserving the same type can.
  EXPECT_GOOD(Prout(a_, kReserve, c.type, 0xA, 0));
  const bool all_registrants = c.type == 7 || c.type == 8;
  EXPECT_EQ(Prout(b_, kReserve, c.type, 0xB, 0).status,
            all_registrants ? ScsiStatus::kGood : ScsiStatus::kReservationConflict);
  // SPC-2 RESERVE/RELEASE conflict while registrations exist.
  EXPECT_EQ(Exec(*engine_, Cdb({0x16, 0, 0, 0, 0, 0}), {}, a_).status,
            ScsiStatus::kReservationConflict);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, ReservationAccessTest,
    ::testing::Values(AccessCase{1, true, false, true, false},    // WE
                      AccessCase{3, false, false, false, false},  // EA
                      AccessCase{5, true, true, true, false},     // WE registrants only
                      AccessCase{6, true, true, false, false},    // EA registrants only
                      AccessCase{7, true, true, true, false},     // WE all registrants
                      AccessCase{8, true, true, false, false}));  // EA all registrants

TEST_F(ReservationsTest, ReleaseRules) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, 5, 0xA, 0));
  EXPECT_GOOD(Prout(b_, kRelease, 5, 0xB, 0));  // not the holder: no-op
  EXPECT_EQ(WriteStatus(c_), ScsiStatus::kReservationConflict);
  EXPECT_SENSE(Prout(a_, kRelease, 1, 0xA, 0), SenseKey::kIllegalRequest,
               asc::kInvalidReleaseOfPersistentReservation);
  EXPECT_EQ(Prout(a_, kRelease, 5, 0xB, 0).status, ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Prout(a_, kRelease, 5, 0xA, 0));
  EXPECT_EQ(WriteStatus(c_), ScsiStatus::kGood);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_), SenseKey::kUnitAttention,
               asc::kReservationsReleased);
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_));  // not the releaser
}

TEST_F(ReservationsTest, HolderUnregisteringReleases) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(a_, kReserve, 3, 0xA, 0));
  EXPECT_EQ(ReadStatus(c_), ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0xA, 0));
  EXPECT_EQ(ReadStatus(c_), ScsiStatus::kGood);
  EXPECT_EQ(GetBe32(&Prin(a_, 1).data_in[4]), 0u);
}

TEST_F(ReservationsTest, PreemptRemovesRegistrationAndTakesReservation) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, 1, 0xA, 0));
  EXPECT_EQ(Prout(b_, kPreempt, 3, 0xB, 0xDEAD).status, ScsiStatus::kReservationConflict);
  ExpectInvalidField(Prout(b_, kPreempt, 0, 0xB, 0), 2, 3);
  EXPECT_GOOD(Prout(b_, kPreempt, 3, 0xB, 0xA));
  auto r = Prin(c_, 1);
  EXPECT_EQ(GetBe64(&r.data_in[8]), 0xBu);
  EXPECT_EQ(r.data_in[21], 3);
  r = Prin(c_, 0);
  EXPECT_EQ(GetBe32(&r.data_in[4]), 8u);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_), SenseKey::kUnitAttention,
               asc::kRegistrationsPreempted);
  EXPECT_EQ(ReadStatus(a_), ScsiStatus::kReservationConflict);
  // Preempting a registrant that holds nothing just removes it.
  EXPECT_GOOD(Prout(c_, kRegister, 0, 0, 0xC));
  EXPECT_GOOD(Prout(b_, kPreempt, 3, 0xB, 0xC));
  EXPECT_SENSE(Prin(c_, 0), SenseKey::kUnitAttention, asc::kRegistrationsPreempted);
  auto keys = Prin(c_, 0);
  ASSERT_EQ(keys.data_in.size(), 16u);
  EXPECT_EQ(GetBe64(&keys.data_in[8]), 0xBu);
}

TEST_F(ReservationsTest, PreemptAllRegistrantsWithZeroKey) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, 8, 0xA, 0));
  EXPECT_GOOD(Prout(b_, kPreempt, 1, 0xB, 0));
  auto r = Prin(c_, 1);
  EXPECT_EQ(GetBe64(&r.data_in[8]), 0xBu);
  EXPECT_EQ(r.data_in[21], 1);
  EXPECT_EQ(GetBe32(&Prin(c_, 0).data_in[4]), 8u);
}

TEST_F(ReservationsTest, PreemptAndAbortAbortsThePreemptedTasks) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, 1, 0xA, 0));
  store_->Hold(fakes::BlockOp::kWrite);
  auto write = Start(*engine_, Cdb10(0x2A, 0, 1), std::vector<uint8_t>(512, 1), a_);
  ASSERT_FALSE(write->done());
  std::vector<uint8_t> p(24, 0);
  PutBe64(&p[0], 0xB);
  PutBe64(&p[8], 0xA);
  auto preempt = Start(*engine_, ProutCdb(kPreemptAndAbort, 1, 24), p, b_);
  EXPECT_FALSE(preempt->done());  // waits for the aborted write
  store_->ReleaseAll();
  ASSERT_TRUE(write->done());
  EXPECT_TRUE(write->response->aborted);
  ASSERT_TRUE(preempt->done());
  EXPECT_GOOD(*preempt->response);
}

TEST_F(ReservationsTest, ClearRemovesEverything) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB));
  EXPECT_GOOD(Prout(a_, kReserve, 3, 0xA, 0));
  EXPECT_EQ(Prout(c_, kClear, 0, 0xC, 0).status, ScsiStatus::kReservationConflict);
  EXPECT_GOOD(Prout(b_, kClear, 0, 0xB, 0));
  EXPECT_EQ(GetBe32(&Prin(c_, 0).data_in[4]), 0u);
  EXPECT_EQ(GetBe32(&Prin(c_, 1).data_in[4]), 0u);
  EXPECT_SENSE(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, a_), SenseKey::kUnitAttention,
               asc::kReservationsPreempted);
  EXPECT_GOOD(Exec(*engine_, Cdb({0x00, 0, 0, 0, 0, 0}), {}, b_));
}

TEST_F(ReservationsTest, SpecIPtAndAllTgPt) {
  // A registers itself and C (by TransportID with ISID) on all target ports.
  auto tid = IscsiTransportId(c_->initiator_port_name, true);
  std::vector<uint8_t> extra(4, 0);
  PutBe32(&extra[0], static_cast<uint32_t>(tid.size()));
  extra.insert(extra.end(), tid.begin(), tid.end());
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA, 0x08 | 0x04, extra));
  EXPECT_EQ(GetBe32(&Prin(a_, 0).data_in[4]), 16u);
  auto c_port2 = MakeNexus("iqn.1991-05.com.microsoft:host-c", "400001370000", 2, 2);
  ClearUas(*engine_, c_port2);
  // C (through port 2) is registered and may reserve.
  EXPECT_GOOD(Prout(c_port2, kReserve, 1, 0xA, 0));
  // READ FULL STATUS: two descriptors, ALL_TG_PT, C the holder.
  auto r = Prin(a_, 3);
  EXPECT_GOOD(r);
  size_t pos = 8;
  int holders = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_LE(pos + 24, r.data_in.size());
    EXPECT_EQ(GetBe64(&r.data_in[pos]), 0xAu);
    EXPECT_EQ(r.data_in[pos + 12] & 0x02, 0x02);  // ALL_TG_PT
    holders += r.data_in[pos + 12] & 0x01;
    const uint32_t tid_len = GetBe32(&r.data_in[pos + 20]);
    EXPECT_EQ(r.data_in[pos + 24], 0x45);  // iSCSI, format 01b
    pos += 24 + tid_len;
  }
  EXPECT_EQ(holders, 1);
  EXPECT_EQ(pos, r.data_in.size());
  EXPECT_EQ(GetBe32(&r.data_in[4]), r.data_in.size() - 8);
  // SPEC_I_PT from a registered nexus is invalid.
  ExpectInvalidField(Prout(a_, kRegister, 0, 0xA, 0xA, 0x08, extra), 20, 3, false);
}

TEST_F(ReservationsTest, RegisterAndMove) {
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA));
  EXPECT_GOOD(Prout(a_, kReserve, 3, 0xA, 0));
  auto tid = IscsiTransportId(b_->initiator_port_name, true);
  std::vector<uint8_t> p(24, 0);
  PutBe64(&p[0], 0xA);
  PutBe64(&p[8], 0xB);
  p[17] = 0x02;  // UNREG
  PutBe16(&p[18], 1);
  PutBe32(&p[20], static_cast<uint32_t>(tid.size()));
  p.insert(p.end(), tid.begin(), tid.end());
  EXPECT_GOOD(Exec(*engine_, ProutCdb(kRegisterAndMove, 3, static_cast<uint32_t>(p.size())), p, a_));
  EXPECT_EQ(ReadStatus(b_), ScsiStatus::kGood);
  EXPECT_EQ(ReadStatus(a_), ScsiStatus::kReservationConflict);
  auto r = Prin(c_, 0);
  EXPECT_EQ(GetBe32(&r.data_in[4]), 8u);
  EXPECT_EQ(GetBe64(&r.data_in[8]), 0xBu);
  // A is no longer registered, so it cannot move it back.
  EXPECT_EQ(Exec(*engine_, ProutCdb(kRegisterAndMove, 3, static_cast<uint32_t>(p.size())), p, a_)
                .status,
            ScsiStatus::kReservationConflict);
}

TEST_F(ReservationsTest, ReportCapabilities) {
  auto r = Prin(a_, 2);
  EXPECT_EQ(r.data_in, (std::vector<uint8_t>{0, 8, 0x0C, 0x80, 0xEA, 0x01, 0, 0}));
}

TEST_F(ReservationsTest, AptplPersistsAcrossEngines) {
  auto persistence = std::make_shared<MapPersistence>();
  MakeEngine(persistence);
  EXPECT_EQ(Prin(a_, 2).data_in[2], 0x0D);  // PTPL_C
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0, 0xA, 0x01));
  EXPECT_GOOD(Prout(b_, kRegister, 0, 0, 0xB, 0x01));
  EXPECT_GOOD(Prout(a_, kReserve, 1, 0xA, 0));
  EXPECT_EQ(persistence->saves, 3);
  EXPECT_EQ(Prin(a_, 2).data_in[3] & 0x01, 0x01);  // PTPL_A
  // "Power loss": a new engine over the same persistence.
  MakeEngine(persistence);
  EXPECT_EQ(GetBe32(&Prin(c_, 0).data_in[4]), 16u);
  EXPECT_EQ(WriteStatus(b_), ScsiStatus::kReservationConflict);
  EXPECT_EQ(WriteStatus(a_), ScsiStatus::kGood);
  // Registering with APTPL=0 turns persistence off (and saves that).
  EXPECT_GOOD(Prout(a_, kRegister, 0, 0xA, 0xA));
  MakeEngine(persistence);
  EXPECT_EQ(GetBe32(&Prin(c_, 0).data_in[4]), 0u);
}

TEST(PrStateTest, SerializationRoundTrips) {
  PrState s;
  s.generation = 7;
  s.aptpl = true;
  s.registrations.push_back({0x1122334455667788ull, "iqn.a,i,0x1", false, 3, false});
  s.registrations.push_back({0x99, "iqn.b", true, 0, true});
  s.reserved = true;
  s.type = PrType::kExclusiveAccessRegistrantsOnly;
  s.holder = s.registrations[0];
  auto parsed = ParsePrState(SerializePrState(s));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(SerializePrState(*parsed), SerializePrState(s));
  EXPECT_EQ(parsed->registrations[0].key, 0x1122334455667788ull);
  EXPECT_TRUE(parsed->registrations[1].name_only);
  EXPECT_FALSE(ParsePrState("bogus line").ok());
}

}  // namespace
}  // namespace scsi
