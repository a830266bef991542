// One iSCSI session to one LUN, on libiscsi's asynchronous API, that outlives
// its connections.
//
// Commands (READ(16), WRITE(16)) are queued on the session and complete
// through callbacks run from Poll(). When the connection is lost, a command is
// unanswered for io_timeout, or the target asks for a logout, every command in
// flight completes with Outcome::kConnectionLost and Poll() logs in again
// (same initiator name and ISID, so the target reinstates the session and
// aborts what the old one left) with backoff, for up to reconnect_timeout.
// libiscsi's own automatic reconnect is off: it would replay commands
// silently, and the caller must know which ones lost their answer.
//
// Single-threaded. libiscsi writes with writev(), so the process must ignore
// SIGPIPE.
#ifndef TOOLS_VERIFYLOAD_SESSION_H_
#define TOOLS_VERIFYLOAD_SESSION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/verifyload/scsi_outcome.h"

struct iscsi_context;
struct scsi_task;

namespace verifyload {

struct IoResult {
  Outcome outcome = Outcome::kConnectionLost;
  std::string description;    // how the command ended, for messages
  std::vector<uint8_t> data;  // reads completed kGood: the blocks read
};

using IoCallback = absl::AnyInvocable<void(IoResult)>;

struct SessionOptions {
  std::string portal;  // "IP:PORT"
  std::string target;  // target IQN
  int lun = 0;
  std::string initiator;  // initiator IQN
  // ISID qualifier fields: the same for every connection of this session.
  uint32_t isid_random = 0;
  absl::Duration reconnect_timeout = absl::Seconds(60);
  absl::Duration io_timeout = absl::Seconds(30);
  // Bound of one connect + login attempt.
  absl::Duration attempt_timeout = absl::Seconds(5);
  // Asked while waiting to (re)connect; true gives up with kCancelled.
  std::function<bool()> should_abort = [] { return false; };
};

class Session {
 public:
  // Connects and logs in (retrying with backoff for up to
  // reconnect_timeout), then reads the capacity. kUnavailable when the target
  // could not be reached, kCancelled when should_abort said so.
  static absl::StatusOr<std::unique_ptr<Session>> Open(SessionOptions options);

  // Close()s.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // From READ CAPACITY(16) at login.
  uint32_t block_size() const { return block_size_; }
  uint64_t num_blocks() const { return num_blocks_; }

  // Queue WRITE(16) of data (whole blocks) at lba / READ(16) of blocks blocks
  // at lba. done runs from a later Poll() (also when the session is dead).
  void Write(uint64_t lba, std::vector<uint8_t> data, IoCallback done);
  void Read(uint64_t lba, uint32_t blocks, IoCallback done);

  // Waits up to max_wait for the target, services the connection, reconnects
  // when it broke, then runs the callbacks of completed commands. Returns
  // kUnavailable (could not reconnect) or kCancelled (should_abort) once the
  // session is dead; later calls return the same and commands fail at once.
  absl::Status Poll(absl::Duration max_wait);

  // Drops the connection without reconnecting; the commands in flight
  // complete (callbacks run) with kConnectionLost. The session is dead.
  void Abandon();

  // Logs out (waiting briefly) and closes. Callbacks of commands still in
  // flight are not run. Idempotent.
  void Close();

  size_t in_flight() const { return pending_.size(); }
  uint64_t reconnects() const { return reconnects_; }
  bool dead() const { return !dead_status_.ok(); }

 private:
  struct Pending {
    Session* session = nullptr;
    uint64_t id = 0;
    scsi_task* task = nullptr;
    bool is_write = false;
    std::vector<uint8_t> buffer;  // write data, alive until completion
    size_t expected_bytes = 0;    // reads
    absl::Time issued;
    IoCallback done;
  };

  explicit Session(SessionOptions options) : options_(std::move(options)) {}

  static void OnCommandDone(iscsi_context* ctx, int status, void* command_data,
                            void* private_data);
  static void OnConnected(iscsi_context* ctx, int status, void* command_data,
                          void* private_data);

  // Retries ConnectOnce with backoff until reconnect_timeout.
  absl::Status Connect();
  absl::Status ConnectOnce(absl::Time deadline);
  // Runs the service loop of ctx until *done or deadline; false when the
  // connection failed or the deadline passed.
  bool ServiceUntil(iscsi_context* ctx, const bool* done, absl::Time deadline);
  // Queues the command of p (a READ(16) or WRITE(16) at lba).
  void Submit(std::unique_ptr<Pending> p, uint64_t lba);
  void Complete(Pending* p, int status);
  void MarkBroken(const std::string& reason);
  // Destroys the connection; everything in flight completes kConnectionLost.
  void DropConnection();
  void Dispatch();

  SessionOptions options_;
  iscsi_context* ctx_ = nullptr;
  uint32_t block_size_ = 0;
  uint64_t num_blocks_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Pending>> pending_;
  std::vector<std::pair<IoCallback, IoResult>> completed_;
  bool broken_ = false;
  std::string broken_reason_;
  absl::Status dead_status_;
  uint64_t reconnects_ = 0;
  // Login in progress.
  bool connect_done_ = false;
  int connect_status_ = -1;
  std::string connect_error_;
};

}  // namespace verifyload

#endif  // TOOLS_VERIFYLOAD_SESSION_H_
