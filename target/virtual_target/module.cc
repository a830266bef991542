#include "target/virtual_target/module.h"

#include <atomic>
#include <utility>

#include "target/scsi/sense.h"

namespace virtual_target {
namespace {

bool IsTargetScoped(scsi::TmfFunction f) {
  return f == scsi::TmfFunction::kTargetWarmReset ||
         f == scsi::TmfFunction::kTargetColdReset ||
         f == scsi::TmfFunction::kItNexusLoss;
}

// Joins two TMF completions into one: done runs after both, with the first
// non-complete result (a LUN or task not found on one side is not a failure of
// a target-wide function).
struct TmfJoin {
  explicit TmfJoin(scsi::TmfCompletion done) : done(std::move(done)) {}
  void Arrive(scsi::TmfResult r) {
    if (r == scsi::TmfResult::kRejected ||
        r == scsi::TmfResult::kNotSupported) {
      result.store(r);
    }
    if (pending.fetch_sub(1) == 1) std::move(done)(result.load());
  }
  scsi::TmfCompletion done;
  std::atomic<int> pending{2};
  std::atomic<scsi::TmfResult> result{scsi::TmfResult::kComplete};
};

// CHECK CONDITION, NOT READY with code, in fixed format: the control mode
// page's D_SENSE default, and what every initiator parses.
scsi::TaskResponse NotReady(scsi::Asc code) {
  scsi::TaskResponse response;
  response.status = scsi::ScsiStatus::kCheckCondition;
  scsi::SenseData sense;
  sense.key = scsi::SenseKey::kNotReady;
  sense.code = code;
  response.sense = scsi::BuildSense(sense, scsi::SenseFormat::kFixed);
  return response;
}

}  // namespace

Module::Module(std::string node_name, scsi::TaskRouter& local_engine,
               const OwnershipView& ownership, Forwarder* forwarder,
               const AccessGate* gate)
    : node_name_(std::move(node_name)),
      local_engine_(local_engine),
      ownership_(ownership),
      forwarder_(forwarder),
      gate_(gate) {}

Route Module::RouteFor(uint64_t lun) const {
  std::optional<std::string> owner = ownership_.OwnerOf(lun);
  if (!owner.has_value() || *owner == node_name_) return Route::kLocal;
  if (forwarder_ != nullptr && forwarder_->PartnerReachable()) {
    return Route::kPartner;
  }
  return Route::kUnreachable;
}

void Module::Submit(std::unique_ptr<scsi::Task> task,
                    scsi::TaskCompletion done) {
  const Access access =
      gate_ == nullptr ? Access::kServe : gate_->AccessFor(task->lun);
  if (access != Access::kServe) {
    std::move(done)(NotReady(access == Access::kTransitioning
        ? scsi::asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition
        : access == Access::kNeedsOperator
              ? scsi::asc::kLogicalUnitNotReadyManualInterventionRequired
              : scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState));
    return;
  }
  switch (RouteFor(task->lun)) {
    case Route::kLocal:
      local_engine_.Submit(std::move(task), std::move(done));
      return;
    case Route::kPartner:
      forwarder_->Forward(std::move(task), std::move(done));
      return;
    case Route::kUnreachable:
      std::move(done)(NotReady(
          scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState));
      return;
  }
}

void Module::ManageTasks(scsi::TmfRequest request, scsi::TmfCompletion done) {
  if (!IsTargetScoped(request.function)) {
    switch (RouteFor(request.lun)) {
      case Route::kLocal:
        local_engine_.ManageTasks(std::move(request), std::move(done));
        return;
      case Route::kPartner:
        forwarder_->ForwardTaskManagement(std::move(request), std::move(done));
        return;
      case Route::kUnreachable:
        // The owner's tasks are out of reach; they end on the owner when the
        // interconnect's loss aborts them there.
        std::move(done)(scsi::TmfResult::kLunDoesNotExist);
        return;
    }
  }
  if (forwarder_ == nullptr || !forwarder_->PartnerReachable()) {
    local_engine_.ManageTasks(std::move(request), std::move(done));
    return;
  }
  auto join = std::make_shared<TmfJoin>(std::move(done));
  local_engine_.ManageTasks(request,
                            [join](scsi::TmfResult r) { join->Arrive(r); });
  forwarder_->ForwardTaskManagement(
      std::move(request), [join](scsi::TmfResult r) { join->Arrive(r); });
}

}  // namespace virtual_target
