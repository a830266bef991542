// Internals of scsi::Engine shared by its translation units (engine.cc: task
// flow, unit attentions, task management; spc.cc: SPC commands; sbc.cc: block
// commands). Not part of the public interface.
#ifndef TARGET_SCSI_ENGINE_IMPL_H_
#define TARGET_SCSI_ENGINE_IMPL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "blockstore/block_store.h"
#include "target/scsi/engine.h"
#include "target/scsi/mode_pages.h"
#include "target/scsi/persistent_reservations.h"
#include "target/scsi/sense.h"

namespace scsi {
namespace internal {

struct LogicalUnit;
struct CommandInfo;

// Counts the tasks a TMF (or PREEMPT AND ABORT) waits for; runs done when
// the last one has completed. Starts at 1 (the issuer's guard).
class CompletionBarrier {
 public:
  explicit CompletionBarrier(absl::AnyInvocable<void() &&> done)
      : done_(std::move(done)) {}
  void Add() { pending_.fetch_add(1); }
  void Release() {
    if (pending_.fetch_sub(1) == 1) std::move(done_)();
  }

 private:
  std::atomic<int> pending_{1};
  absl::AnyInvocable<void() &&> done_;
};

struct Command {
  std::unique_ptr<Task> task;
  TaskCompletion done;
  std::shared_ptr<LogicalUnit> lu;  // null: the LUN does not exist
  std::string nexus_key;
  const CommandInfo* info = nullptr;
  // Why info is null (unsupported opcode or service action).
  SenseData lookup_error;
  // Scratch buffer for I/O the command does beyond data_in/data_out.
  std::vector<uint8_t> buffer;
  TaskResponse response;

  // Guarded by lu->mu.
  bool tracked = false;   // in lu->tasks
  // SAM-5 task set management: a dormant task (enabled = false) waits in
  // lu->tasks for older ORDERED / HEAD OF QUEUE tasks (or, if ORDERED itself,
  // for every older task) to complete; Complete() starts it.
  bool enabled = false;
  // The attribute the task set applies: the task's, or kSimple when
  // EngineOptions::honor_task_attributes is off.
  TaskAttribute attribute = TaskAttribute::kSimple;
  bool aborted = false;
  bool holds_range = false;
  uint64_t range_lba = 0;
  uint64_t range_blocks = 0;
  std::vector<std::shared_ptr<CompletionBarrier>> barriers;

  const uint8_t* cdb() const { return task->cdb.data(); }
  const ItNexus& nexus() const { return *task->nexus; }
};
using CommandPtr = std::shared_ptr<Command>;

struct RangeWaiter {
  CommandPtr cmd;
  uint64_t lba;
  uint64_t blocks;
  absl::AnyInvocable<void() &&> granted;
};

// RECEIVE COPY RESULTS (COPY STATUS) data of one EXTENDED COPY, kept per
// (I_T nexus, LIST IDENTIFIER) while it runs and, with LIST ID USAGE 00b,
// until read once; dropped on I_T nexus loss and logical unit reset.
struct CopyStatus {
  bool in_progress = true;
  bool failed = false;
  bool hold = true;
  uint16_t segments_processed = 0;
  uint64_t bytes_transferred = 0;
};

struct NexusState {
  std::shared_ptr<const ItNexus> nexus;
  std::deque<Asc> unit_attentions;
};

struct LogicalUnit {
  uint64_t lun = 0;
  std::shared_ptr<blockstore::BlockStore> store;
  blockstore::LunIdentity identity;
  LogicalUnitOptions options;
  uint32_t block_size = 512;
  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (physical block = block_size <<
  // physical_exponent).
  uint8_t physical_exponent = 0;
  uint32_t blocks_per_physical() const { return 1u << physical_exponent; }

  absl::Mutex mu;
  uint64_t num_blocks ABSL_GUARDED_BY(mu) = 0;  // last capacity seen
  std::map<std::string, NexusState> nexuses ABSL_GUARDED_BY(mu);
  // The task set, oldest first (HEAD OF QUEUE tasks enter at the front).
  std::list<CommandPtr> tasks ABSL_GUARDED_BY(mu);
  size_t dormant_tasks ABSL_GUARDED_BY(mu) = 0;
  ModePages mode ABSL_GUARDED_BY(mu){true};
  PrState pr ABSL_GUARDED_BY(mu);
  std::optional<std::string> spc2_holder ABSL_GUARDED_BY(mu);  // nexus key
  std::vector<CommandPtr> range_holders ABSL_GUARDED_BY(mu);
  std::deque<RangeWaiter> range_waiters ABSL_GUARDED_BY(mu);
  std::map<std::pair<std::string, uint8_t>, CopyStatus> copies ABSL_GUARDED_BY(mu);

  // Mirrors of mode page bits read on the I/O path without the lock.
  std::atomic<bool> descriptor_sense{false};
  std::atomic<bool> write_cache_enabled{true};
  std::atomic<bool> software_write_protect{false};

  uint64_t Capacity() ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    return num_blocks;
  }
};

enum class AluaClass : uint8_t {
  kAny,      // allowed in every ALUA state (INQUIRY, REPORT LUNS, ...)
  kStandby,  // allowed in active and standby states
  kActive,   // needs an active state
};

}  // namespace internal

class Engine::Impl {
 public:
  using CommandPtr = internal::CommandPtr;
  using Handler = void (Impl::*)(const CommandPtr&);

