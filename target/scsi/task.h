// The transport-neutral SCSI task: the one contract between a transport (iSCSI
// today, the interconnect's partner virtual adapter too) and whatever executes
// commands (scsi::Engine, or virtual_target::Module which routes to it or to the
// partner). It knows nothing of PDUs, sockets or storage.
//
// A transport gathers a command's whole data-out before it submits the task, and
// turns the TaskResponse into its own status/data/sense delivery, computing
// residuals from the expected transfer length it negotiated with the initiator.
#ifndef TARGET_SCSI_TASK_H_
#define TARGET_SCSI_TASK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"

namespace scsi {

// SAM-5 task attributes.
enum class TaskAttribute : uint8_t {
  kSimple = 0,
  kOrdered = 1,
  kHeadOfQueue = 2,
  kAca = 3,
};

// SAM-5 status codes.
enum class ScsiStatus : uint8_t {
  kGood = 0x00,
  kCheckCondition = 0x02,
  kConditionMet = 0x04,
  kBusy = 0x08,
  kReservationConflict = 0x18,
  kTaskSetFull = 0x28,
  kAcaActive = 0x30,
  kTaskAborted = 0x40,
};

// An I_T nexus: which initiator port talks through which target port. Reservations,
// unit attentions and task sets are kept per nexus, on the LUN's owner.
struct ItNexus {
  // SCSI initiator port name: iSCSI name + ",i,0x" + ISID (12 hex digits).
  std::string initiator_port_name;
  // SCSI target port name: target name + ",t,0x" + portal group tag (4 hex digits).
  std::string target_port_name;
  // Relative target port identifier of the port (LIF) the command arrived on (>= 1).
  uint16_t relative_target_port_id = 1;
  // Target port group the receiving port belongs to (one group per LIF).
  uint16_t target_port_group = 1;

  // The initiator name without the ",i,0x..." suffix (used by ACLs and PR
  // transport IDs).
  std::string InitiatorName() const {
    auto pos = initiator_port_name.find(",i,");
    return pos == std::string::npos ? initiator_port_name
                                    : initiator_port_name.substr(0, pos);
  }
  bool operator==(const ItNexus& o) const {
    return initiator_port_name == o.initiator_port_name &&
           relative_target_port_id == o.relative_target_port_id;
  }
};

struct Task {
  std::shared_ptr<const ItNexus> nexus;
  // LUN number (the 14-bit flat/peripheral value decoded from the 8-byte field).
  uint64_t lun = 0;
  // The CDB (6..16 bytes normally; longer with an additional-CDB AHS).
  absl::InlinedVector<uint8_t, 16> cdb;
  TaskAttribute attribute = TaskAttribute::kSimple;
  // Unique among the nexus's outstanding tasks (iSCSI: the Initiator Task Tag).
  uint64_t tag = 0;
  // How many bytes of data-in the initiator will accept (iSCSI: the Expected
  // Data Transfer Length). An executor need not produce data beyond it (a READ
  // may read only min(this, the CDB's transfer length)), but it reports the full
  // length the command called for in TaskResponse::wanted_data_in_length.
  uint32_t expected_data_in_length = 0;
  // All of the command's data-out that the initiator sent, gathered by the
  // transport: exactly its expected data-out length, which may differ from what
  // the CDB calls for. Longer: the executor uses the prefix it needs. Shorter:
  // the executor transfers only what is there (e.g. a WRITE writes the whole
  // blocks present, GOOD status; a partial block is INVALID FIELD IN COMMAND
  // INFORMATION UNIT). Either way it sets wanted_data_out_length.
  std::vector<uint8_t> data_out;
};

struct TaskResponse {
  ScsiStatus status = ScsiStatus::kGood;
  // Sense data when status is CHECK CONDITION (fixed or descriptor format).
  std::vector<uint8_t> sense;
  // Data for the initiator; never longer than expected_data_in_length. Shorter
  // means underflow: the transport reports the residual.
  std::vector<uint8_t> data_in;
  // For a command that returns data-in: how many bytes it called for (the CDB's
  // transfer length in bytes, or the allocation-limited length of the data it
  // built) before truncation to expected_data_in_length, so the transport can
  // report overflow. 0 when not reported: data_in.size() is then taken as the
  // whole of it. (Added after the first version of this contract; an executor
  // that leaves it 0 behaves as before.)
  uint32_t wanted_data_in_length = 0;
  // For a command that needed data-out: how many bytes it wanted (the CDB's
  // transfer length in bytes), so the transport can report over/underflow.
  // 0 when not applicable.
  uint32_t wanted_data_out_length = 0;
  // The task was aborted by task management: the transport sends no response.
  bool aborted = false;
};

using TaskCompletion = absl::AnyInvocable<void(TaskResponse) &&>;

// SAM-5 task management functions.
enum class TmfFunction : uint8_t {
  kAbortTask,
  kAbortTaskSet,
  kClearTaskSet,
  kClearAca,
  kLogicalUnitReset,
  kTargetWarmReset,
  kTargetColdReset,
  kItNexusLoss,  // the transport lost the nexus (connection/session ended)
};

enum class TmfResult : uint8_t {
  kComplete,
  kTaskDoesNotExist,
  kLunDoesNotExist,
  kNotSupported,
  kRejected,
};

struct TmfRequest {
  std::shared_ptr<const ItNexus> nexus;
  TmfFunction function = TmfFunction::kAbortTask;
  uint64_t lun = 0;
  // For kAbortTask: the tag of the task to abort.
  uint64_t referenced_tag = 0;
};

using TmfCompletion = absl::AnyInvocable<void(TmfResult) &&>;

// Where a transport submits work. Implemented by scsi::Engine (execute here) and
// virtual_target::Module (execute here or on the partner).
class TaskRouter {
 public:
  virtual ~TaskRouter() = default;

  // Executes task. done runs exactly once, possibly on another thread and possibly
  // before Submit returns; an aborted task completes with aborted = true.
  virtual void Submit(std::unique_ptr<Task> task, TaskCompletion done) = 0;

  // Runs a task management function. done runs after every task it affects has
  // completed (aborted tasks included), as iSCSI requires before the TMF response.
  virtual void ManageTasks(TmfRequest request, TmfCompletion done) = 0;
};

}  // namespace scsi

#endif  // TARGET_SCSI_TASK_H_
