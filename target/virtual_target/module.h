// The local virtual target module (seed 002): for each task, from the LUN's
// current owner, execute it on this node's SCSI engine or hand it to the local
// virtual adapter (a Forwarder) that carries it to the partner.
//
// The module does not know how forwarding is done. It only knows, per LUN,
// which node owns it now (an OwnershipView the HA layer keeps current) and
// whether a Forwarder can reach that node. A command for a LUN whose owner
// cannot be reached ends with CHECK CONDITION, NOT READY, LOGICAL UNIT NOT
// ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE: the ALUA answer that makes
// multipath hosts retry on another path, never a hang.
#ifndef TARGET_VIRTUAL_TARGET_MODULE_H_
#define TARGET_VIRTUAL_TARGET_MODULE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "target/scsi/task.h"

namespace virtual_target {

// Which node owns a LUN now. Thread-safe, non-blocking.
class OwnershipView {
 public:
  virtual ~OwnershipView() = default;
  // The owner's node name; empty optional when no node of the pair has the LUN.
  virtual std::optional<std::string> OwnerOf(uint64_t lun) const = 0;
};

// Carries tasks and task management to the partner (implemented by
// vadapter::LocalVirtualAdapter). Same completion contract as scsi::TaskRouter.
class Forwarder {
 public:
  virtual ~Forwarder() = default;
  // False while the partner cannot be reached; the module then fails proxied
  // commands with the ALUA unavailable sense instead of queueing them.
  virtual bool PartnerReachable() const = 0;
  virtual void Forward(std::unique_ptr<scsi::Task> task,
                       scsi::TaskCompletion done) = 0;
  virtual void ForwardTaskManagement(scsi::TmfRequest request,
                                     scsi::TmfCompletion done) = 0;
};

// Whether this node may run a LUN's commands now (the HA layer decides).
// Anything but kServe ends the command with CHECK CONDITION, NOT READY and the
// additional sense that tells a host what to do.
enum class Access : uint8_t {
  kServe,           // route as usual
  kTransitioning,   // 04/0A ASYMMETRIC ACCESS STATE TRANSITION: takeover or
                    // giveback under way, retry shortly
  kUnavailable,     // 04/0C TARGET PORT IN UNAVAILABLE STATE: this node is
                    // fenced, use another path
  kNeedsOperator,   // 04/03 MANUAL INTERVENTION REQUIRED: taken over with an
                    // inconsistent NVLOG, offline until an operator clears it
};

class AccessGate {
 public:
  virtual ~AccessGate() = default;
  // Thread-safe, non-blocking (read on every command's path).
  virtual Access AccessFor(uint64_t lun) const = 0;
};

// Where a task goes.
enum class Route : uint8_t {
  kLocal,        // this node owns the LUN (or nobody does: the engine answers)
  kPartner,      // the partner owns it and can be reached
  kUnreachable,  // the partner owns it and cannot be reached
};

class Module : public scsi::TaskRouter {
 public:
  // local_engine and ownership must outlive the module. forwarder may be null
  // (a standalone node): LUNs owned elsewhere are then unreachable.
  // gate (may be null: always serve) must outlive the module.
  Module(std::string node_name, scsi::TaskRouter& local_engine,
         const OwnershipView& ownership, Forwarder* forwarder,
         const AccessGate* gate = nullptr);

  Route RouteFor(uint64_t lun) const;

  // scsi::TaskRouter
  void Submit(std::unique_ptr<scsi::Task> task,
              scsi::TaskCompletion done) override;
  // LUN-scoped functions go where the LUN's tasks run; target-scoped ones
  // (target resets, I_T nexus loss) go to the local engine and, when reachable,
  // to the partner, and complete when both have.
  void ManageTasks(scsi::TmfRequest request, scsi::TmfCompletion done) override;

 private:
  const std::string node_name_;
  scsi::TaskRouter& local_engine_;
  const OwnershipView& ownership_;
  Forwarder* const forwarder_;
  const AccessGate* const gate_;
};

}  // namespace virtual_target

#endif  // TARGET_VIRTUAL_TARGET_MODULE_H_
