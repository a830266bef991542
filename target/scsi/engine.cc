#include "target/scsi/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "target/scsi/bytes.h"
#include "target/scsi/engine_impl.h"

namespace scsi {

using internal::Command;
using internal::CommandInfo;
using internal::CommandPtr;
using internal::CompletionBarrier;
using internal::LogicalUnit;
using internal::NexusState;

namespace internal {

std::string NexusKey(const ItNexus& nexus) {
  return absl::StrCat(nexus.initiator_port_name, "|", nexus.relative_target_port_id);
}

namespace {

using I = Engine::Impl;
using RA = ReservationAccess;
constexpr uint32_t kTimeout = 30;

std::vector<CommandInfo> BuildTable() {
  std::vector<CommandInfo> t = {
      // SPC-4
      {0x00, -1, 6, "TEST UNIT READY", &I::TestUnitReady, RA::kAllowed, false,
       AluaClass::kActive, false, {0x00, 0, 0, 0, 0, 0}, kTimeout},
      {0x03, -1, 6, "REQUEST SENSE", &I::RequestSense, RA::kAllowed, true,
       AluaClass::kAny, true, {0x03, 0x01, 0, 0, 0xFF, 0}, kTimeout},
      {0x12, -1, 6, "INQUIRY", &I::Inquiry, RA::kAllowed, true, AluaClass::kAny,
       true, {0x12, 0x01, 0xFF, 0xFF, 0xFF, 0}, kTimeout},
      {0x15, -1, 6, "MODE SELECT(6)", &I::ModeSelect, RA::kWrite, false,
       AluaClass::kStandby, false, {0x15, 0x11, 0, 0, 0xFF, 0}, kTimeout},
      {0x16, -1, 6, "RESERVE(6)", &I::Reserve, RA::kAllowed, false,
       AluaClass::kStandby, false, {0x16, 0, 0, 0, 0, 0}, kTimeout},
      {0x17, -1, 6, "RELEASE(6)", &I::Release, RA::kAllowed, true,
       AluaClass::kStandby, false, {0x17, 0, 0, 0, 0, 0}, kTimeout},
      {0x1A, -1, 6, "MODE SENSE(6)", &I::ModeSense, RA::kRead, false,
       AluaClass::kStandby, false, {0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0}, kTimeout},
      {0x1B, -1, 6, "START STOP UNIT", &I::StartStopUnit, RA::kWrite, false,
       AluaClass::kActive, false, {0x1B, 0x01, 0, 0x0F, 0xF7, 0}, kTimeout},
      {0x1E, -1, 6, "PREVENT ALLOW MEDIUM REMOVAL", &I::PreventAllowMediumRemoval,
       RA::kWrite, true, AluaClass::kStandby, false, {0x1E, 0, 0, 0, 0x03, 0},
       kTimeout},
      {0x55, -1, 10, "MODE SELECT(10)", &I::ModeSelect, RA::kWrite, false,
       AluaClass::kStandby, false, {0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, kTimeout},
      {0x56, -1, 10, "RESERVE(10)", &I::Reserve, RA::kAllowed, false,
       AluaClass::kStandby, false, {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}, kTimeout},
      {0x57, -1, 10, "RELEASE(10)", &I::Release, RA::kAllowed, true,
       AluaClass::kStandby, false, {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}, kTimeout},
      {0x5A, -1, 10, "MODE SENSE(10)", &I::ModeSense, RA::kRead, false,
       AluaClass::kStandby, false, {0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0},
       kTimeout},
      {0x83, 0x00, 16, "EXTENDED COPY(LID1)", &I::ExtendedCopy, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, 60},
      {0x84, 0x00, 16, "RECEIVE COPY STATUS(LID1)", &I::ReceiveCopyResults, RA::kRead,
       false, AluaClass::kActive, false,
       {0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
      {0x84, 0x03, 16, "RECEIVE COPY OPERATING PARAMETERS", &I::ReceiveCopyResults,
       RA::kRead, false, AluaClass::kActive, false,
       {0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
      {0xA0, -1, 12, "REPORT LUNS", &I::ReportLuns, RA::kAllowed, true,
       AluaClass::kAny, true, {0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
       kTimeout},
      {0xA3, 0x0A, 12, "REPORT TARGET PORT GROUPS", &I::ReportTargetPortGroups,
       RA::kAllowed, true, AluaClass::kAny, false,
       {0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
      {0xA3, 0x0C, 12, "REPORT SUPPORTED OPERATION CODES",
       &I::ReportSupportedOperationCodes, RA::kAllowed, true, AluaClass::kAny, false,
       {0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
      // SBC-3
      {0x08, -1, 6, "READ(6)", &I::Read, RA::kRead, false, AluaClass::kActive, false,
       {0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0}, kTimeout},
      {0x0A, -1, 6, "WRITE(6)", &I::Write, RA::kWrite, false, AluaClass::kActive,
       false, {0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0}, kTimeout},
      {0x25, -1, 10, "READ CAPACITY(10)", &I::ReadCapacity10, RA::kRead, false,
       AluaClass::kActive, false, {0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0},
       kTimeout},
      {0x28, -1, 10, "READ(10)", &I::Read, RA::kRead, false, AluaClass::kActive,
       false, {0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, kTimeout},
      {0x2A, -1, 10, "WRITE(10)", &I::Write, RA::kWrite, false, AluaClass::kActive,
       false, {0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, kTimeout},
      {0x2E, -1, 10, "WRITE AND VERIFY(10)", &I::WriteAndVerify, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, kTimeout},
      {0x2F, -1, 10, "VERIFY(10)", &I::Verify, RA::kRead, false, AluaClass::kActive,
       false, {0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, kTimeout},
      {0x34, -1, 10, "PRE-FETCH(10)", &I::PreFetch, RA::kRead, false,
       AluaClass::kActive, false,
       {0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, kTimeout},
      {0x35, -1, 10, "SYNCHRONIZE CACHE(10)", &I::SynchronizeCache, RA::kWrite,
       false, AluaClass::kActive, false,
       {0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 60},
      {0x37, -1, 10, "READ DEFECT DATA(10)", &I::ReadDefectData, RA::kRead, false,
       AluaClass::kActive, false, {0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0},
       kTimeout},
      {0x41, -1, 10, "WRITE SAME(10)", &I::WriteSame, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 60},
      {0x42, -1, 10, "UNMAP", &I::Unmap, RA::kWrite, false, AluaClass::kActive,
       false, {0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0}, 60},
      {0x88, -1, 16, "READ(16)", &I::Read, RA::kRead, false, AluaClass::kActive,
       false,
       {0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x89, -1, 16, "COMPARE AND WRITE", &I::CompareAndWrite, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF,
        0x1F, 0},
       kTimeout},
      {0x8A, -1, 16, "WRITE(16)", &I::Write, RA::kWrite, false, AluaClass::kActive,
       false,
       {0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x8B, -1, 16, "ORWRITE(16)", &I::OrWrite, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x8E, -1, 16, "WRITE AND VERIFY(16)", &I::WriteAndVerify, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x8F, -1, 16, "VERIFY(16)", &I::Verify, RA::kRead, false, AluaClass::kActive,
       false,
       {0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x90, -1, 16, "PRE-FETCH(16)", &I::PreFetch, RA::kRead, false,
       AluaClass::kActive, false,
       {0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0x91, -1, 16, "SYNCHRONIZE CACHE(16)", &I::SynchronizeCache, RA::kWrite,
       false, AluaClass::kActive, false,
       {0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       60},
      {0x93, -1, 16, "WRITE SAME(16)", &I::WriteSame, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x1F, 0},
       60},
      {0x9C, -1, 16, "WRITE ATOMIC(16)", &I::WriteAtomic16, RA::kWrite, false,
       AluaClass::kActive, false,
       {0x9C, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF,
        0xFF, 0x1F, 0},
       kTimeout},
      {0x9E, 0x10, 16, "READ CAPACITY(16)", &I::ReadCapacity16, RA::kRead, false,
       AluaClass::kActive, false,
       {0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
      {0x9E, 0x12, 16, "GET LBA STATUS", &I::GetLbaStatus, RA::kRead, false,
       AluaClass::kActive, false,
       {0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0, 0},
       kTimeout},
      {0xA8, -1, 12, "READ(12)", &I::Read, RA::kRead, false, AluaClass::kActive,
       false, {0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0xAA, -1, 12, "WRITE(12)", &I::Write, RA::kWrite, false, AluaClass::kActive,
       false, {0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0xAE, -1, 12, "WRITE AND VERIFY(12)", &I::WriteAndVerify, RA::kWrite, false,
       AluaClass::kActive, false,
       {0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0xAF, -1, 12, "VERIFY(12)", &I::Verify, RA::kRead, false, AluaClass::kActive,
       false, {0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       kTimeout},
      {0xB7, -1, 12, "READ DEFECT DATA(12)", &I::ReadDefectData, RA::kRead, false,
       AluaClass::kActive, false,
       {0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kTimeout},
  };
  for (uint8_t sa = 0; sa <= 3; ++sa) {
    t.push_back({0x5E, sa, 10, "PERSISTENT RESERVE IN", &I::PersistentReserveInCmd,
                 RA::kAllowed, false, AluaClass::kStandby, false,
                 {0x5E, sa, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, kTimeout});
  }
  for (uint8_t sa = 0; sa <= 7; ++sa) {
    t.push_back({0x5F, sa, 10, "PERSISTENT RESERVE OUT", &I::PersistentReserveOutCmd,
                 RA::kAllowed, false, AluaClass::kStandby, false,
                 {0x5F, sa, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, kTimeout});
  }
  std::sort(t.begin(), t.end(), [](const CommandInfo& a, const CommandInfo& b) {
    return a.opcode != b.opcode ? a.opcode < b.opcode
                                : a.service_action < b.service_action;
  });
  return t;
}

}  // namespace

const std::vector<CommandInfo>& CommandTable() {
  static const auto* table = new std::vector<CommandInfo>(BuildTable());
  return *table;
}

std::optional<uint32_t> AllocationLength(const CommandInfo& info, const uint8_t* cdb) {
  switch (info.opcode) {
    case 0x03:  // REQUEST SENSE
    case 0x1A:  // MODE SENSE(6)
      return cdb[4];
    case 0x12:  // INQUIRY
      return GetBe16(&cdb[3]);
    case 0x37:  // READ DEFECT DATA(10)
    case 0x5A:  // MODE SENSE(10)
    case 0x5E:  // PERSISTENT RESERVE IN
      return GetBe16(&cdb[7]);
    case 0xA0:  // REPORT LUNS
    case 0xA3:  // REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES
    case 0xB7:  // READ DEFECT DATA(12)
      return GetBe32(&cdb[6]);
    case 0x84:  // RECEIVE COPY RESULTS
    case 0x9E:  // READ CAPACITY(16), GET LBA STATUS
      return GetBe32(&cdb[10]);
    default:
      return std::nullopt;
  }
}

const CommandInfo* LookupCommand(absl::Span<const uint8_t> cdb, SenseData* sense) {
  bool opcode_known = false;
  for (const auto& info : CommandTable()) {
    if (info.opcode != cdb[0]) continue;
    opcode_known = true;
    if (cdb.size() < info.cdb_length) break;
    if (info.service_action < 0 || info.service_action == (cdb[1] & 0x1F)) return &info;
  }
  if (opcode_known) {
    *sense = InvalidFieldInCdb(1, 4);
  } else {
    *sense = IllegalRequest(asc::kInvalidCommandOperationCode);
  }
  return nullptr;
}

}  // namespace internal

// ---------------------------------------------------------------------------
// Engine: thin forwarding to Impl.

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineOptions options) {
  if (!options.port_state) {
    options.port_state = std::make_shared<StaticPortStateProvider>();
  }
  return std::unique_ptr<Engine>(new Engine(std::make_unique<Impl>(std::move(options))));
}

absl::Status Engine::AddLogicalUnit(uint64_t lun,
                                    std::shared_ptr<blockstore::BlockStore> store,
                                    LogicalUnitOptions options) {
  return impl_->AddLogicalUnit(lun, std::move(store), std::move(options));
}
absl::Status Engine::RemoveLogicalUnit(uint64_t lun) { return impl_->RemoveLogicalUnit(lun); }
std::vector<uint64_t> Engine::Luns() const { return impl_->Luns(); }
void Engine::NotifyCapacityChanged(uint64_t lun) { impl_->NotifyCapacityChanged(lun); }
void Engine::NotifyAsymmetricAccessStateChanged() {
  impl_->NotifyAsymmetricAccessStateChanged();
}
void Engine::NotifyReportedLunsChanged() { impl_->NotifyReportedLunsChanged(); }
void Engine::Submit(std::unique_ptr<Task> task, TaskCompletion done) {
  impl_->Submit(std::move(task), std::move(done));
}
void Engine::ManageTasks(TmfRequest request, TmfCompletion done) {
  impl_->ManageTasks(std::move(request), std::move(done));
}

// ---------------------------------------------------------------------------
// Logical unit table.

Engine::Impl::Impl(EngineOptions options) : options_(std::move(options)) {}

absl::Status Engine::Impl::AddLogicalUnit(uint64_t lun,
                                          std::shared_ptr<blockstore::BlockStore> store,
                                          LogicalUnitOptions options) {
  if (lun >= 16384) return absl::InvalidArgumentError("LUN must be below 16384");
  if (!store) return absl::InvalidArgumentError("null BlockStore");
  const uint32_t bs = store->block_size();
  if (bs < 512 || (bs & (bs - 1)) != 0) {
    return absl::InvalidArgumentError("block size must be a power of two >= 512");
  }
  const uint32_t physical = options.physical_block_bytes;
  if (physical != 0 && (physical & (physical - 1)) != 0) {
    return absl::InvalidArgumentError("physical block size must be a power of two");
  }
  auto lu = std::make_shared<LogicalUnit>();
  lu->lun = lun;
  lu->identity = options.identity.value_or(store->identity());
  lu->block_size = bs;
  while ((uint64_t{bs} << lu->physical_exponent) < physical && lu->physical_exponent < 15) {
    ++lu->physical_exponent;
  }
  lu->store = std::move(store);
  {
    absl::MutexLock lock(&lu->mu);
    lu->num_blocks = lu->store->num_blocks();
    lu->mode = ModePages(options.write_cache_enabled);
    lu->write_cache_enabled = options.write_cache_enabled;
    if (options_.pr_persistence) {
      auto saved = options_.pr_persistence->Load(lu->identity.naa_id);
      if (saved.ok()) {
        auto state = ParsePrState(*saved);
        if (!state.ok()) return state.status();
        // Without APTPL the state does not survive; its save sequence does,
        // so later saves supersede the stored one.
        if (state->aptpl) {
          lu->pr = std::move(*state);
        } else {
          lu->pr.save_sequence = state->save_sequence;
        }
      } else if (!absl::IsNotFound(saved.status())) {
        return saved.status();
      }
    }
  }
  lu->options = std::move(options);
  std::vector<std::shared_ptr<LogicalUnit>> others;
  {
    absl::MutexLock lock(&mu_);
    if (lus_.count(lun) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("LUN ", lun, " exists"));
    }
    for (auto& [n, other] : lus_) others.push_back(other);
    lus_[lun] = lu;
  }
  for (auto& other : others) {
    absl::MutexLock lock(&other->mu);
    QueueUaForAll(*other, asc::kReportedLunsDataHasChanged, nullptr);
  }
  return absl::OkStatus();
}

absl::Status Engine::Impl::RemoveLogicalUnit(uint64_t lun) {
  std::vector<std::shared_ptr<LogicalUnit>> others;
  {
    absl::MutexLock lock(&mu_);
    if (lus_.erase(lun) == 0) return absl::NotFoundError(absl::StrCat("no LUN ", lun));
    for (auto& [n, other] : lus_) others.push_back(other);
  }
  for (auto& other : others) {
    absl::MutexLock lock(&other->mu);
    QueueUaForAll(*other, asc::kReportedLunsDataHasChanged, nullptr);
  }
  return absl::OkStatus();
}

std::vector<uint64_t> Engine::Impl::Luns() const {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> luns;
  for (const auto& [n, lu] : lus_) luns.push_back(n);
  return luns;
}

std::vector<std::shared_ptr<LogicalUnit>> Engine::Impl::AllLus() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<LogicalUnit>> out;
  for (const auto& [n, lu] : lus_) out.push_back(lu);
  return out;
}

void Engine::Impl::NotifyCapacityChanged(uint64_t lun) {
  std::shared_ptr<LogicalUnit> lu;
  {
    absl::MutexLock lock(&mu_);
    auto it = lus_.find(lun);
    if (it == lus_.end()) return;
    lu = it->second;
  }
  absl::MutexLock lock(&lu->mu);
  lu->num_blocks = lu->store->num_blocks();
  QueueUaForAll(*lu, asc::kCapacityDataHasChanged, nullptr);
}

void Engine::Impl::NotifyAsymmetricAccessStateChanged() {
  for (auto& lu : AllLus()) {
    absl::MutexLock lock(&lu->mu);
    QueueUaForAll(*lu, asc::kAsymmetricAccessStateChanged, nullptr);
  }
}

void Engine::Impl::NotifyReportedLunsChanged() {
  for (auto& lu : AllLus()) {
    absl::MutexLock lock(&lu->mu);
    QueueUaForAll(*lu, asc::kReportedLunsDataHasChanged, nullptr);
  }
}

bool Engine::Impl::InDirectory(uint64_t lun) const {
  if (!options_.lun_directory) return false;
  const auto luns = options_.lun_directory->ReportedLuns();
  return std::find(luns.begin(), luns.end(), lun) != luns.end();
}

// ---------------------------------------------------------------------------
// Unit attentions.

void Engine::Impl::QueueUa(NexusState& ns, Asc code) {
  auto& q = ns.unit_attentions;
  if (std::find(q.begin(), q.end(), code) == q.end()) q.push_back(code);
}

void Engine::Impl::QueueUaForAll(LogicalUnit& lu, Asc code,
                                 const std::string* except_key) {
  for (auto& [key, ns] : lu.nexuses) {
    if (except_key != nullptr && key == *except_key) continue;
    QueueUa(ns, code);
  }
}

void Engine::Impl::ClearUaEverywhere(const std::string& nexus_key, Asc code) {
  for (auto& lu : AllLus()) {
    absl::MutexLock lock(&lu->mu);
    auto it = lu->nexuses.find(nexus_key);
    if (it == lu->nexuses.end()) continue;
    auto& q = it->second.unit_attentions;
    q.erase(std::remove(q.begin(), q.end(), code), q.end());
  }
}

AluaState Engine::Impl::AluaStateFor(uint64_t lun, const ItNexus& nexus) const {
  for (const auto& group : options_.port_state->TargetPortGroups(lun)) {
    if (group.group_id == nexus.target_port_group) return group.state;
  }
  return AluaState::kActiveOptimized;
}

// ---------------------------------------------------------------------------
// Task flow.

void Engine::Impl::Submit(std::unique_ptr<Task> task, TaskCompletion done) {
  auto cmd = std::make_shared<Command>();
  if (!task->nexus) task->nexus = std::make_shared<const ItNexus>();
  cmd->task = std::move(task);
  cmd->done = std::move(done);
  cmd->nexus_key = internal::NexusKey(cmd->nexus());
  // Every transport hands over at least 16 CDB bytes; pad shorter ones so
  // fixed-offset field access stays in bounds.
  const size_t real_cdb_length = cmd->task->cdb.size();
  if (real_cdb_length < 16) cmd->task->cdb.resize(16, 0);

  const CommandInfo* info =
      real_cdb_length == 0
          ? nullptr
          : internal::LookupCommand(absl::MakeConstSpan(cmd->task->cdb), &cmd->lookup_error);
  if (real_cdb_length == 0) {
    cmd->lookup_error = IllegalRequest(asc::kInvalidCommandOperationCode);
  }
  cmd->info = info;

  std::shared_ptr<LogicalUnit> lu;
  {
    absl::MutexLock lock(&mu_);
    auto it = lus_.find(cmd->task->lun);
    if (it != lus_.end()) lu = it->second;
  }
  if (!lu) {
    HandleMissingLun(cmd);
    return;
  }
  cmd->lu = lu;

  // Enter the task set (SAM-5 8.6; ACA is not supported and runs as SIMPLE).
  {
    absl::MutexLock lock(&lu->mu);
    const TaskAttribute attribute =
        options_.honor_task_attributes ? cmd->task->attribute : TaskAttribute::kSimple;
    cmd->attribute = attribute;
    bool enabled = true;
    if (attribute == TaskAttribute::kHeadOfQueue) {
      lu->tasks.push_front(cmd);
    } else {
      for (const auto& older : lu->tasks) {
        const TaskAttribute a = older->attribute;
        if (attribute == TaskAttribute::kOrdered || a == TaskAttribute::kOrdered ||
            a == TaskAttribute::kHeadOfQueue) {
          enabled = false;
          break;
        }
      }
      lu->tasks.push_back(cmd);
    }
    cmd->tracked = true;
    cmd->enabled = enabled;
    if (!enabled) {
      ++lu->dormant_tasks;
      return;  // Complete() of an older task starts it.
    }
  }
  Start(cmd);
}

std::vector<CommandPtr> Engine::Impl::EnableDormantLocked(LogicalUnit& lu) {
  std::vector<CommandPtr> enabled;
  if (lu.dormant_tasks == 0) return enabled;
  bool older_task = false;
  bool older_ordered_or_head = false;
  for (const auto& t : lu.tasks) {
    const TaskAttribute a = t->attribute;
    if (!t->enabled && !t->aborted) {
      const bool may_run = a == TaskAttribute::kHeadOfQueue ||
                           (a == TaskAttribute::kOrdered ? !older_task
                                                         : !older_ordered_or_head);
      if (may_run) {
        t->enabled = true;
        --lu.dormant_tasks;
        enabled.push_back(t);
      }
    }
    older_task = true;
    older_ordered_or_head |= a == TaskAttribute::kOrdered || a == TaskAttribute::kHeadOfQueue;
  }
  return enabled;
}

void Engine::Impl::Start(const CommandPtr& cmd) {
  const CommandInfo* info = cmd->info;
  const std::shared_ptr<LogicalUnit>& lu = cmd->lu;
  std::optional<SenseData> error;
  bool conflict = false;
  bool clear_reported_luns_elsewhere = false;
  {
    absl::MutexLock lock(&lu->mu);
    const uint64_t capacity = lu->store->num_blocks();
    if (capacity != lu->num_blocks) {
      lu->num_blocks = capacity;
      QueueUaForAll(*lu, asc::kCapacityDataHasChanged, nullptr);
    }
    auto [it, first_contact] = lu->nexuses.try_emplace(cmd->nexus_key);
    NexusState& ns = it->second;
    ns.nexus = cmd->task->nexus;
    if (first_contact) ns.unit_attentions.push_back(asc::kPowerOnResetOrBusDeviceResetOccurred);

    const uint8_t control = cmd->task->cdb[(info ? info->cdb_length : 6) - 1];
    if (!(info && info->ua_exempt) && !ns.unit_attentions.empty()) {
      const Asc ua = ns.unit_attentions.front();
      ns.unit_attentions.pop_front();
      clear_reported_luns_elsewhere = ua == asc::kReportedLunsDataHasChanged;
      error = UnitAttention(ua);
    } else if (info == nullptr) {
      error = cmd->lookup_error;
    } else if (control & 0x05) {
      // NACA and LINK are not supported (NORMACA=0).
      error = InvalidFieldInCdb(static_cast<uint16_t>(info->cdb_length - 1),
                                (control & 0x04) ? 2 : 0);
    } else {
      const AluaState alua = AluaStateFor(lu->lun, cmd->nexus());
      const bool active =
          alua == AluaState::kActiveOptimized || alua == AluaState::kActiveNonOptimized;
      if (!active && info->alua != internal::AluaClass::kAny &&
          !(alua == AluaState::kStandby && info->alua == internal::AluaClass::kStandby)) {
        SenseData s;
        s.key = SenseKey::kNotReady;
        s.code = alua == AluaState::kTransitioning
                     ? asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition
                 : alua == AluaState::kStandby
                     ? asc::kLogicalUnitNotAccessibleTargetPortInStandbyState
                     : asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState;
        error = s;
      } else if (lu->spc2_holder && *lu->spc2_holder != cmd->nexus_key &&
                 !info->allowed_under_spc2_reservation) {
        conflict = true;
      } else if (PrConflicts(lu->pr, cmd->nexus(), info->reservation)) {
        conflict = true;
      }
    }
  }
  if (clear_reported_luns_elsewhere) {
    ClearUaEverywhere(cmd->nexus_key, asc::kReportedLunsDataHasChanged);
  }
  if (error) return CompleteSense(cmd, *error);
  if (conflict) return CompleteConflict(cmd);
  (this->*(info->handler))(cmd);
}

void Engine::Impl::Complete(const CommandPtr& cmd, TaskResponse response) {
  std::vector<std::shared_ptr<CompletionBarrier>> barriers;
  std::vector<internal::RangeWaiter> granted;
  std::vector<CommandPtr> to_start;
  bool aborted = false;
  if (cmd->lu) {
    LogicalUnit& lu = *cmd->lu;
    absl::MutexLock lock(&lu.mu);
    if (cmd->tracked) {
      lu.tasks.remove(cmd);
      cmd->tracked = false;
      if (!cmd->enabled) --lu.dormant_tasks;  // aborted while dormant
      to_start = EnableDormantLocked(lu);
    }
    aborted = cmd->aborted;
    barriers.swap(cmd->barriers);
    if (cmd->holds_range) {
      cmd->holds_range = false;
      lu.range_holders.erase(
          std::remove(lu.range_holders.begin(), lu.range_holders.end(), cmd),
          lu.range_holders.end());
      // Grant, in order, every waiter that overlaps neither a holder nor an
      // earlier waiter (FIFO among overlapping requests).
      std::vector<std::pair<uint64_t, uint64_t>> blocked;
      auto overlaps = [](uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
        return a < b + bn && b < a + an;
      };
      for (auto it = lu.range_waiters.begin(); it != lu.range_waiters.end();) {
        bool busy = false;
        for (const auto& h : lu.range_holders) {
          busy |= overlaps(it->lba, it->blocks, h->range_lba, h->range_blocks);
        }
        for (const auto& [b, bn] : blocked) busy |= overlaps(it->lba, it->blocks, b, bn);
        if (busy) {
          blocked.emplace_back(it->lba, it->blocks);
          ++it;
          continue;
        }
        it->cmd->holds_range = true;
        lu.range_holders.push_back(it->cmd);
        granted.push_back(std::move(*it));
        it = lu.range_waiters.erase(it);
      }
    }
  }
  if (aborted) {
    response = TaskResponse{};
    response.aborted = true;
  } else {
    // Data-in is what the command produced, limited by its ALLOCATION LENGTH;
    // that is the length it called for (task.h), unless the handler reported
    // one (READ: the CDB's transfer length). Then it is clipped to what the
    // initiator accepts; the transport reports the difference as overflow.
    if (cmd->info != nullptr) {
      const auto allocation = internal::AllocationLength(*cmd->info, cmd->cdb());
      if (allocation && response.data_in.size() > *allocation) {
        response.data_in.resize(*allocation);
      }
    }
    if (response.wanted_data_in_length == 0) {
      response.wanted_data_in_length = static_cast<uint32_t>(
          std::min<size_t>(response.data_in.size(), UINT32_MAX));
    }
    if (response.data_in.size() > cmd->task->expected_data_in_length) {
      response.data_in.resize(cmd->task->expected_data_in_length);
    }
  }
  if (cmd->done) std::move(cmd->done)(std::move(response));
  for (auto& g : granted) std::move(g.granted)();
  for (auto& b : barriers) b->Release();
  for (const auto& next : to_start) Start(next);
}

void Engine::Impl::CompleteData(const CommandPtr& cmd, std::vector<uint8_t> data) {
  TaskResponse r;
  r.data_in = std::move(data);
  Complete(cmd, std::move(r));
}

SenseFormat Engine::Impl::FormatFor(const CommandPtr& cmd) const {
  return cmd->lu && cmd->lu->descriptor_sense ? SenseFormat::kDescriptor
                                              : SenseFormat::kFixed;
}

void Engine::Impl::CompleteSense(const CommandPtr& cmd, const SenseData& sense) {
  TaskResponse r;
  r.status = ScsiStatus::kCheckCondition;
  r.sense = BuildSense(sense, FormatFor(cmd));
  r.wanted_data_out_length = cmd->response.wanted_data_out_length;
  Complete(cmd, std::move(r));
}

void Engine::Impl::CompleteConflict(const CommandPtr& cmd) {
  TaskResponse r;
  r.status = ScsiStatus::kReservationConflict;
  Complete(cmd, std::move(r));
}

void Engine::Impl::CompleteStorageError(const CommandPtr& cmd, const absl::Status& status,
                                        bool write, uint64_t lba) {
  CompleteSense(cmd, StorageErrorSense(status, write, lba));
}

SenseData Engine::Impl::StorageErrorSense(const absl::Status& status, bool write,
                                          uint64_t lba) {
  SenseData s;
  switch (status.code()) {
    case absl::StatusCode::kDataLoss:
      s.key = SenseKey::kMediumError;
      s.code = write ? asc::kWriteError : asc::kUnrecoveredReadError;
      s.information = lba;
      break;
    case absl::StatusCode::kResourceExhausted:
      s.key = SenseKey::kDataProtect;
      s.code = asc::kSpaceAllocationFailedWriteProtect;
      break;
    case absl::StatusCode::kOutOfRange:
      s = LbaOutOfRange();
      break;
    case absl::StatusCode::kUnavailable:
      // The store is closed or fenced (e.g. mid-takeover): tell the initiator
      // the path is transitioning so it retries and re-reads ALUA states.
      s.key = SenseKey::kNotReady;
      s.code = asc::kLogicalUnitNotAccessibleAsymmetricAccessStateTransition;
      break;
    default:
      s.key = SenseKey::kHardwareError;
      s.code = asc::kInternalTargetFailure;
      break;
  }
  return s;
}

bool Engine::Impl::Aborted(const CommandPtr& cmd) {
  if (!cmd->lu) return false;
  absl::MutexLock lock(&cmd->lu->mu);
  return cmd->aborted;
}

void Engine::Impl::WithRangeLock(const CommandPtr& cmd, uint64_t lba, uint64_t blocks,
                                 absl::AnyInvocable<void() &&> fn) {
  LogicalUnit& lu = *cmd->lu;
  {
    absl::MutexLock lock(&lu.mu);
    cmd->range_lba = lba;
    cmd->range_blocks = blocks;
    bool busy = false;
    auto overlaps = [&](uint64_t b, uint64_t bn) { return lba < b + bn && b < lba + blocks; };
    for (const auto& h : lu.range_holders) busy |= overlaps(h->range_lba, h->range_blocks);
    for (const auto& w : lu.range_waiters) busy |= overlaps(w.lba, w.blocks);
    if (busy) {
      lu.range_waiters.push_back({cmd, lba, blocks, std::move(fn)});
      return;
    }
    cmd->holds_range = true;
    lu.range_holders.push_back(cmd);
  }
  std::move(fn)();
}

std::optional<SenseData> Engine::Impl::CheckRange(const CommandPtr& cmd, uint64_t lba,
                                                  uint64_t blocks, uint16_t length_byte) {
  LogicalUnit& lu = *cmd->lu;
  const uint32_t max_bytes = lu.options.max_transfer_bytes;
  if (max_bytes != 0 && blocks > max_bytes / lu.block_size) {
    return InvalidFieldInCdb(length_byte);
  }
  const uint64_t capacity = lu.Capacity();
  if (lba > capacity || blocks > capacity - lba) return LbaOutOfRange();
  return std::nullopt;
}

std::optional<SenseData> Engine::Impl::CheckDataOut(const CommandPtr& cmd, uint64_t wanted,
                                                    bool exact_only) {
  cmd->response.wanted_data_out_length =
      static_cast<uint32_t>(std::min<uint64_t>(wanted, UINT32_MAX));
  const size_t have = cmd->task->data_out.size();
  if (have < wanted || (exact_only && have != wanted)) {
    SenseData s = IllegalRequest(asc::kInvalidFieldInCommandInformationUnit);
    return s;
  }
  return std::nullopt;
}

std::optional<SenseData> Engine::Impl::DataOutBlocks(const CommandPtr& cmd,
                                                     uint64_t cdb_blocks,
                                                     uint64_t* blocks) const {
  const uint32_t bs = cmd->lu->block_size;
  const uint64_t have = cmd->task->data_out.size();
  if (have >= cdb_blocks * bs) {
    *blocks = cdb_blocks;
    return std::nullopt;
  }
  if (have % bs != 0) return IllegalRequest(asc::kInvalidFieldInCommandInformationUnit);
  *blocks = have / bs;
  return std::nullopt;
}

bool Engine::Impl::WriteProtected(const LogicalUnit& lu) const {
  return lu.options.read_only || lu.software_write_protect;
}

uint32_t Engine::Impl::AtomicUnitBlocks(const LogicalUnit& lu) {
  return lu.blocks_per_physical() > 1 ? lu.blocks_per_physical() : 0;
}

uint32_t Engine::Impl::MaxAtomicTransferBlocks(const LogicalUnit& lu) {
  const uint64_t unit = lu.blocks_per_physical();
  uint64_t blocks = lu.options.max_atomic_transfer_bytes / lu.block_size;
  if (lu.options.max_transfer_bytes != 0) {
    blocks = std::min<uint64_t>(blocks, lu.options.max_transfer_bytes / lu.block_size);
  }
  blocks = std::min<uint64_t>(blocks, 0xFFFF);  // the CDB's TRANSFER LENGTH is 16 bits
  blocks -= blocks % unit;
  return static_cast<uint32_t>(std::max(blocks, unit));
}

uint64_t Engine::Impl::MaxWriteSameBlocks(const LogicalUnit& lu) {
  const uint64_t max_transfer_bytes = lu.options.max_transfer_bytes;
  uint64_t blocks = lu.options.max_write_same_blocks;
  if (max_transfer_bytes != 0) {
    blocks = std::min<uint64_t>(blocks, max_transfer_bytes / lu.block_size);
  }
  return blocks;
}

// ---------------------------------------------------------------------------
// Task management.

void Engine::Impl::AbortLocked(LogicalUnit& lu, const CommandPtr& cmd,
                               const std::shared_ptr<CompletionBarrier>& barrier,
                               std::vector<CommandPtr>* to_complete) {
  if (!cmd->tracked) return;
  cmd->aborted = true;
  if (barrier) {
    barrier->Add();
    cmd->barriers.push_back(barrier);
  }
  if (!cmd->enabled) {
    to_complete->push_back(cmd);  // never started: nothing to wait for
    return;
  }
  for (auto it = lu.range_waiters.begin(); it != lu.range_waiters.end(); ++it) {
    if (it->cmd == cmd) {
      lu.range_waiters.erase(it);
      to_complete->push_back(cmd);
      break;
    }
  }
}

void Engine::Impl::ResetLu(LogicalUnit& lu, Asc code,
                           const std::shared_ptr<CompletionBarrier>& barrier,
                           std::vector<CommandPtr>* to_complete) {
  absl::MutexLock lock(&lu.mu);
  std::vector<CommandPtr> tasks(lu.tasks.begin(), lu.tasks.end());
  for (const auto& t : tasks) AbortLocked(lu, t, barrier, to_complete);
  lu.spc2_holder.reset();
  for (auto it = lu.copies.begin(); it != lu.copies.end();) {
    it = it->second.in_progress ? std::next(it) : lu.copies.erase(it);
  }
  lu.mode.RestoreSaved();
  lu.descriptor_sense = lu.mode.descriptor_sense();
  lu.write_cache_enabled = lu.mode.write_cache_enabled();
  lu.software_write_protect = lu.mode.software_write_protect();
  QueueUaForAll(lu, code, nullptr);
}

void Engine::Impl::ManageTasks(TmfRequest request, TmfCompletion done) {
  if (!request.nexus) request.nexus = std::make_shared<const ItNexus>();
  const std::string key = internal::NexusKey(*request.nexus);
  auto result = std::make_shared<TmfResult>(TmfResult::kComplete);
  auto barrier = std::make_shared<CompletionBarrier>(
      [done = std::move(done), result]() mutable { std::move(done)(*result); });
  std::vector<CommandPtr> to_complete;

  std::shared_ptr<LogicalUnit> lu;
  {
    absl::MutexLock lock(&mu_);
    auto it = lus_.find(request.lun);
    if (it != lus_.end()) lu = it->second;
  }
  const bool lu_scoped = request.function == TmfFunction::kAbortTask ||
                         request.function == TmfFunction::kAbortTaskSet ||
                         request.function == TmfFunction::kClearTaskSet ||
                         request.function == TmfFunction::kClearAca ||
                         request.function == TmfFunction::kLogicalUnitReset;
  if (lu_scoped && !lu) {
    *result = TmfResult::kLunDoesNotExist;
    barrier->Release();
    return;
  }

  switch (request.function) {
    case TmfFunction::kAbortTask: {
      absl::MutexLock lock(&lu->mu);
      CommandPtr found;
      for (const auto& t : lu->tasks) {
        if (t->nexus_key == key && t->task->tag == request.referenced_tag && !t->aborted) {
          found = t;
          break;
        }
      }
      if (found) {
        AbortLocked(*lu, found, barrier, &to_complete);
      } else {
        *result = TmfResult::kTaskDoesNotExist;
      }
      break;
    }
    case TmfFunction::kAbortTaskSet:
    case TmfFunction::kClearTaskSet: {
      const bool clear = request.function == TmfFunction::kClearTaskSet;
      absl::MutexLock lock(&lu->mu);
      std::vector<CommandPtr> tasks(lu->tasks.begin(), lu->tasks.end());
      for (const auto& t : tasks) {
        if (!clear && t->nexus_key != key) continue;
        AbortLocked(*lu, t, barrier, &to_complete);
        if (clear && t->nexus_key != key) {
          auto it = lu->nexuses.find(t->nexus_key);
          if (it != lu->nexuses.end()) {
            QueueUa(it->second, asc::kCommandsClearedByAnotherInitiator);
          }
        }
      }
      break;
    }
    case TmfFunction::kClearAca:
      *result = TmfResult::kNotSupported;
      break;
    case TmfFunction::kLogicalUnitReset:
      ResetLu(*lu, asc::kBusDeviceResetFunctionOccurred, barrier, &to_complete);
      break;
    case TmfFunction::kTargetWarmReset:
    case TmfFunction::kTargetColdReset:
      for (auto& each : AllLus()) {
        ResetLu(*each,
                request.function == TmfFunction::kTargetColdReset
                    ? asc::kPowerOnOccurred
                    : asc::kPowerOnResetOrBusDeviceResetOccurred,
                barrier, &to_complete);
      }
      break;
    case TmfFunction::kItNexusLoss:
      for (auto& each : AllLus()) {
        absl::MutexLock lock(&each->mu);
        std::vector<CommandPtr> tasks(each->tasks.begin(), each->tasks.end());
        for (const auto& t : tasks) {
          if (t->nexus_key == key) AbortLocked(*each, t, barrier, &to_complete);
        }
        if (each->spc2_holder == key) each->spc2_holder.reset();
        for (auto it = each->copies.begin(); it != each->copies.end();) {
          it = it->first.first == key ? each->copies.erase(it) : std::next(it);
        }
        auto it = each->nexuses.find(key);
        if (it != each->nexuses.end()) QueueUa(it->second, asc::kItNexusLossOccurred);
      }
      break;
  }
  for (const auto& cmd : to_complete) Complete(cmd, TaskResponse{});
  barrier->Release();
}

}  // namespace scsi
