// scsi::Engine: the SCSI command engine (SPC-4 / SBC-3 block device server).
//
// It implements TaskRouter: a transport (or the partner virtual adapter)
// submits scsi::Tasks and task management functions; the engine executes them
// against each logical unit's blockstore::BlockStore and completes them from
// the store's callbacks, never blocking the submitting thread on I/O.
//
// It keeps, per logical unit: the task set (for ABORT TASK, ABORT TASK SET,
// CLEAR TASK SET, resets and I_T nexus loss), unit attentions per I_T nexus,
// mode pages, persistent and SPC-2 reservations, and LBA range locks that make
// COMPARE AND WRITE and WRITE ATOMIC(16) atomic against other writers. ALUA states come from a
// PortStateProvider; persistent reservations with APTPL are saved through a
// PrPersistence hook.
//
// Usage:
//   scsi::EngineOptions options;
//   options.port_state = provider;
//   auto engine = scsi::Engine::Create(std::move(options));
//   (*engine)->AddLogicalUnit(0, store);
//   router = engine->get();  // hand to the transport
//
// Thread-safe. Completions run on the submitting thread (commands that need no
// I/O, or stores that complete synchronously) or on the store's I/O threads.
#ifndef TARGET_SCSI_ENGINE_H_
#define TARGET_SCSI_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "blockstore/block_store.h"
#include "target/scsi/lun_directory.h"
#include "target/scsi/persistent_reservations.h"
#include "target/scsi/port_state.h"
#include "target/scsi/task.h"

