#include "tests/harness/iscsi_client.h"

#include <unistd.h>

#include <cstdio>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

namespace harness {

void ContextDeleter::operator()(iscsi_context* c) const {
  iscsi_logout_sync(c);
  iscsi_destroy_context(c);
}

void TaskDeleter::operator()(scsi_task* t) const { scsi_free_scsi_task(t); }

namespace {

// One login attempt; logs libiscsi's reason when it fails.
Initiator ConnectOnce(const std::string& url, const std::string& initiator_name) {
  Initiator ctx(iscsi_create_context(initiator_name.c_str()));
  if (!ctx) return nullptr;
  iscsi_url* parsed = iscsi_parse_full_url(ctx.get(), url.c_str());
  if (parsed == nullptr) return nullptr;
  iscsi_set_targetname(ctx.get(), parsed->target);
  iscsi_set_session_type(ctx.get(), ISCSI_SESSION_NORMAL);
  const int lun = parsed->lun;
  int rc = iscsi_full_connect_sync(ctx.get(), parsed->portal, lun);
  iscsi_destroy_url(parsed);
  if (rc != 0) {
    fprintf(stderr, "iscsi_client: %s as %s: %s\n", url.c_str(),
            initiator_name.c_str(), iscsi_get_error(ctx.get()));
    return nullptr;
  }
  for (int i = 0; i < 5; ++i) {
    Task t(iscsi_testunitready_sync(ctx.get(), lun));
    if (t && t->status == SCSI_STATUS_GOOD) break;
  }
  return ctx;
}

}  // namespace

Initiator Connect(const std::string& url, const std::string& initiator_name) {
  // A real initiator retries a failed login; so does this one, three times
  // over about a second (each failure is logged with libiscsi's reason).
  for (int attempt = 0;; ++attempt) {
    Initiator ctx = ConnectOnce(url, initiator_name);
    if (ctx || attempt == 3) return ctx;
    usleep(300 * 1000);
  }
}

int Write16(iscsi_context* c, int lun, uint64_t lba, std::vector<uint8_t>& data,
            uint32_t block_size) {
  Task t(iscsi_write16_sync(c, lun, lba, data.data(), data.size(), block_size,
                            0, 0, 0, 0, 0));
  return t ? t->status : -1;
}

namespace {
int PrOut(iscsi_context* c, int lun, int action, int type,
          scsi_persistent_reserve_out_basic params) {
  Task t(iscsi_persistent_reserve_out_sync(c, lun, action, 0, type, &params));
  return t ? t->status : -1;
}
}  // namespace

int PrRegister(iscsi_context* c, int lun, uint64_t key, bool aptpl) {
  scsi_persistent_reserve_out_basic params{};
  params.service_action_reservation_key = key;
  params.aptpl = aptpl ? 1 : 0;
  return PrOut(c, lun, SCSI_PERSISTENT_RESERVE_REGISTER,
               SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, params);
}

int PrReserve(iscsi_context* c, int lun, uint64_t key, int type) {
  scsi_persistent_reserve_out_basic params{};
  params.reservation_key = key;
  return PrOut(c, lun, SCSI_PERSISTENT_RESERVE_RESERVE, type, params);
}

int PrClear(iscsi_context* c, int lun, uint64_t key) {
  scsi_persistent_reserve_out_basic params{};
  params.reservation_key = key;
  return PrOut(c, lun, SCSI_PERSISTENT_RESERVE_CLEAR,
               SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, params);
}

std::vector<uint64_t> PrReadKeys(iscsi_context* c, int lun) {
  Task t(iscsi_persistent_reserve_in_sync(c, lun,
                                          SCSI_PERSISTENT_RESERVE_READ_KEYS, 1024));
  if (!t || t->status != SCSI_STATUS_GOOD) return {0xdead};
  auto* keys = static_cast<scsi_persistent_reserve_in_read_keys*>(
      scsi_datain_unmarshall(t.get()));
  if (keys == nullptr) return {0xdead};
  return std::vector<uint64_t>(keys->keys, keys->keys + keys->num_keys);
}

std::vector<uint8_t> ReportTargetPortGroups(iscsi_context* c, int lun) {
  constexpr int kAllocation = 1024;
  // MAINTENANCE IN, REPORT TARGET PORT GROUPS (SPC-4 6.36), length format.
  unsigned char cdb[12] = {0xa3, 0x0a, 0, 0, 0, 0, 0, 0, kAllocation >> 8,
                           kAllocation & 0xff, 0, 0};
  scsi_task* raw = scsi_create_task(sizeof(cdb), cdb, SCSI_XFER_READ, kAllocation);
  if (raw == nullptr) return {};
  scsi_task* done = iscsi_scsi_command_sync(c, lun, raw, nullptr);
  if (done == nullptr) {
    scsi_free_scsi_task(raw);
    return {};
  }
  Task t(done);
  if (t->status != SCSI_STATUS_GOOD) return {};
  return std::vector<uint8_t>(t->datain.data, t->datain.data + t->datain.size);
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

}  // namespace harness
