#include "vadapter/envelope.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace vadapter {
namespace {

scsi::TaskResponse CheckCondition(scsi::SenseKey key, scsi::Asc code) {
  scsi::TaskResponse r;
  r.status = scsi::ScsiStatus::kCheckCondition;
  scsi::SenseData sense;
  sense.key = key;
  sense.code = code;
  r.sense = scsi::BuildSense(sense, scsi::SenseFormat::kFixed);
  return r;
}

bool KnownStatus(uint32_t s) {
  switch (static_cast<scsi::ScsiStatus>(s)) {
    case scsi::ScsiStatus::kGood:
    case scsi::ScsiStatus::kCheckCondition:
    case scsi::ScsiStatus::kConditionMet:
    case scsi::ScsiStatus::kBusy:
    case scsi::ScsiStatus::kReservationConflict:
    case scsi::ScsiStatus::kTaskSetFull:
    case scsi::ScsiStatus::kAcaActive:
    case scsi::ScsiStatus::kTaskAborted:
      return s <= 0xff;
  }
  return false;
}

absl::Status CheckNexus(const scsi::ItNexus& n, const EnvelopeLimits& limits) {
  if (n.initiator_port_name.empty() ||
      n.initiator_port_name.size() > limits.max_port_name_bytes) {
    return absl::InvalidArgumentError("initiator_port_name empty or too long");
  }
  if (n.target_port_name.empty() ||
      n.target_port_name.size() > limits.max_port_name_bytes) {
    return absl::InvalidArgumentError("target_port_name empty or too long");
  }
  if (n.relative_target_port_id == 0 || n.target_port_group == 0) {
    return absl::InvalidArgumentError("relative_target_port_id/group is 0");
  }
  return absl::OkStatus();
}

void EncodeNexus(const scsi::ItNexus& n, interconnect::ItNexus* out) {
  out->set_initiator_port_name(n.initiator_port_name);
  out->set_target_port_name(n.target_port_name);
  out->set_relative_target_port_id(n.relative_target_port_id);
  out->set_target_port_group(n.target_port_group);
}

absl::StatusOr<std::shared_ptr<const scsi::ItNexus>> DecodeNexus(
    const interconnect::ItNexus& in, const EnvelopeLimits& limits,
    const NexusInterner& intern) {
  if (in.relative_target_port_id() < 1 || in.relative_target_port_id() > 65535) {
    return absl::InvalidArgumentError("relative_target_port_id not in 1..65535");
  }
  if (in.target_port_group() < 1 || in.target_port_group() > 65535) {
    return absl::InvalidArgumentError("target_port_group not in 1..65535");
  }
  scsi::ItNexus n;
  n.initiator_port_name = in.initiator_port_name();
  n.target_port_name = in.target_port_name();
  n.relative_target_port_id = static_cast<uint16_t>(in.relative_target_port_id());
  n.target_port_group = static_cast<uint16_t>(in.target_port_group());
  if (absl::Status s = CheckNexus(n, limits); !s.ok()) return s;
  return intern(std::move(n));
}

// Copies protobuf bytes into a byte vector as one memmove (a range assign
// from std::string iterators copies byte by byte).
template <typename ByteVector>
void AssignBytes(const std::string& from, ByteVector* to) {
  const auto* p = reinterpret_cast<const uint8_t*>(from.data());
  to->assign(p, p + from.size());
}

// A command's data-out or a completion's data-in: the item's payload
// (vadapter/wire.h), or the message's own bytes field from a peer that put it
// there.
std::vector<uint8_t> PayloadOrField(std::vector<uint8_t> payload,
                                    const std::string& field) {
  if (payload.empty()) AssignBytes(field, &payload);
  return payload;
}

}  // namespace

absl::Status EncodeScsiCommand(const scsi::Task& task,
                               const EnvelopeLimits& limits,
                               interconnect::ScsiCommand* out) {
  if (!task.nexus) return absl::InvalidArgumentError("task without nexus");
  if (absl::Status s = CheckNexus(*task.nexus, limits); !s.ok()) return s;
  if (task.cdb.size() < limits.min_cdb_bytes ||
      task.cdb.size() > limits.max_cdb_bytes) {
    return absl::InvalidArgumentError("cdb length out of range");
  }
  if (task.lun > limits.max_lun) return absl::InvalidArgumentError("lun too large");
  if (task.data_out.size() > limits.max_data_out_bytes) {
    return absl::InvalidArgumentError("data_out too large");
  }
  if (task.expected_data_in_length > limits.max_data_in_bytes) {
    return absl::InvalidArgumentError("expected_data_in_length too large");
  }
  EncodeNexus(*task.nexus, out->mutable_nexus());
  out->set_lun(task.lun);
  out->set_cdb(task.cdb.data(), task.cdb.size());
  out->set_task_attribute(static_cast<uint32_t>(task.attribute));
  out->set_tag(task.tag);
  out->set_expected_data_in_length(task.expected_data_in_length);
  return absl::OkStatus();
}

absl::Status EncodeTaskManagement(const scsi::TmfRequest& request,
                                  const EnvelopeLimits& limits,
                                  interconnect::TaskManagement* out) {
  if (!request.nexus) return absl::InvalidArgumentError("TMF without nexus");
  if (absl::Status s = CheckNexus(*request.nexus, limits); !s.ok()) return s;
  if (request.lun > limits.max_lun) {
    return absl::InvalidArgumentError("lun too large");
  }
  EncodeNexus(*request.nexus, out->mutable_nexus());
  out->set_function(static_cast<uint32_t>(request.function));
  out->set_lun(request.lun);
  out->set_referenced_tag(request.referenced_tag);
  return absl::OkStatus();
}

