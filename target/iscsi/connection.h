// One iSCSI connection (and, since MaxConnections is 1 for now, its session):
// login, then full feature phase. Runs entirely on one event loop; SCSI
// completions from any thread are posted back to it and find the connection
// through a weak reference, so a completion arriving after the connection died
// is dropped safely.
#ifndef TARGET_ISCSI_CONNECTION_H_
#define TARGET_ISCSI_CONNECTION_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "target/iscsi/chap.h"
#include "target/iscsi/event_loop.h"
#include "target/iscsi/login.h"
#include "target/iscsi/options.h"
#include "target/iscsi/pdu.h"
#include "target/iscsi/session_registry.h"
#include "target/scsi/task.h"

namespace iscsi {

class Connection;

// State shared by every connection of a server (internal).
struct ServerContext {
  ServerContext(TargetOptions opts, std::shared_ptr<PortalDirectory> dir,
                scsi::TaskRouter& r)
      : options(std::move(opts)), directory(std::move(dir)), router(r),
        sessions(options.max_sessions) {}

  const TargetOptions options;
  const std::shared_ptr<PortalDirectory> directory;
  scsi::TaskRouter& router;
  ChapChallengeCache challenge_cache;
  SessionRegistry sessions;
  std::atomic<uint32_t> connection_count{0};
  // Counters for observability and tests.
  std::atomic<uint64_t> logins_completed{0};
  std::atomic<uint64_t> header_digest_logins{0};
  std::atomic<uint64_t> data_digest_logins{0};

  struct LiveConnection {
    std::weak_ptr<Connection> connection;
    std::shared_ptr<Poster> poster;
    uint16_t portal_group_tag;
  };
  absl::Mutex mu;
  std::map<Connection*, LiveConnection> live ABSL_GUARDED_BY(mu);
};

class Connection : public FdHandler, public std::enable_shared_from_this<Connection> {
 public:
  Connection(int fd, EventLoop* loop, std::shared_ptr<ServerContext> server,
             PortalConfig portal);
  ~Connection() override;

  // Loop thread: registers with the loop.
  void Start();

  void OnEvents(uint32_t epoll_events) override;
  void OnTick(absl::Time now) override;
  void OnShutdown() override;

  // Loop thread: sends an Async Message asking the initiator to log out within
  // seconds (AsyncEvent 1), e.g. before its LIF moves.
  void RequestLogout(uint16_t seconds);
  // Loop thread: closes the connection now.
  void Drop(const char* reason) { Close(reason); }

 private:
  // How a task whose data-out went wrong ends (RFC 7143 §11.4.7.2 iSCSI
  // conditions, sense key ABORTED COMMAND).
  struct DataOutFailure {
    uint8_t asc = 0;
    uint8_t ascq = 0;
  };
  struct R2tState {
    uint32_t offset = 0;
    uint32_t length = 0;
    uint32_t received = 0;
    uint32_t next_data_sn = 0;  // DataSN of the next Data-Out answering it
  };
  struct PendingTask {
    uint32_t itt = 0;
    uint32_t cmd_sn = 0;
    bool immediate = false;
    uint64_t lun_field = 0;
    bool read = false;
    bool write = false;
    uint32_t edtl = 0;
    std::optional<uint32_t> bidi_read_length;
    std::unique_ptr<scsi::Task> task;  // until submitted
    uint32_t received = 0;             // data-out bytes gathered
    uint32_t unsolicited_end = 0;      // unsolicited data covers [0, this)
    uint32_t unsolicited_next = 0;     // next unsolicited offset expected
    uint32_t next_r2t_offset = 0;      // start of the data not yet solicited
    uint32_t unsolicited_data_sn = 0;  // DataSN of the next unsolicited Data-Out
    bool unsolicited_open = false;     // unsolicited Data-Out still to come (no F yet)
    // Set when a Data-Out could not be used (lost PDU implied by its DataSN, bad
    // offset): the sense the task ends with once the initiator stops sending.
    std::optional<DataOutFailure> failure;
    uint32_t data_sn = 0;              // DataSN / R2TSN counter
    std::map<uint32_t, R2tState> r2ts;  // by TTT
    bool submitted = false;
  };

