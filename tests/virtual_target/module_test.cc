#include "target/virtual_target/module.h"

#include <map>
#include <vector>

#include "gtest/gtest.h"
#include "target/scsi/sense.h"

namespace virtual_target {
namespace {

// Records what reaches it and answers GOOD with its own name as data.
class RecordingRouter : public scsi::TaskRouter {
 public:
  explicit RecordingRouter(std::string name) : name_(std::move(name)) {}
  void Submit(std::unique_ptr<scsi::Task> task,
              scsi::TaskCompletion done) override {
    luns.push_back(task->lun);
    scsi::TaskResponse r;
    r.data_in.assign(name_.begin(), name_.end());
    std::move(done)(std::move(r));
  }
  void ManageTasks(scsi::TmfRequest request,
                   scsi::TmfCompletion done) override {
    tmfs.push_back(request.function);
    std::move(done)(tmf_result);
  }
  std::vector<uint64_t> luns;
  std::vector<scsi::TmfFunction> tmfs;
  scsi::TmfResult tmf_result = scsi::TmfResult::kComplete;

 private:
  std::string name_;
};

class FakeForwarder : public Forwarder {
 public:
  bool PartnerReachable() const override { return reachable; }
  void Forward(std::unique_ptr<scsi::Task> task,
               scsi::TaskCompletion done) override {
    partner.Submit(std::move(task), std::move(done));
  }
  void ForwardTaskManagement(scsi::TmfRequest request,
                             scsi::TmfCompletion done) override {
    partner.ManageTasks(std::move(request), std::move(done));
  }
  bool reachable = true;
  RecordingRouter partner{"partner"};
};

class MapOwnership : public OwnershipView {
 public:
  std::optional<std::string> OwnerOf(uint64_t lun) const override {
    auto it = owners.find(lun);
    if (it == owners.end()) return std::nullopt;
    return it->second;
  }
  std::map<uint64_t, std::string> owners;
};

std::string SubmitTur(Module& module, uint64_t lun,
                      scsi::TaskResponse* out = nullptr) {
  auto task = std::make_unique<scsi::Task>();
  task->lun = lun;
  task->cdb = {0x00, 0, 0, 0, 0, 0};  // TEST UNIT READY
  std::string answered;
  bool called = false;
  module.Submit(std::move(task), [&](scsi::TaskResponse r) {
    called = true;
    answered.assign(r.data_in.begin(), r.data_in.end());
    if (out != nullptr) *out = r;
  });
  EXPECT_TRUE(called);
  return answered;
}

class ModuleTest : public ::testing::Test {
 protected:
  ModuleTest() { ownership_.owners = {{0, "node-a"}, {1, "node-b"}}; }
  RecordingRouter local_{"local"};
  FakeForwarder forwarder_;
  MapOwnership ownership_;
  Module module_{"node-a", local_, ownership_, &forwarder_};
};

TEST_F(ModuleTest, OwnLunRunsLocally) {
  EXPECT_EQ(module_.RouteFor(0), Route::kLocal);
  EXPECT_EQ(SubmitTur(module_, 0), "local");
  EXPECT_TRUE(forwarder_.partner.luns.empty());
}

TEST_F(ModuleTest, PartnerLunIsForwarded) {
  EXPECT_EQ(module_.RouteFor(1), Route::kPartner);
  EXPECT_EQ(SubmitTur(module_, 1), "partner");
  EXPECT_TRUE(local_.luns.empty());
}

TEST_F(ModuleTest, UnknownLunGoesToLocalEngineWhichAnswersForIt) {
  EXPECT_EQ(SubmitTur(module_, 9), "local");
}

TEST_F(ModuleTest, OwnershipChangeReroutes) {
  ownership_.owners[1] = "node-a";  // takeover
  EXPECT_EQ(SubmitTur(module_, 1), "local");
}

TEST_F(ModuleTest, UnreachablePartnerGivesAluaUnavailableSense) {
  forwarder_.reachable = false;
  scsi::TaskResponse r;
  EXPECT_EQ(SubmitTur(module_, 1, &r), "");
  EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
  absl::StatusOr<scsi::SenseData> sense = scsi::ParseSense(r.sense);
  ASSERT_TRUE(sense.ok());
  EXPECT_EQ(sense->key, scsi::SenseKey::kNotReady);
  EXPECT_EQ(sense->code,
            scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
  EXPECT_TRUE(forwarder_.partner.luns.empty());
}

TEST(ModuleStandaloneTest, NoForwarderMeansPartnerLunsUnreachable) {
  RecordingRouter local("local");
  MapOwnership ownership;
  ownership.owners = {{1, "node-b"}};
  Module module("node-a", local, ownership, nullptr);
  EXPECT_EQ(module.RouteFor(1), Route::kUnreachable);
}

scsi::TmfResult Tmf(Module& m, scsi::TmfFunction f, uint64_t lun) {
  scsi::TmfRequest request;
  request.function = f;
  request.lun = lun;
  std::optional<scsi::TmfResult> result;
  m.ManageTasks(request, [&](scsi::TmfResult r) { result = r; });
  EXPECT_TRUE(result.has_value());
  return result.value_or(scsi::TmfResult::kRejected);
}

TEST_F(ModuleTest, LunScopedTmfFollowsTheLun) {
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kAbortTask, 1),
            scsi::TmfResult::kComplete);
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kLogicalUnitReset, 0),
            scsi::TmfResult::kComplete);
  ASSERT_EQ(forwarder_.partner.tmfs.size(), 1u);
  EXPECT_EQ(forwarder_.partner.tmfs[0], scsi::TmfFunction::kAbortTask);
  ASSERT_EQ(local_.tmfs.size(), 1u);
  EXPECT_EQ(local_.tmfs[0], scsi::TmfFunction::kLogicalUnitReset);
}

