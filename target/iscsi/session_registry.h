// The node's normal sessions, keyed by I_T nexus (initiator port + target
// port). It assigns TSIHs, enforces the session limit, and sequences session
// reinstatement: a new login for an initiator port that still has a session
// first drops the old connection and waits until the SCSI layer has finished
// the old nexus (TmfFunction::kItNexusLoss), so old and new tasks never mix.
#ifndef TARGET_ISCSI_SESSION_REGISTRY_H_
#define TARGET_ISCSI_SESSION_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace iscsi {

struct SessionRecord {
  std::string key;
  uint16_t tsih = 0;
  // Asks the owning connection to drop (posted to its loop).
  absl::AnyInvocable<void()> drop;
  // The nexus is being cleaned up (kItNexusLoss in flight).
  bool cleaning = false;
  bool ended = false;
  // Run when cleaning finishes (logins waiting to reinstate).
  std::vector<absl::AnyInvocable<void() &&>> waiters;
};

class SessionRegistry {
 public:
  explicit SessionRegistry(uint32_t max_sessions) : max_sessions_(max_sessions) {}

  enum class AdmitResult { kAdmitted, kMustWait, kTooManySessions };
  // Registers a new session for key. If an older session holds key, it is
  // asked to drop and kMustWait is returned: on_ready runs (from any thread)
  // when its cleanup is done; the new record is registered already.
  // drop asks the new session's connection to drop (posted to its loop); it is
  // called if a later login reinstates this session.
  AdmitResult Admit(const std::string& key, absl::AnyInvocable<void()> drop,
                    absl::AnyInvocable<void() &&> on_ready,
                    std::shared_ptr<SessionRecord>* record);
  // False once a later login has replaced record.
  bool IsCurrent(const std::shared_ptr<SessionRecord>& record);

  // Marks record as cleaning (its connection ended).
  void BeginCleanup(const std::shared_ptr<SessionRecord>& record);
  // Cleanup done: removes the record and runs waiters.
  void EndCleanup(const std::shared_ptr<SessionRecord>& record);

  bool TsihExists(uint16_t tsih);
  size_t size();

 private:
  absl::Mutex mu_;
  uint32_t max_sessions_;
  uint16_t next_tsih_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, std::shared_ptr<SessionRecord>> by_key_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint16_t, std::shared_ptr<SessionRecord>> by_tsih_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_SESSION_REGISTRY_H_