  explicit Impl(EngineOptions options);

  absl::Status AddLogicalUnit(uint64_t lun,
                              std::shared_ptr<blockstore::BlockStore> store,
                              LogicalUnitOptions options);
  absl::Status RemoveLogicalUnit(uint64_t lun);
  std::vector<uint64_t> Luns() const;
  void NotifyCapacityChanged(uint64_t lun);
  void NotifyAsymmetricAccessStateChanged();
  void NotifyReportedLunsChanged();
  void Submit(std::unique_ptr<Task> task, TaskCompletion done);
  void ManageTasks(TmfRequest request, TmfCompletion done);

  // --- engine.cc: task flow, completion and shared helpers ---
  // Runs an enabled task: unit attention, ALUA and reservation checks, then
  // the command's handler.
  void Start(const CommandPtr& cmd);
  void Complete(const CommandPtr& cmd, TaskResponse response);
  void CompleteGood(const CommandPtr& cmd) { Complete(cmd, TaskResponse{}); }
  void CompleteData(const CommandPtr& cmd, std::vector<uint8_t> data);
  void CompleteSense(const CommandPtr& cmd, const SenseData& sense);
  void CompleteConflict(const CommandPtr& cmd);
  void CompleteStorageError(const CommandPtr& cmd, const absl::Status& status,
                            bool write, uint64_t lba);
  // The sense CompleteStorageError reports for a failed BlockStore call.
  static SenseData StorageErrorSense(const absl::Status& status, bool write, uint64_t lba);
  SenseFormat FormatFor(const CommandPtr& cmd) const;
  // Runs fn once [lba, lba+blocks) is exclusively held by cmd (released when
  // cmd completes). fn is dropped and cmd completed as aborted if it is
  // aborted while waiting.
  void WithRangeLock(const CommandPtr& cmd, uint64_t lba, uint64_t blocks,
                     absl::AnyInvocable<void() &&> fn);
  bool Aborted(const CommandPtr& cmd);
  // Unit attention helpers; the caller holds lu.mu.
  static void QueueUa(internal::NexusState& ns, Asc code);
  static void QueueUaForAll(internal::LogicalUnit& lu, Asc code,
                            const std::string* except_key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lu.mu);
  // Removes a pending UA for nexus_key from every LU (LUICLR behaviour for
  // REPORTED LUNS DATA HAS CHANGED). Takes each LU's lock: hold none.
  void ClearUaEverywhere(const std::string& nexus_key, Asc code);
  AluaState AluaStateFor(uint64_t lun, const ItNexus& nexus) const;
  std::vector<std::shared_ptr<internal::LogicalUnit>> AllLus() const;
  // Whether the LunDirectory lists lun (false without a directory).
  bool InDirectory(uint64_t lun) const;
  const EngineOptions& options() const { return options_; }
  // Checks blocks against the maximum transfer length (INVALID FIELD IN CDB
  // at length_byte), then [lba, lba+blocks) against capacity (LBA OUT OF
  // RANGE).
  std::optional<SenseData> CheckRange(const CommandPtr& cmd, uint64_t lba,
                                      uint64_t blocks, uint16_t length_byte);
  // The data-out check shared by write-type commands: too little data is
  // an error; exact_only: any mismatch is.
  std::optional<SenseData> CheckDataOut(const CommandPtr& cmd, uint64_t wanted,
                                        bool exact_only);
  // For a write-type command of cdb_blocks logical blocks: how many whole
  // blocks of data-out it transfers (task.h: a longer data-out is used up to
  // the CDB's length, a shorter one only for the whole blocks it holds). A
  // trailing partial block is INVALID FIELD IN COMMAND INFORMATION UNIT and
  // nothing is written.
  std::optional<SenseData> DataOutBlocks(const CommandPtr& cmd, uint64_t cdb_blocks,
                                         uint64_t* blocks) const;
  bool WriteProtected(const internal::LogicalUnit& lu) const;
  // MAXIMUM WRITE SAME LENGTH as reported in VPD 0xB0 and enforced: the
  // option capped at the maximum transfer length.
  static uint64_t MaxWriteSameBlocks(const internal::LogicalUnit& lu);
  // WRITE ATOMIC(16) limits as reported in VPD 0xB0 and enforced, in logical
  // blocks: ATOMIC ALIGNMENT / ATOMIC TRANSFER LENGTH GRANULARITY (0: none)
  // and MAXIMUM ATOMIC TRANSFER LENGTH.
  static uint32_t AtomicUnitBlocks(const internal::LogicalUnit& lu);
  static uint32_t MaxAtomicTransferBlocks(const internal::LogicalUnit& lu);