scsi::TaskResponse DecodeScsiCompletion(const interconnect::ScsiCompletion& c,
                                        std::vector<uint8_t> data_in,
                                        uint32_t expected_data_in_length,
                                        const EnvelopeLimits& limits) {
  data_in = PayloadOrField(std::move(data_in), c.data_in());
  if (!KnownStatus(c.status()) || c.sense().size() > limits.max_sense_bytes ||
      data_in.size() > expected_data_in_length) {
    return InternalTargetFailureResponse();
  }
  scsi::TaskResponse r;
  r.status = static_cast<scsi::ScsiStatus>(c.status());
  AssignBytes(c.sense(), &r.sense);
  r.data_in = std::move(data_in);
  r.wanted_data_in_length = c.wanted_data_in_length();
  r.wanted_data_out_length = c.wanted_data_out_length();
  r.aborted = c.aborted();
  return r;
}

scsi::TmfResult DecodeTmfCompletion(const interconnect::TmfCompletion& c) {
  if (c.result() > static_cast<uint32_t>(scsi::TmfResult::kRejected)) {
    return scsi::TmfResult::kRejected;
  }
  return static_cast<scsi::TmfResult>(c.result());
}

absl::StatusOr<std::unique_ptr<scsi::Task>> DecodeScsiCommand(
    const interconnect::ScsiCommand& command, std::vector<uint8_t> data_out,
    const EnvelopeLimits& limits, const NexusInterner& intern) {
  data_out = PayloadOrField(std::move(data_out), command.data_out());
  const std::string& cdb = command.cdb();
  if (cdb.size() < limits.min_cdb_bytes || cdb.size() > limits.max_cdb_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cdb length ", cdb.size(), " not in ",
                     limits.min_cdb_bytes, "..", limits.max_cdb_bytes));
  }
  if (command.lun() > limits.max_lun) {
    return absl::InvalidArgumentError(absl::StrCat("lun ", command.lun()));
  }
  if (command.task_attribute() > static_cast<uint32_t>(scsi::TaskAttribute::kAca)) {
    return absl::InvalidArgumentError(
        absl::StrCat("task_attribute ", command.task_attribute()));
  }
  if (data_out.size() > limits.max_data_out_bytes) {
    return absl::InvalidArgumentError("data_out too large");
  }
  if (command.expected_data_in_length() > limits.max_data_in_bytes) {
    return absl::InvalidArgumentError("expected_data_in_length too large");
  }
  auto nexus = DecodeNexus(command.nexus(), limits, intern);
  if (!nexus.ok()) return nexus.status();
  auto task = std::make_unique<scsi::Task>();
  task->nexus = std::move(*nexus);
  task->lun = command.lun();
  AssignBytes(cdb, &task->cdb);
  task->attribute = static_cast<scsi::TaskAttribute>(command.task_attribute());
  task->tag = command.tag();
  task->expected_data_in_length = command.expected_data_in_length();
  task->data_out = std::move(data_out);
  return task;
}

absl::StatusOr<scsi::TmfRequest> DecodeTaskManagement(
    const interconnect::TaskManagement& tmf, const EnvelopeLimits& limits,
    const NexusInterner& intern) {
  if (tmf.function() > static_cast<uint32_t>(scsi::TmfFunction::kItNexusLoss)) {
    return absl::InvalidArgumentError(absl::StrCat("function ", tmf.function()));
  }
  if (tmf.lun() > limits.max_lun) {
    return absl::InvalidArgumentError(absl::StrCat("lun ", tmf.lun()));
  }
  auto nexus = DecodeNexus(tmf.nexus(), limits, intern);
  if (!nexus.ok()) return nexus.status();
  scsi::TmfRequest r;
  r.nexus = std::move(*nexus);
  r.function = static_cast<scsi::TmfFunction>(tmf.function());
  r.lun = tmf.lun();
  r.referenced_tag = tmf.referenced_tag();
  return r;
}

void EncodeScsiResponse(const scsi::TaskResponse& response,
                        interconnect::ScsiCompletion* out) {
  out->set_status(static_cast<uint32_t>(response.status));
  out->set_sense(response.sense.data(), response.sense.size());
  out->set_wanted_data_in_length(response.wanted_data_in_length);
  out->set_wanted_data_out_length(response.wanted_data_out_length);
  out->set_aborted(response.aborted);
}

scsi::TaskResponse UnavailableResponse() {
  return CheckCondition(
      scsi::SenseKey::kNotReady,
      scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
}

scsi::TaskResponse InvalidFieldInCdbResponse() {
  return CheckCondition(scsi::SenseKey::kIllegalRequest,
                        scsi::asc::kInvalidFieldInCdb);
}

scsi::TaskResponse TaskSetFullResponse() {
  scsi::TaskResponse r;
  r.status = scsi::ScsiStatus::kTaskSetFull;
  return r;
}

scsi::TaskResponse InternalTargetFailureResponse() {
  return CheckCondition(scsi::SenseKey::kHardwareError,
                        scsi::asc::kInternalTargetFailure);
}

}  // namespace vadapter
