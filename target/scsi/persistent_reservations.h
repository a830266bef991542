// Persistent reservations (SPC-4 5.12, PERSISTENT RESERVE IN/OUT) as a pure
// state machine over PrState, kept apart from the engine so its rules can be
// read and tested on their own. The engine owns one PrState per logical unit,
// calls these functions under the LU's lock, then applies the side effects the
// result lists (unit attentions, aborted tasks, persistence).
//
// Registrations are per I_T nexus: the initiator port (iSCSI name + ISID) and
// the relative target port, or every target port with ALL_TG_PT. A
// registration made through SPEC_I_PT with a TransportID of format 00b names
// the initiator only and matches any of its ports.
#ifndef TARGET_SCSI_PERSISTENT_RESERVATIONS_H_
#define TARGET_SCSI_PERSISTENT_RESERVATIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "target/scsi/sense.h"
#include "target/scsi/task.h"

namespace scsi {

// SPC-4 Table 195 (TYPE field).
enum class PrType : uint8_t {
  kWriteExclusive = 0x1,
  kExclusiveAccess = 0x3,
  kWriteExclusiveRegistrantsOnly = 0x5,
  kExclusiveAccessRegistrantsOnly = 0x6,
  kWriteExclusiveAllRegistrants = 0x7,
  kExclusiveAccessAllRegistrants = 0x8,
};

struct PrRegistration {
  uint64_t key = 0;
  // iSCSI initiator port name ("iqn...,i,0x<ISID>"), or the bare initiator
  // name when name_only.
  std::string initiator_port_name;
  bool name_only = false;
  uint16_t relative_target_port_id = 0;
  bool all_target_ports = false;

  bool Matches(const ItNexus& nexus) const;
  // Same I_T nexus (or nexus set), regardless of key.
  bool SameNexus(const PrRegistration& other) const;
};

struct PrState {
  uint32_t generation = 0;
  // Activate persist through power loss (the state is saved and reloaded).
  bool aptpl = false;
  std::vector<PrRegistration> registrations;
  bool reserved = false;
  PrType type = PrType::kWriteExclusive;
  // The holder's nexus (key ignored); unused for all-registrants types.
  PrRegistration holder;
  // Increases with every save through PrPersistence (survives reloads, so a
  // reloaded LU's saves supersede the ones before the restart).
  uint64_t save_sequence = 0;

  // The registration of nexus, or nullptr.
  const PrRegistration* Find(const ItNexus& nexus) const;
  bool AllRegistrantsType() const;
  // Whether registration r holds the reservation.
  bool IsHolder(const PrRegistration& r) const;
  // The key READ RESERVATION reports (0 for all-registrants types).
  uint64_t HolderKey() const;
};

// How a command is treated in the presence of a persistent reservation held by
// another I_T nexus (SPC-4 5.12.1, Table 52 simplified to three classes).
enum class ReservationAccess : uint8_t {
  kAllowed,  // never conflicts (INQUIRY, REPORT LUNS, PR IN/OUT, ...)
  kRead,     // conflicts under exclusive-access types only
  kWrite,    // conflicts under every type for non-holders
};

// Whether nexus may run a command of class access.
bool PrConflicts(const PrState& state, const ItNexus& nexus,
                 ReservationAccess access);

struct PrOutResult {
  // CHECK CONDITION with this sense, or RESERVATION CONFLICT, or GOOD.
  std::optional<SenseData> sense;
  bool conflict = false;
  // Unit attentions to establish for every I_T nexus a registration matches
  // (the issuing nexus excluded).
  std::vector<std::pair<PrRegistration, Asc>> unit_attentions;
  // PREEMPT AND ABORT: abort the tasks of nexuses these registrations match.
  std::vector<PrRegistration> abort_tasks_of;
  // The state changed (persist it when APTPL was or is set).
  bool changed = false;
};

// Runs PERSISTENT RESERVE OUT (cdb: the 10-byte CDB; params: the data-out).
// ptpl_capable: a persistence hook is configured, so APTPL may be set.
PrOutResult PersistentReserveOut(PrState& state, const ItNexus& nexus,
                                 absl::Span<const uint8_t> cdb,
                                 absl::Span<const uint8_t> params,
                                 bool ptpl_capable);

// Runs PERSISTENT RESERVE IN; returns the full parameter data (the caller
// truncates to the allocation length) or sense.
struct PrInResult {
  std::optional<SenseData> sense;
  std::vector<uint8_t> data;
};
PrInResult PersistentReserveIn(const PrState& state,
                               absl::Span<const uint8_t> cdb, bool ptpl_capable);

// A stable text form of PrState for the persistence hook.
std::string SerializePrState(const PrState& state);
absl::StatusOr<PrState> ParsePrState(absl::string_view text);

// Persistence of PR state for APTPL (SPC-4 5.12.5). The daemon backs it with
// the configuration database; state is keyed by the LU's NAA identifier so it
// follows the LU to whichever node owns it.
class PrPersistence {
 public:
  using SaveCallback = absl::AnyInvocable<void(absl::Status) &&>;
  virtual ~PrPersistence() = default;

  // Stores state for lu_key. sequence increases with every save of that key:
  // keep the highest (saves may complete out of order). done runs once, on
  // any thread; it must not be called with locks held that the caller of
  // Engine methods could also take.
  virtual void Save(const std::string& lu_key, uint64_t sequence,
                    std::string state, SaveCallback done) = 0;
  // The last saved state, NotFound when none. Called when an LU is added.
  virtual absl::StatusOr<std::string> Load(const std::string& lu_key) = 0;
};

}  // namespace scsi

#endif  // TARGET_SCSI_PERSISTENT_RESERVATIONS_H_
