// The proxy envelope codec: scsi::Task / TmfRequest <-> interconnect::Envelope
// and TaskResponse / TmfResult <-> interconnect::Completion, with every field
// a peer sends checked against EnvelopeLimits before it is used. Pure
// functions, shared by both adapters (and fuzzable on their own).
#ifndef VADAPTER_ENVELOPE_H_
#define VADAPTER_ENVELOPE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interconnect/proxy.pb.h"
#include "target/scsi/sense.h"
#include "target/scsi/task.h"

namespace vadapter {

struct EnvelopeLimits {
  // CDB length bounds (6-byte CDBs up to 16 + a 244-byte additional-CDB AHS).
  size_t min_cdb_bytes = 6;
  size_t max_cdb_bytes = 260;
  // Longest initiator/target port name (iSCSI names are <= 223 bytes; the
  // ",i,0x<ISID>" suffix adds 17).
  size_t max_port_name_bytes = 255;
  // Largest LUN number (the 14-bit flat/peripheral space the transports decode).
  uint64_t max_lun = 16383;
  // Largest data-out carried, and largest expected data-in asked for.
  uint32_t max_data_out_bytes = 16 * 1024 * 1024;
  uint32_t max_data_in_bytes = 16 * 1024 * 1024;
  // Longest sense accepted back (SPC: 252 bytes).
  size_t max_sense_bytes = 252;
};

// --- Requester side (LocalVirtualAdapter) ---

// Fills out from task, all but data_out (which travels as the item's payload:
// vadapter/wire.h). InvalidArgument when the task is outside limits (it is
// then answered locally, never sent).
absl::Status EncodeScsiCommand(const scsi::Task& task,
                               const EnvelopeLimits& limits,
                               interconnect::ScsiCommand* out);
absl::Status EncodeTaskManagement(const scsi::TmfRequest& request,
                                  const EnvelopeLimits& limits,
                                  interconnect::TaskManagement* out);

// A completion from the owner, with its data-in (the item's payload; a
// data_in field inside the completion, from a peer that sent it there, is
// taken too), for a command that allowed expected_data_in_length bytes of
// data-in. A completion that breaks the contract (unknown status, oversized
// sense or data) becomes CHECK CONDITION, HARDWARE ERROR, INTERNAL TARGET
// FAILURE.
scsi::TaskResponse DecodeScsiCompletion(const interconnect::ScsiCompletion& completion,
                                        std::vector<uint8_t> data_in,
                                        uint32_t expected_data_in_length,
                                        const EnvelopeLimits& limits);
// Unknown values become kRejected.
scsi::TmfResult DecodeTmfCompletion(const interconnect::TmfCompletion& c);

// --- Owner side (PartnerVirtualAdapter) ---

// Returns the shared ItNexus for a validated nexus (so that every task of one
// nexus points at the same object).
using NexusInterner =
    std::function<std::shared_ptr<const scsi::ItNexus>(scsi::ItNexus)>;

// Validates and rebuilds the task, whose data-out is data_out (the item's
// payload; or command's data_out field when a peer sent it there).
// InvalidArgument says which field is wrong.
absl::StatusOr<std::unique_ptr<scsi::Task>> DecodeScsiCommand(
    const interconnect::ScsiCommand& command, std::vector<uint8_t> data_out,
    const EnvelopeLimits& limits, const NexusInterner& intern);
absl::StatusOr<scsi::TmfRequest> DecodeTaskManagement(
    const interconnect::TaskManagement& tmf, const EnvelopeLimits& limits,
    const NexusInterner& intern);

// Fills out from response, all but data_in (the item's payload).
void EncodeScsiResponse(const scsi::TaskResponse& response,
                        interconnect::ScsiCompletion* out);

// --- Canned answers ---

// CHECK CONDITION, NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
// UNAVAILABLE STATE (04/0C), fixed format: the ALUA answer that sends a
// multipath host to another path.
scsi::TaskResponse UnavailableResponse();
// CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (24/00), fixed format.
scsi::TaskResponse InvalidFieldInCdbResponse();
// TASK SET FULL status (the host retries later).
scsi::TaskResponse TaskSetFullResponse();
// CHECK CONDITION, HARDWARE ERROR, INTERNAL TARGET FAILURE (44/00).
scsi::TaskResponse InternalTargetFailureResponse();

}  // namespace vadapter

#endif  // VADAPTER_ENVELOPE_H_