  // --- spc.cc ---
  void TestUnitReady(const CommandPtr& cmd);
  void Inquiry(const CommandPtr& cmd);
  void ReportLuns(const CommandPtr& cmd);
  void RequestSense(const CommandPtr& cmd);
  void ModeSense(const CommandPtr& cmd);
  void ModeSelect(const CommandPtr& cmd);
  void ReportTargetPortGroups(const CommandPtr& cmd);
  void ReportSupportedOperationCodes(const CommandPtr& cmd);
  void PersistentReserveInCmd(const CommandPtr& cmd);
  void PersistentReserveOutCmd(const CommandPtr& cmd);
  void Reserve(const CommandPtr& cmd);
  void Release(const CommandPtr& cmd);
  void StartStopUnit(const CommandPtr& cmd);
  void PreventAllowMediumRemoval(const CommandPtr& cmd);
  void HandleMissingLun(const CommandPtr& cmd);
  // Standard INQUIRY data of lu; null: PQ 011b (no LU) unless connected_elsewhere,
  // then PQ 001b (a direct-access LU of the pair not connected here).
  std::vector<uint8_t> StandardInquiry(const internal::LogicalUnit* lu,
                                       bool connected_elsewhere = false) const;

  // --- sbc.cc ---
  void ReadCapacity10(const CommandPtr& cmd);
  void ReadCapacity16(const CommandPtr& cmd);
  void Read(const CommandPtr& cmd);
  void Write(const CommandPtr& cmd);
  void SynchronizeCache(const CommandPtr& cmd);
  void Verify(const CommandPtr& cmd);
  void WriteAndVerify(const CommandPtr& cmd);
  void WriteSame(const CommandPtr& cmd);
  void Unmap(const CommandPtr& cmd);
  void GetLbaStatus(const CommandPtr& cmd);
  void CompareAndWrite(const CommandPtr& cmd);
  void WriteAtomic16(const CommandPtr& cmd);
  void PreFetch(const CommandPtr& cmd);
  void OrWrite(const CommandPtr& cmd);
  void ReadDefectData(const CommandPtr& cmd);

  // --- copy_manager.cc ---
  void ExtendedCopy(const CommandPtr& cmd);
  void ReceiveCopyResults(const CommandPtr& cmd);

 private:
  // Aborts (marks) a task; the caller holds lu.mu. Waiting tasks are moved to
  // *to_complete to be completed as aborted once the lock is released.
  void AbortLocked(internal::LogicalUnit& lu, const CommandPtr& cmd,
                   const std::shared_ptr<internal::CompletionBarrier>& barrier,
                   std::vector<CommandPtr>* to_complete)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lu.mu);
  // Marks enabled the dormant tasks of lu that SAM-5 now lets run and
  // returns them (to Start() once lu.mu is released).
  static std::vector<CommandPtr> EnableDormantLocked(internal::LogicalUnit& lu)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lu.mu);
  // LOGICAL UNIT RESET semantics on lu with unit attention code.
  void ResetLu(internal::LogicalUnit& lu, Asc code,
               const std::shared_ptr<internal::CompletionBarrier>& barrier,
               std::vector<CommandPtr>* to_complete);
  void WriteSameChunks(const CommandPtr& cmd, uint64_t lba, uint64_t remaining,
                       bool fua);
  struct CopyJob;
  void RunCopySegment(const std::shared_ptr<CopyJob>& job, size_t segment,
                      uint64_t done_bytes);
  void FinishCopy(const std::shared_ptr<CopyJob>& job, std::optional<SenseData> error);
  void PersistPr(const CommandPtr& cmd, internal::LogicalUnit& lu, std::string state,
                 uint64_t sequence, TaskResponse response);

  const EngineOptions options_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::shared_ptr<internal::LogicalUnit>> lus_ ABSL_GUARDED_BY(mu_);
};

namespace internal {

struct CommandInfo {
  uint8_t opcode;
  int service_action;  // -1: none
  uint8_t cdb_length;
  const char* name;
  Engine::Impl::Handler handler;
  ReservationAccess reservation;
  bool allowed_under_spc2_reservation;
  AluaClass alua;
  bool ua_exempt;  // INQUIRY, REPORT LUNS, REQUEST SENSE
  std::array<uint8_t, 16> usage;  // CDB usage data (first cdb_length bytes)
  uint32_t recommended_timeout_seconds;
};

// The ALLOCATION LENGTH field of a data-in command's CDB (cdb padded to 16
// bytes), or nullopt for commands without one (READ, READ CAPACITY(10), ...).
std::optional<uint32_t> AllocationLength(const CommandInfo& info, const uint8_t* cdb);

// The supported commands (REPORT SUPPORTED OPERATION CODES lists them).
const std::vector<CommandInfo>& CommandTable();
// The entry for cdb, or nullptr with *sense set (INVALID COMMAND OPERATION
// CODE, or INVALID FIELD IN CDB for an unsupported service action).
const CommandInfo* LookupCommand(absl::Span<const uint8_t> cdb, SenseData* sense);

std::string NexusKey(const ItNexus& nexus);

}  // namespace internal
}  // namespace scsi

#endif  // TARGET_SCSI_ENGINE_IMPL_H_
