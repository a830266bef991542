// A small synchronous iSCSI initiator for tests, on libiscsi (a real initiator,
// not our own protocol code): log in as a given initiator name, run SCSI
// commands, read the status.
#ifndef TESTS_HARNESS_ISCSI_CLIENT_H_
#define TESTS_HARNESS_ISCSI_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct iscsi_context;
struct scsi_task;

namespace harness {

struct ContextDeleter {
  void operator()(iscsi_context* c) const;
};
using Initiator = std::unique_ptr<iscsi_context, ContextDeleter>;

struct TaskDeleter {
  void operator()(scsi_task* t) const;
};
using Task = std::unique_ptr<scsi_task, TaskDeleter>;

// Logs in to url (iscsi://portal/target/lun) as initiator_name and consumes the
// power-on unit attention. Null when the login fails. Log out (destroy it)
// while the target is still up: libiscsi retries a logout to a dead target.
Initiator Connect(const std::string& url, const std::string& initiator_name);

// Returns the SCSI status, or -1 when the command did not complete.
int Write16(iscsi_context* c, int lun, uint64_t lba, std::vector<uint8_t>& data,
            uint32_t block_size = 512);
int PrRegister(iscsi_context* c, int lun, uint64_t key, bool aptpl);
int PrReserve(iscsi_context* c, int lun, uint64_t key, int type);
int PrClear(iscsi_context* c, int lun, uint64_t key);
// Registered keys ({0xdead} when PR IN fails).
std::vector<uint64_t> PrReadKeys(iscsi_context* c, int lun);
// REPORT TARGET PORT GROUPS raw parameter data (empty when it fails).
std::vector<uint8_t> ReportTargetPortGroups(iscsi_context* c, int lun);

// n bytes of a pattern that depends on seed.
std::vector<uint8_t> Pattern(size_t n, uint8_t seed);

}  // namespace harness

#endif  // TESTS_HARNESS_ISCSI_CLIENT_H_