TEST_F(ModuleTest, TargetScopedTmfReachesBothNodes) {
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kItNexusLoss, 0),
            scsi::TmfResult::kComplete);
  EXPECT_EQ(local_.tmfs.size(), 1u);
  EXPECT_EQ(forwarder_.partner.tmfs.size(), 1u);
  forwarder_.partner.tmf_result = scsi::TmfResult::kRejected;
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kTargetWarmReset, 0),
            scsi::TmfResult::kRejected);
}

TEST_F(ModuleTest, TmfForUnreachableOwnerSaysLunUnavailable) {
  forwarder_.reachable = false;
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kAbortTaskSet, 1),
            scsi::TmfResult::kLunDoesNotExist);
  // Target-wide functions still run locally.
  EXPECT_EQ(Tmf(module_, scsi::TmfFunction::kTargetColdReset, 0),
            scsi::TmfResult::kComplete);
  EXPECT_EQ(local_.tmfs.size(), 1u);
}

}  // namespace
}  // namespace virtual_target

namespace virtual_target {
namespace {

class MapGate : public AccessGate {
 public:
  Access AccessFor(uint64_t lun) const override {
    auto it = access.find(lun);
    return it == access.end() ? Access::kServe : it->second;
  }
  std::map<uint64_t, Access> access;
};

TEST(ModuleGateTest, GateAnswersNotReadyWithTheReasonAndRunsNothing) {
  RecordingRouter local{"local"};
  FakeForwarder forwarder;
  MapOwnership ownership;
  ownership.owners = {{0, "node-a"}, {1, "node-b"}, {2, "node-a"}};
  MapGate gate;
  Module module("node-a", local, ownership, &forwarder, &gate);
  gate.access = {{0, Access::kTransitioning},
                 {1, Access::kUnavailable},
                 {2, Access::kNeedsOperator}};
  const std::map<uint64_t, scsi::Asc> want = {
      {0, scsi::asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition},
      {1, scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState},
      {2, scsi::asc::kLogicalUnitNotReadyManualInterventionRequired}};
  for (const auto& [lun, code] : want) {
    scsi::TaskResponse r;
    EXPECT_EQ(SubmitTur(module, lun, &r), "") << lun;
    EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
    absl::StatusOr<scsi::SenseData> sense = scsi::ParseSense(r.sense);
    ASSERT_TRUE(sense.ok());
    EXPECT_EQ(sense->key, scsi::SenseKey::kNotReady);
    EXPECT_EQ(sense->code, code) << lun;
  }
  EXPECT_TRUE(local.luns.empty());
  EXPECT_TRUE(forwarder.partner.luns.empty());
  // Cleared: routed as usual again.
  gate.access.clear();
  EXPECT_EQ(SubmitTur(module, 0), "local");
  EXPECT_EQ(SubmitTur(module, 1), "partner");
}

}  // namespace
}  // namespace virtual_target