  // I/O.
  void HandleReadable();
  void HandleWritable();
  void UpdateInterest();
  void Send(const Bhs& bhs, std::vector<uint8_t> data = {},
            std::vector<uint8_t> ahs = {});
  // Sends one PDU whose data segment stays where the caller keeps it: with
  // nothing queued ahead, header, data and trailer go to the socket in one
  // sendmsg (the data is not copied); what the socket does not take, or
  // everything when output is already queued, is appended to out_.
  // Inside an event-loop round (a DeferScope), PDUs with small data segments
  // are gathered in out_ instead and sent together when the round ends.
  void SendSpan(const Bhs& bhs, absl::Span<const uint8_t> data,
                absl::Span<const uint8_t> ahs = {});
  // Sends what this round gathered (if the socket is not already backed up).
  void Uncork();
  void CloseAfterFlush();
  void Close(const char* reason);

  // Dispatch.
  void HandlePdu(Pdu pdu);
  void HandleLogin(const Pdu& pdu);
  void FinishLogin(LoginStateMachine::Step step);
  void EnterFullFeature();
  void HandleNopOut(const Pdu& pdu);
  void HandleScsiCommand(Pdu pdu);
  void HandleDataOut(Pdu pdu);
  // Ends a task whose data-out failed with CHECK CONDITION once every sequence
  // it has open (unsolicited burst, outstanding R2Ts) saw its final PDU.
  void MaybeEndFailedDataOut(PendingTask& t);
  void HandleTaskMgmt(const Pdu& pdu);
  void HandleText(const Pdu& pdu);
  void HandleLogout(const Pdu& pdu);
  void SendReject(const Pdu& pdu, RejectReason reason);

  // CmdSN window.
  bool AcceptCmdSn(bool immediate, uint32_t cmd_sn);
  void ReleaseCmdSlot(bool immediate);

  // Tasks.
  void SendR2ts(PendingTask& t);
  void Submit(PendingTask& t);
  void OnTaskComplete(uint32_t itt, scsi::TaskResponse response);
  void SendCheckCondition(uint32_t itt, uint8_t key, uint8_t asc, uint8_t ascq);
  void FinishTask(uint32_t itt);
  void SendTmfResponse(uint32_t itt, TmfResponseCode code);

  EventLoop* loop_;
  std::shared_ptr<ServerContext> server_;
  const PortalConfig portal_;
  int fd_;
  uint64_t watch_id_ = 0;
  bool closed_ = false;
  bool close_after_flush_ = false;
  bool reading_paused_ = false;
  bool want_write_ = false;
  bool corked_ = false;  // out_ holds this round's gathered PDUs, not yet sent

  PduReader reader_;
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  // SendSpan's header and trailer parts (kept to reuse their capacity).
  std::vector<uint8_t> pdu_head_;
  std::vector<uint8_t> pdu_tail_;
  bool header_digest_ = false;
  bool data_digest_ = false;

  enum class Phase { kLogin, kWaitingForSession, kFullFeature, kLoggedOut };
  Phase phase_ = Phase::kLogin;
  std::unique_ptr<LoginStateMachine> login_;
  std::optional<LoginStateMachine::Step> deferred_login_step_;
  absl::Time created_ = absl::Now();
  absl::Time last_rx_ = absl::Now();
  std::optional<uint32_t> ping_ttt_;
  absl::Time ping_sent_ = absl::InfinitePast();

  // Session state (single-connection sessions).
  bool discovery_ = false;
  SessionParams params_;
  std::string initiator_name_;
  std::string target_name_;
  uint16_t cid_ = 0;
  std::shared_ptr<const scsi::ItNexus> nexus_;
  std::shared_ptr<SessionRecord> session_;
  uint32_t stat_sn_ = 0;
  uint32_t exp_cmd_sn_ = 0;
  uint32_t max_cmd_sn_ = 0;
  uint32_t immediate_outstanding_ = 0;
  uint32_t next_ttt_ = 1;
  absl::flat_hash_map<uint32_t, PendingTask> tasks_;

  // Text request continuation (both directions).
  std::vector<uint8_t> text_in_;
  std::vector<uint8_t> text_out_;
  uint32_t text_ttt_ = kReservedTag;
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_CONNECTION_H_