namespace scsi {

struct LogicalUnitOptions {
  // Standard INQUIRY identification (space padded / truncated to 8/16/4).
  std::string vendor_id = "APPLIANC";
  std::string product_id = "SAN LUN";
  std::string product_revision = "0001";
  // Identity for VPD 0x80/0x83; unset: the store's identity().
  std::optional<blockstore::LunIdentity> identity;
  // Write-protected LU: writes fail with DATA PROTECT, WRITE PROTECTED.
  bool read_only = false;
  // Logical block provisioning (thin): LBPME, UNMAP, WRITE SAME with UNMAP,
  // GET LBA STATUS mapped/deallocated reporting. Deallocated blocks read as
  // zeros (LBPRZ=1).
  bool thin_provisioned = true;
  // Initial/default write cache state (caching mode page WCE). With WCE=0
  // every write is forced to FUA.
  bool write_cache_enabled = true;
  // Block limits (VPD 0xB0), in logical blocks. 0 max_transfer_bytes: no limit.
  uint32_t max_transfer_bytes = 8 * 1024 * 1024;
  uint32_t optimal_transfer_bytes = 1024 * 1024;
  uint8_t max_compare_and_write_blocks = 64;
  // WRITE ATOMIC(16) (SBC-4): MAXIMUM ATOMIC TRANSFER LENGTH in VPD 0xB0,
  // rounded down to whole physical blocks and capped at the maximum transfer
  // length; at least one physical block. An atomic write holds the LBA range
  // lock of its whole span, like COMPARE AND WRITE, so no other write of this
  // engine interleaves with it. ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH
  // GRANULARITY are the physical block (0, no constraint, when it is one
  // logical block); atomic boundaries are not supported (ATOMIC BOUNDARY 0).
  uint32_t max_atomic_transfer_bytes = 1024 * 1024;
  // Per UNMAP descriptor. Conformance tools treat more than 1M as insane, and
  // a descriptor holds the LBA range lock for its whole span.
  uint32_t max_unmap_blocks = 1u << 20;
  uint32_t max_unmap_descriptors = 256;
  // Reported and enforced as at most the maximum transfer length (in blocks):
  // initiators may WRITE as many blocks as they may WRITE SAME, and one WRITE
  // SAME should do no more work than the largest WRITE.
  uint32_t max_write_same_blocks = 1u << 16;
  // Optimal unmap granularity in blocks; raised to the physical block when
  // smaller (the granularity is aligned to LBA 0: UGAVALID=1, alignment 0).
  uint32_t unmap_granularity = 1;
  // Physical block size reported (READ CAPACITY(16) LOGICAL BLOCKS PER
  // PHYSICAL BLOCK EXPONENT, VPD 0xB0 granularities); the lowest aligned LBA
  // is 0. 0 (default) or any value up to the logical block size: one logical
  // block per physical block, as LIO fileio reports. Otherwise a power of two,
  // e.g. 4096 for a 512-byte LUN on 4 KiB-sector media.
  uint32_t physical_block_bytes = 0;
};

struct EngineOptions {
  // ALUA states; null: a StaticPortStateProvider with one active/optimized
  // group (id 1) holding relative target port 1.
  std::shared_ptr<PortStateProvider> port_state;
  // APTPL persistence; null: APTPL is not supported (PTPL_C=0).
  std::shared_ptr<PrPersistence> pr_persistence;
  // The partner pair's LUN inventory (lun_directory.h); null: REPORT LUNS
  // lists this engine's LUs only. When set, REPORT LUNS lists the union, and
  // a listed LUN this engine lacks is "not currently connected" (PQ=001b,
  // NOT READY 04h/0Ch) instead of "not supported" (PQ=011b, 25h/00h).
  std::shared_ptr<LunDirectory> lun_directory;
  // SAM-5 task set management of ORDERED and HEAD OF QUEUE tasks (VPD 0x86
  // HEADSUP/ORDSUP). Off by default: target/iscsi currently casts the RFC 7143
  // ATTR field (1 = SIMPLE, 2 = ORDERED, 3 = HEAD OF QUEUE) straight to
  // TaskAttribute (kSimple = 0, kOrdered = 1, ...), so every SIMPLE command of
  // a real initiator would arrive as kOrdered and run one at a time. Turn on
  // once the transport maps the attribute; off, every task runs as SIMPLE.
  bool honor_task_attributes = false;
  // PROTOCOL IDENTIFIER reported in VPD 0x83 port designators (5: iSCSI).
  uint8_t protocol_identifier = 0x5;
  // Identification reported for LUNs that do not exist (PQ=011b).
  std::string vendor_id = "APPLIANC";
  std::string product_id = "SAN LUN";
  std::string product_revision = "0001";
};

class Engine final : public TaskRouter {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineOptions options = {});
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Adds logical unit lun (< 16384) backed by store. Loads persisted PR state
  // (APTPL) if a hook is configured. Every I_T nexus gets REPORTED LUNS DATA
  // HAS CHANGED on the other LUs. AlreadyExists, InvalidArgument on errors.
  absl::Status AddLogicalUnit(uint64_t lun,
                              std::shared_ptr<blockstore::BlockStore> store,
                              LogicalUnitOptions options = {});
  // Removes lun. Tasks in flight complete normally. NotFound if absent.
  absl::Status RemoveLogicalUnit(uint64_t lun);
  std::vector<uint64_t> Luns() const;

  // Establishes CAPACITY DATA HAS CHANGED for every I_T nexus of lun (the
  // engine also notices on its own when the store's num_blocks() changes).
  void NotifyCapacityChanged(uint64_t lun);
  // Establishes ASYMMETRIC ACCESS STATE CHANGED on every LU for every nexus;
  // call it after the PortStateProvider's answer changed.
  void NotifyAsymmetricAccessStateChanged();
  // Establishes REPORTED LUNS DATA HAS CHANGED on every LU for every nexus;
  // call it after the LunDirectory's answer changed (AddLogicalUnit and
  // RemoveLogicalUnit raise it themselves). A nexus that has not yet
  // addressed any LU of this engine has nothing pending to be told.
  void NotifyReportedLunsChanged();

  void Submit(std::unique_ptr<Task> task, TaskCompletion done) override;
  void ManageTasks(TmfRequest request, TmfCompletion done) override;

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace scsi

#endif  // TARGET_SCSI_ENGINE_H_
