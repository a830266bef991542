// Test harness for scsi::Engine: builds CDBs, submits tasks through the
// TaskRouter interface and captures their responses, without sockets or
// threads (MemoryBlockStore completes synchronously unless a test holds I/O).
#ifndef TESTS_SCSI_ENGINE_HARNESS_H_
#define TESTS_SCSI_ENGINE_HARNESS_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/bytes.h"
#include "target/scsi/engine.h"
#include "target/scsi/sense.h"
#include "tests/fakes/memory_block_store.h"

namespace scsi::testing {

inline std::shared_ptr<const ItNexus> MakeNexus(const std::string& initiator,
                                                const std::string& isid,
                                                uint16_t rtpi = 1, uint16_t tpg = 1) {
  auto n = std::make_shared<ItNexus>();
  n->initiator_port_name = initiator + ",i,0x" + isid;
  n->target_port_name = "iqn.2026-01.com.example:sanpair,t,0x000" + std::to_string(tpg);
  n->relative_target_port_id = rtpi;
  n->target_port_group = tpg;
  return n;
}

// A pending or finished task.
struct Outcome {
  std::optional<TaskResponse> response;
  bool done() const { return response.has_value(); }
};

class Harness {
 public:
  Harness() : a_(MakeNexus("iqn.1994-05.com.redhat:host-a", "23d000000001")),
              b_(MakeNexus("iqn.1994-05.com.redhat:host-b", "23d000000002")) {}

  static std::vector<uint8_t> Cdb(std::initializer_list<uint8_t> bytes) {
    return std::vector<uint8_t>(bytes);
  }
  static std::vector<uint8_t> Cdb10(uint8_t op, uint32_t lba, uint16_t blocks,
                                    uint8_t flags = 0) {
    std::vector<uint8_t> c(10, 0);
    c[0] = op;
    c[1] = flags;
    PutBe32(&c[2], lba);
    PutBe16(&c[7], blocks);
    return c;
  }
  static std::vector<uint8_t> Cdb12(uint8_t op, uint32_t lba, uint32_t blocks,
                                    uint8_t flags = 0) {
    std::vector<uint8_t> c(12, 0);
    c[0] = op;
    c[1] = flags;
    PutBe32(&c[2], lba);
    PutBe32(&c[6], blocks);
    return c;
  }
  static std::vector<uint8_t> Cdb16(uint8_t op, uint64_t lba, uint32_t blocks,
                                    uint8_t flags = 0) {
    std::vector<uint8_t> c(16, 0);
    c[0] = op;
    c[1] = flags;
    PutBe64(&c[2], lba);
    PutBe32(&c[10], blocks);
    return c;
  }

  // Submits and returns a handle; the response is filled when done runs.
  std::shared_ptr<Outcome> Start(TaskRouter& router, const std::vector<uint8_t>& cdb,
                                 std::vector<uint8_t> data_out = {},
                                 std::shared_ptr<const ItNexus> nexus = nullptr,
                                 uint64_t lun = 0, uint32_t alloc = 1 << 20,
                                 uint64_t tag = 0,
                                 TaskAttribute attribute = TaskAttribute::kSimple) {
    auto task = std::make_unique<Task>();
    task->attribute = attribute;
    task->nexus = nexus ? nexus : a_;
    task->lun = lun;
    task->cdb.assign(cdb.begin(), cdb.end());
    task->tag = tag ? tag : ++next_tag_;
    task->expected_data_in_length = alloc;
    task->data_out = std::move(data_out);
    auto outcome = std::make_shared<Outcome>();
    router.Submit(std::move(task), [outcome](TaskResponse r) { outcome->response = std::move(r); });
    return outcome;
  }

  // Submits and expects synchronous completion.
  TaskResponse Exec(TaskRouter& router, const std::vector<uint8_t>& cdb,
                   std::vector<uint8_t> data_out = {},
                   std::shared_ptr<const ItNexus> nexus = nullptr, uint64_t lun = 0,
                   uint32_t alloc = 1 << 20) {
    auto o = Start(router, cdb, std::move(data_out), std::move(nexus), lun, alloc);
    EXPECT_TRUE(o->done()) << "task did not complete synchronously";
    return o->done() ? *o->response : TaskResponse{};
  }

  // Drains pending unit attentions of nexus on lun with TEST UNIT READY.
  void ClearUas(TaskRouter& router, std::shared_ptr<const ItNexus> nexus = nullptr,
                uint64_t lun = 0) {
    for (int i = 0; i < 10; ++i) {
      auto r = Exec(router, Cdb({0x00, 0, 0, 0, 0, 0}), {}, nexus, lun);
      if (r.status == ScsiStatus::kGood) return;
    }
    ADD_FAILURE() << "unit attentions did not drain";
  }

  static SenseData SenseOf(const TaskResponse& r) {
    auto s = ParseSense(r.sense);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : SenseData{};
  }

  std::shared_ptr<const ItNexus> a_;
  std::shared_ptr<const ItNexus> b_;
  uint64_t next_tag_ = 0;
};

// EXPECT helpers.
#define EXPECT_GOOD(resp)                                             \
  do {                                                                \
    const auto& r_ = (resp);                                          \
    EXPECT_EQ(r_.status, ::scsi::ScsiStatus::kGood)                   \
        << ::scsi::testing::Harness::SenseOf(r_).ToString();          \
  } while (0)

#define EXPECT_SENSE(resp, sense_key, asc_value)                              \
  do {                                                                        \
    const auto& r_ = (resp);                                                  \
    ASSERT_EQ(r_.status, ::scsi::ScsiStatus::kCheckCondition);                \
    auto s_ = ::scsi::testing::Harness::SenseOf(r_);                          \
    EXPECT_EQ(s_.key, sense_key) << s_.ToString();                            \
    EXPECT_EQ(s_.code, asc_value) << s_.ToString();                           \
  } while (0)

inline void ExpectInvalidField(const TaskResponse& r, uint16_t byte,
                               std::optional<uint8_t> bit = std::nullopt,
                               bool in_cdb = true) {
  ASSERT_EQ(r.status, ScsiStatus::kCheckCondition);
  auto s = Harness::SenseOf(r);
  EXPECT_EQ(s.key, SenseKey::kIllegalRequest);
  EXPECT_EQ(s.code, in_cdb ? asc::kInvalidFieldInCdb : asc::kInvalidFieldInParameterList)
      << s.ToString();
  ASSERT_TRUE(s.field_pointer.has_value()) << s.ToString();
  EXPECT_EQ(s.field_pointer->in_cdb, in_cdb);
  EXPECT_EQ(s.field_pointer->byte, byte) << s.ToString();
  EXPECT_EQ(s.field_pointer->bit, bit) << s.ToString();
}

}  // namespace scsi::testing

#endif  // TESTS_SCSI_ENGINE_HARNESS_H_
