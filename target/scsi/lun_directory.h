// LunDirectory: the LUNs of the whole partner pair, as REPORT LUNS shows them.
//
// In a partner pair each node's Engine holds only the logical units it owns,
// yet an initiator must see every LUN of the pair through any target port
// (the routing layer sends a command to the owner). The engine asks the
// directory on every REPORT LUNS and reports the union of its answer and its
// own LUs. The HA layer backs it from the pair's LUN inventory; whoever
// changes that inventory calls Engine::NotifyReportedLunsChanged() so
// initiators get REPORTED LUNS DATA HAS CHANGED.
//
// A LUN the directory lists but the engine does not have is treated as
// "not currently connected" here: INQUIRY answers PERIPHERAL QUALIFIER 001b,
// other commands NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
// UNAVAILABLE STATE (04h/0Ch).
//
// Implementations must be thread-safe and must not block (the engine calls
// them on the submitting thread, holding no lock).
#ifndef TARGET_SCSI_LUN_DIRECTORY_H_
#define TARGET_SCSI_LUN_DIRECTORY_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace scsi {

class LunDirectory {
 public:
  virtual ~LunDirectory() = default;
  // Every LUN of the pair (< 16384; others are ignored), in any order,
  // duplicates allowed.
  virtual std::vector<uint64_t> ReportedLuns() const = 0;
};

// A directory holding a list the owner replaces with Set(). Thread-safe.
class StaticLunDirectory final : public LunDirectory {
 public:
  StaticLunDirectory() = default;
  explicit StaticLunDirectory(std::vector<uint64_t> luns) : luns_(std::move(luns)) {}

  void Set(std::vector<uint64_t> luns) {
    absl::MutexLock lock(&mu_);
    luns_ = std::move(luns);
  }
  std::vector<uint64_t> ReportedLuns() const override {
    absl::MutexLock lock(&mu_);
    return luns_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<uint64_t> luns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace scsi

#endif  // TARGET_SCSI_LUN_DIRECTORY_H_
