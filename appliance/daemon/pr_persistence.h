// Persistent reservations that survive restarts (APTPL): the SCSI engine's
// PrPersistence hook backed by the configuration database. Saves run on one
// worker thread, in order, so a command thread never waits for a synced write;
// the PR OUT command completes when its save has reached the database.
#ifndef APPLIANCE_DAEMON_PR_PERSISTENCE_H_
#define APPLIANCE_DAEMON_PR_PERSISTENCE_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "appliance/config/config_db.h"
#include "target/scsi/persistent_reservations.h"

namespace appliance::daemon {

class ConfigDbPrPersistence : public scsi::PrPersistence {
 public:
  explicit ConfigDbPrPersistence(std::shared_ptr<config::ConfigDb> db);
  // Finishes every queued save first.
  ~ConfigDbPrPersistence() override;

  void Save(const std::string& lu_key, uint64_t sequence, std::string state,
            SaveCallback done) override;
  absl::StatusOr<std::string> Load(const std::string& lu_key) override;

 private:
  void Work();

  const std::shared_ptr<config::ConfigDb> db_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace appliance::daemon

#endif  // APPLIANCE_DAEMON_PR_PERSISTENCE_H_
