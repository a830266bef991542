#include "target/iscsi/connection.h"

#include "target/iscsi/task_attribute.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/defer_scope.h"
#include "target/iscsi/residual.h"
#include "target/iscsi/text.h"

namespace iscsi {
namespace {

// RFC 1982 serial number arithmetic on 32-bit sequence numbers.
bool SnLess(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }

constexpr size_t kPauseReadingAbove = 8 * 1024 * 1024;
// Within an event-loop round, PDUs whose data segment is at most
// kCorkMaxDataBytes are gathered (copied) and leave with one send when the
// round ends, while the gathered bytes stay within kCorkMaxBytes; larger data
// segments go out in place (SendSpan).
constexpr size_t kCorkMaxDataBytes = 16 * 1024;
constexpr size_t kCorkMaxBytes = 256 * 1024;

std::string HexIsid(const std::array<uint8_t, 6>& isid) {
  std::string s;
  for (uint8_t b : isid) absl::StrAppendFormat(&s, "%02x", b);
  return s;
}

std::vector<uint8_t> SenseSegment(const std::vector<uint8_t>& sense) {
  std::vector<uint8_t> out;
  out.reserve(sense.size() + 2);
  out.push_back(static_cast<uint8_t>(sense.size() >> 8));
  out.push_back(static_cast<uint8_t>(sense.size()));
  out.insert(out.end(), sense.begin(), sense.end());
  return out;
}

TmfResponseCode MapTmfResult(scsi::TmfResult r) {
  switch (r) {
    case scsi::TmfResult::kComplete: return TmfResponseCode::kComplete;
    case scsi::TmfResult::kTaskDoesNotExist: return TmfResponseCode::kTaskDoesNotExist;
    case scsi::TmfResult::kLunDoesNotExist: return TmfResponseCode::kLunDoesNotExist;
    case scsi::TmfResult::kNotSupported: return TmfResponseCode::kNotSupported;
    case scsi::TmfResult::kRejected: return TmfResponseCode::kRejected;
  }
  return TmfResponseCode::kRejected;
}

// Operational keys that may only be negotiated during login.
bool IsLoginOnlyKey(const std::string& k) {
  static const char* const kKeys[] = {
      "HeaderDigest",     "DataDigest",        "MaxConnections",
      "InitialR2T",       "ImmediateData",     "MaxBurstLength",
      "FirstBurstLength", "DefaultTime2Wait",  "DefaultTime2Retain",
      "MaxOutstandingR2T", "DataPDUInOrder",   "DataSequenceInOrder",
      "ErrorRecoveryLevel", "SessionType",     "InitiatorName",
      "TargetName",       "AuthMethod",        "TargetPortalGroupTag"};
  for (const char* key : kKeys) {
    if (k == key) return true;
  }
  return false;
}

}  // namespace

Connection::Connection(int fd, EventLoop* loop, std::shared_ptr<ServerContext> server,
                       PortalConfig portal)
    : loop_(loop), server_(std::move(server)), portal_(std::move(portal)), fd_(fd) {}

Connection::~Connection() {
  if (!closed_) {
    close(fd_);
    server_->connection_count--;
  }
}

void Connection::Start() {
  auto id = loop_->Watch(fd_, EPOLLIN | EPOLLRDHUP, shared_from_this());
  if (!id.ok()) {
    closed_ = true;
    close(fd_);
    server_->connection_count--;
    return;
  }
  watch_id_ = *id;
  absl::MutexLock lock(&server_->mu);
  server_->live[this] = {weak_from_this(), loop_->poster(), portal_.portal_group_tag};
}

// ---------------------------------------------------------------- I/O

void Connection::OnEvents(uint32_t ev) {
  if (closed_) return;
  if (ev & EPOLLOUT) HandleWritable();
  if (closed_) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) HandleReadable();
}

void Connection::HandleReadable() {
  uint8_t buf[65536];
  for (int rounds = 0; rounds < 16 && !closed_ && !reading_paused_ && !close_after_flush_;
       ++rounds) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n == 0) {
      Close("peer closed");
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      Close("recv error");
      return;
    }
    last_rx_ = absl::Now();
    absl::Span<const uint8_t> in(buf, static_cast<size_t>(n));
    while (!in.empty() && !closed_ && !close_after_flush_) {
      auto r = reader_.Feed(in);
      if (!r.ok()) {
        Close("framing error");
        return;
      }
      in.remove_prefix(r->consumed);
      if (r->pdu) HandlePdu(std::move(*r->pdu));
    }
  }
}

void Connection::HandleWritable() {
  while (out_pos_ < out_.size()) {
    const ssize_t n = send(fd_, out_.data() + out_pos_, out_.size() - out_pos_,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (out_pos_ > (1 << 20)) {
        out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(out_pos_));
        out_pos_ = 0;
      }
      UpdateInterest();
      return;
    }
    Close("send error");
    return;
  }
  out_.clear();
  out_pos_ = 0;
  if (close_after_flush_) {
    Close("closed after final response");
    return;
  }
  UpdateInterest();
}

void Connection::UpdateInterest() {
  if (closed_) return;
  const bool pending_out = out_pos_ < out_.size();
  const bool pause = out_.size() - out_pos_ > kPauseReadingAbove;
  const bool was_paused = reading_paused_;
  reading_paused_ = pause;
  uint32_t events = EPOLLRDHUP;
  if (!pause && !close_after_flush_) events |= EPOLLIN;
  if (pending_out) events |= EPOLLOUT;
  if (pending_out != want_write_ || pause != was_paused || close_after_flush_) {
    loop_->Modify(watch_id_, fd_, events);
  }
  want_write_ = pending_out;
  if (was_paused && !pause) {
    // Resume: data may be waiting in the socket buffer (edge cases with LT are
    // fine: level-triggered epoll reports it again).
  }
}

void Connection::Send(const Bhs& bhs, std::vector<uint8_t> data,
                      std::vector<uint8_t> ahs) {
  SendSpan(bhs, data, ahs);
}

void Connection::SendSpan(const Bhs& bhs, absl::Span<const uint8_t> data,
                          absl::Span<const uint8_t> ahs) {
  if (closed_) return;
  pdu_head_.clear();
  pdu_tail_.clear();
  if (!SerializePduHeader(bhs, ahs, data.size(), header_digest_, &pdu_head_).ok()) {
    Close("could not serialize a PDU");
    return;
  }
  SerializePduTrailer(data, data_digest_, &pdu_tail_);
  const absl::Span<const uint8_t> parts[] = {pdu_head_, data, pdu_tail_};
  const size_t pdu_bytes = pdu_head_.size() + data.size() + pdu_tail_.size();
  if (!want_write_ && data.size() <= kCorkMaxDataBytes &&
      out_.size() - out_pos_ + pdu_bytes <= kCorkMaxBytes &&
      (corked_ || out_pos_ >= out_.size()) && common::DeferScope::IsOpen()) {
    // More responses of this round may follow (a batch of completions): they
    // leave together when the round ends.
    for (const auto& part : parts) out_.insert(out_.end(), part.begin(), part.end());
    if (!corked_) {
      corked_ = true;
      common::DeferScope::Defer([weak = weak_from_this()] {
        if (auto c = weak.lock()) c->Uncork();
      });
    }
    return;
  }
  Uncork();  // what was gathered goes first
  if (closed_) return;
  size_t sent = 0;
  if (!want_write_ && out_pos_ >= out_.size()) {
    iovec iov[3];
    size_t count = 0;
    for (const auto& part : parts) {
      if (part.empty()) continue;
      iov[count].iov_base = const_cast<uint8_t*>(part.data());
      iov[count].iov_len = part.size();
      ++count;
    }
    msghdr msg = {};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n;
    do {
      n = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      Close("send error");
      return;
    }
    sent = n > 0 ? static_cast<size_t>(n) : 0;
  }
  // What the socket did not take waits in out_, in order.
  for (const auto& part : parts) {
    const size_t skip = std::min(sent, part.size());
    sent -= skip;
    out_.insert(out_.end(), part.begin() + skip, part.end());
  }
  if (!want_write_) HandleWritable();
}

void Connection::Uncork() {
  if (!corked_) return;
  corked_ = false;
  if (!closed_ && !want_write_) HandleWritable();
}

void Connection::CloseAfterFlush() {
  Uncork();
  if (closed_) return;
  close_after_flush_ = true;
  if (out_pos_ >= out_.size()) {
    Close("closed after final response");
  } else {
    UpdateInterest();
  }
}

void Connection::Close(const char* reason) {
  if (closed_) return;
  // What this round gathered would have been handed to the socket already
  // without corking (a peer that half-closed still reads it). A send error
  // there closes the connection itself.
  Uncork();
  if (closed_) return;
  closed_ = true;
  (void)reason;
  loop_->Unwatch(watch_id_, fd_);
  close(fd_);
  server_->connection_count--;
  {
    absl::MutexLock lock(&server_->mu);
    server_->live.erase(this);
  }
  tasks_.clear();  // late completions find nothing (and the weak ref is dead)
  if (session_ != nullptr) {
    auto record = std::move(session_);
    server_->sessions.BeginCleanup(record);
    if (nexus_ != nullptr && phase_ != Phase::kWaitingForSession) {
      // The I_T nexus is gone: the SCSI layer aborts its tasks and establishes
      // the unit attentions; only then may a reinstating login proceed.
      scsi::TmfRequest req;
      req.nexus = nexus_;
      req.function = scsi::TmfFunction::kItNexusLoss;
      std::shared_ptr<ServerContext> server = server_;
      server_->router.ManageTasks(std::move(req),
                                  [server, record](scsi::TmfResult) mutable {
                                    server->sessions.EndCleanup(record);
                                  });
    } else {
      server_->sessions.EndCleanup(record);
    }
  }
}

void Connection::OnShutdown() { Close("server shutdown"); }

void Connection::OnTick(absl::Time now) {
  if (closed_) return;
  const TargetOptions& o = server_->options;
  if (phase_ == Phase::kLogin || phase_ == Phase::kWaitingForSession) {
    if (now - created_ > o.login_timeout) Close("login timeout");
    return;
  }
  if (phase_ != Phase::kFullFeature || o.nop_in_interval <= absl::ZeroDuration()) return;
  if (ping_ttt_) {
    if (now - std::max(ping_sent_, last_rx_) > o.nop_in_timeout) {
      Close("NOP-In ping not answered");
    }
    return;
  }
  if (now - last_rx_ > o.nop_in_interval) {
    NopIn nop;
    nop.ttt = next_ttt_++;
    if (nop.ttt == kReservedTag) nop.ttt = next_ttt_++;
    nop.itt = kReservedTag;
    nop.stat_sn = stat_sn_;  // not advanced: no response to acknowledge
    nop.exp_cmd_sn = exp_cmd_sn_;
    nop.max_cmd_sn = max_cmd_sn_;
    ping_ttt_ = nop.ttt;
    ping_sent_ = now;
    Send(Encode(nop));
  }
}

void Connection::RequestLogout(uint16_t seconds) {
  if (closed_ || phase_ != Phase::kFullFeature) return;
  AsyncMessage msg;
  msg.async_event = static_cast<uint8_t>(AsyncEvent::kRequestLogout);
  msg.parameter3 = seconds;
  msg.stat_sn = stat_sn_++;
  msg.exp_cmd_sn = exp_cmd_sn_;
  msg.max_cmd_sn = max_cmd_sn_;
  Send(Encode(msg));
}

// ---------------------------------------------------------------- dispatch

void Connection::HandlePdu(Pdu pdu) {
  const auto op = static_cast<Opcode>(pdu.bhs.opcode());
  if (pdu.data_digest_error) {
    // The header is intact: reject the PDU. At ERL 0 a command that lost data
    // cannot complete, so the connection goes too.
    SendReject(pdu, RejectReason::kDataDigestError);
    if (op == Opcode::kScsiCommand || op == Opcode::kDataOut ||
        phase_ != Phase::kFullFeature) {
      CloseAfterFlush();
    }
    return;
  }
  switch (phase_) {
    case Phase::kLogin:
      if (op != Opcode::kLoginRequest) {
        Close("non-login PDU during login");
        return;
      }
      HandleLogin(pdu);
      return;
    case Phase::kWaitingForSession:
      Close("PDU while the login response is pending");
      return;
    case Phase::kLoggedOut:
      return;
    case Phase::kFullFeature:
      break;
  }
  switch (op) {
    case Opcode::kNopOut: HandleNopOut(pdu); break;
    case Opcode::kScsiCommand: HandleScsiCommand(std::move(pdu)); break;
    case Opcode::kDataOut: HandleDataOut(std::move(pdu)); break;
    case Opcode::kTaskMgmtRequest: HandleTaskMgmt(pdu); break;
    case Opcode::kTextRequest: HandleText(pdu); break;
    case Opcode::kLogoutRequest: HandleLogout(pdu); break;
    case Opcode::kSnackRequest:
      // ERL 0: no SNACK support (RFC 7143 §11.16).
      SendReject(pdu, RejectReason::kSnackReject);
      break;
    case Opcode::kLoginRequest:
    default:
      SendReject(pdu, RejectReason::kProtocolError);
      break;
  }
}

void Connection::SendReject(const Pdu& pdu, RejectReason reason) {
  Reject rej;
  rej.reason = static_cast<uint8_t>(reason);
  rej.stat_sn = stat_sn_++;
  rej.exp_cmd_sn = exp_cmd_sn_;
  rej.max_cmd_sn = max_cmd_sn_;
  Send(Encode(rej), std::vector<uint8_t>(pdu.bhs.bytes.begin(), pdu.bhs.bytes.end()));
}

// ---------------------------------------------------------------- login

void Connection::HandleLogin(const Pdu& pdu) {
  if (login_ == nullptr) {
    LoginStateMachine::Context ctx;
    ctx.options = &server_->options;
    ctx.directory = server_->directory.get();
    ctx.portal = portal_;
    ctx.challenge_cache = &server_->challenge_cache;
    login_ = std::make_unique<LoginStateMachine>(ctx);
    LoginRequest req;
    if (Decode(pdu.bhs, &req).ok()) {
      exp_cmd_sn_ = req.cmd_sn;
      max_cmd_sn_ = req.cmd_sn + server_->options.queue_depth - 1;
      stat_sn_ = 1;
    }
  }
  LoginStateMachine::Step step = login_->Handle(pdu);
  if (step.outcome != LoginStateMachine::Outcome::kFullFeature) {
    FinishLogin(std::move(step));
    return;
  }
  auto fail = [&](LoginStatus status) {
    step.outcome = LoginStateMachine::Outcome::kFailed;
    step.header.transit = false;
    step.header.nsg = 0;
    step.header.status_class = static_cast<uint16_t>(status) >> 8;
    step.header.status_detail = static_cast<uint16_t>(status) & 0xff;
    step.data.clear();
    FinishLogin(std::move(step));
  };
  if (login_->tsih() != 0) {
    // Adding a connection to an existing session: not supported yet
    // (MaxConnections=1), so either the session is full or unknown.
    fail(server_->sessions.TsihExists(login_->tsih()) ? LoginStatus::kTooManyConnections
                                                      : LoginStatus::kSessionDoesNotExist);
    return;
  }
  std::string key;
  if (login_->discovery()) {
    static std::atomic<uint64_t> discovery_counter{0};
    key = absl::StrCat("discovery#", discovery_counter++);
  } else {
    auto nexus = std::make_shared<scsi::ItNexus>();
    nexus->initiator_port_name =
        absl::StrCat(login_->initiator_name(), ",i,0x", HexIsid(login_->isid()));
    nexus->target_port_name = absl::StrCat(login_->target_name(), ",t,0x",
                                           absl::Hex(portal_.portal_group_tag, absl::kZeroPad4));
    nexus->relative_target_port_id = portal_.relative_target_port_id;
    nexus->target_port_group = portal_.target_port_group;
    key = absl::StrCat(nexus->initiator_port_name, "|", nexus->target_port_name);
    nexus_ = std::move(nexus);
  }
  std::weak_ptr<Connection> weak = weak_from_this();
  std::shared_ptr<Poster> poster = loop_->poster();
  auto drop = [weak, poster]() {
    poster->Post([weak]() {
      if (auto c = weak.lock()) c->Drop("session reinstated by a new login");
    });
  };
  auto ready = [weak, poster]() {
    poster->Post([weak]() {
      auto c = weak.lock();
      if (c == nullptr || c->closed_ || c->phase_ != Phase::kWaitingForSession) return;
      if (!c->server_->sessions.IsCurrent(c->session_)) {
        c->Close("superseded by a later login");
        return;
      }
      c->phase_ = Phase::kLogin;
      auto step = std::move(*c->deferred_login_step_);
      c->deferred_login_step_.reset();
      c->FinishLogin(std::move(step));
    });
  };
  phase_ = Phase::kWaitingForSession;
  deferred_login_step_ = std::move(step);
  switch (server_->sessions.Admit(key, drop, ready, &session_)) {
    case SessionRegistry::AdmitResult::kAdmitted: {
      phase_ = Phase::kLogin;
      auto s = std::move(*deferred_login_step_);
      deferred_login_step_.reset();
      FinishLogin(std::move(s));
      return;
    }
    case SessionRegistry::AdmitResult::kMustWait:
      return;  // `ready` continues once the old session is cleaned up
    case SessionRegistry::AdmitResult::kTooManySessions: {
      phase_ = Phase::kLogin;
      nexus_.reset();
      step = std::move(*deferred_login_step_);
      deferred_login_step_.reset();
      fail(LoginStatus::kOutOfResources);
      return;
    }
  }
}

void Connection::FinishLogin(LoginStateMachine::Step step) {
  LoginResponse& h = step.header;
  if (step.outcome == LoginStateMachine::Outcome::kFullFeature) {
    h.tsih = session_->tsih;
    const SessionParams& p = login_->params();
    server_->logins_completed++;
    if (p.header_digest == DigestType::kCrc32c) server_->header_digest_logins++;
    if (p.data_digest == DigestType::kCrc32c) server_->data_digest_logins++;
  }
  h.version_max = 0;
  h.version_active = 0;
  h.stat_sn = stat_sn_++;
  h.exp_cmd_sn = exp_cmd_sn_;
  h.max_cmd_sn = max_cmd_sn_;
  Send(Encode(h), std::move(step.data));
  switch (step.outcome) {
    case LoginStateMachine::Outcome::kContinue:
      return;
    case LoginStateMachine::Outcome::kFailed:
      nexus_.reset();
      CloseAfterFlush();
      return;
    case LoginStateMachine::Outcome::kFullFeature:
      EnterFullFeature();
      return;
  }
}

void Connection::EnterFullFeature() {
  phase_ = Phase::kFullFeature;
  params_ = login_->params();
  discovery_ = login_->discovery();
  initiator_name_ = login_->initiator_name();
  target_name_ = login_->target_name();
  cid_ = login_->cid();
  // Digests start with the first PDU after the final login response.
  header_digest_ = params_.header_digest == DigestType::kCrc32c;
  data_digest_ = params_.data_digest == DigestType::kCrc32c;
  PduReader::Limits limits;
  limits.max_data_segment_length = params_.target_max_recv_data_segment_length;
  limits.header_digest = header_digest_;
  limits.data_digest = data_digest_;
  reader_.set_limits(limits);
  login_.reset();
  last_rx_ = absl::Now();
}

// ---------------------------------------------------------------- CmdSN

bool Connection::AcceptCmdSn(bool immediate, uint32_t cmd_sn) {
  if (immediate) {
    if (immediate_outstanding_ >= server_->options.max_immediate_commands) return false;
    ++immediate_outstanding_;
    return true;
  }
  if (SnLess(cmd_sn, exp_cmd_sn_) || SnLess(max_cmd_sn_, cmd_sn)) return false;
  // One connection delivers in order; a gap cannot be filled later at ERL 0.
  exp_cmd_sn_ = cmd_sn + 1;
  return true;
}

void Connection::ReleaseCmdSlot(bool immediate) {
  if (immediate) {
    if (immediate_outstanding_ > 0) --immediate_outstanding_;
  } else {
    ++max_cmd_sn_;
  }
}

// ---------------------------------------------------------------- NOP

void Connection::HandleNopOut(const Pdu& pdu) {
  NopOut req;
  if (!Decode(pdu.bhs, &req).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  if (req.itt == kReservedTag) {
    // Answer to our NOP-In ping (or a one-way ping): no response.
    if (ping_ttt_ && req.ttt == *ping_ttt_) ping_ttt_.reset();
    return;
  }
  if (!AcceptCmdSn(req.immediate, req.cmd_sn)) {
    if (req.immediate) SendReject(pdu, RejectReason::kImmediateCommandReject);
    return;
  }
  ReleaseCmdSlot(req.immediate);
  NopIn rsp;
  rsp.lun = req.lun;
  rsp.itt = req.itt;
  rsp.ttt = kReservedTag;
  rsp.stat_sn = stat_sn_++;
  rsp.exp_cmd_sn = exp_cmd_sn_;
  rsp.max_cmd_sn = max_cmd_sn_;
  std::vector<uint8_t> echo = pdu.data;
  if (echo.size() > params_.initiator_max_recv_data_segment_length) {
    echo.resize(params_.initiator_max_recv_data_segment_length);
  }
  Send(Encode(rsp), std::move(echo));
}

// ---------------------------------------------------------------- SCSI

void Connection::SendCheckCondition(uint32_t itt, uint8_t key, uint8_t asc,
                                    uint8_t ascq) {
  std::vector<uint8_t> sense(18, 0);
  sense[0] = 0x70;
  sense[2] = key;
  sense[7] = 10;
  sense[12] = asc;
  sense[13] = ascq;
  ScsiResponse rsp;
  rsp.status = static_cast<uint8_t>(scsi::ScsiStatus::kCheckCondition);
  rsp.itt = itt;
  rsp.stat_sn = stat_sn_++;
  rsp.exp_cmd_sn = exp_cmd_sn_;
  rsp.max_cmd_sn = max_cmd_sn_;
  Send(Encode(rsp), SenseSegment(sense));
}

void Connection::HandleScsiCommand(Pdu pdu) {
  if (discovery_) {
    SendReject(pdu, RejectReason::kProtocolError);
    return;
  }
  ScsiCommand cmd;
  if (!Decode(pdu.bhs, &cmd).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  if (!AcceptCmdSn(cmd.immediate, cmd.cmd_sn)) {
    if (cmd.immediate) SendReject(pdu, RejectReason::kImmediateCommandReject);
    return;
  }
  auto reject = [&](RejectReason reason) {
    ReleaseCmdSlot(cmd.immediate);
    SendReject(pdu, reason);
  };
  auto ahs = ParseAhs(pdu.ahs);
  if (!ahs.ok()) return reject(RejectReason::kInvalidPduField);
  const uint32_t imm = static_cast<uint32_t>(pdu.data.size());
  if (tasks_.count(cmd.itt) > 0) return reject(RejectReason::kTaskInProgress);
  if (imm > 0 && !cmd.write) return reject(RejectReason::kProtocolError);
  if (imm > 0 && !params_.immediate_data) return reject(RejectReason::kProtocolError);
  if (imm > cmd.expected_data_transfer_length || imm > params_.first_burst_length) {
    return reject(RejectReason::kInvalidPduField);
  }
  if (cmd.write && !cmd.final_bit && params_.initial_r2t) {
    return reject(RejectReason::kProtocolError);
  }
  if (ahs->bidi_read_length && !(cmd.read && cmd.write)) {
    return reject(RejectReason::kInvalidPduField);
  }

  const uint32_t read_length =
      !cmd.read ? 0
                : (cmd.write ? ahs->bidi_read_length.value_or(0)
                             : cmd.expected_data_transfer_length);
  const uint32_t write_length = cmd.write ? cmd.expected_data_transfer_length : 0;
  if (write_length > server_->options.max_data_out_length ||
      read_length > server_->options.max_data_in_length) {
    // Too large to buffer: fail the command like a SCSI device would
    // (ILLEGAL REQUEST, INVALID FIELD IN CDB). Its unsolicited data, if any,
    // is discarded as data for an unknown task.
    ReleaseCmdSlot(cmd.immediate);
    SendCheckCondition(cmd.itt, 0x05, 0x24, 0x00);
    return;
  }

  PendingTask& t = tasks_[cmd.itt];
  t.itt = cmd.itt;
  t.cmd_sn = cmd.cmd_sn;
  t.immediate = cmd.immediate;
  t.lun_field = cmd.lun;
  t.read = cmd.read;
  t.write = cmd.write;
  t.edtl = cmd.expected_data_transfer_length;
  t.bidi_read_length = ahs->bidi_read_length;
  t.task = std::make_unique<scsi::Task>();
  scsi::Task& task = *t.task;
  task.nexus = nexus_;
  task.lun = DecodeLun(cmd.lun);
  task.cdb.assign(cmd.cdb.begin(), cmd.cdb.end());
  task.cdb.insert(task.cdb.end(), ahs->extended_cdb.begin(), ahs->extended_cdb.end());
  task.attribute = TaskAttributeFromIscsi(cmd.attribute);
  task.tag = cmd.itt;
  task.expected_data_in_length = read_length;
  if (write_length > 0) {
    task.data_out.resize(write_length);
    std::copy(pdu.data.begin(), pdu.data.end(), task.data_out.begin());
    t.received = imm;
    t.unsolicited_end =
        cmd.final_bit ? imm : std::min(params_.first_burst_length, write_length);
    t.unsolicited_next = imm;
    t.unsolicited_open = !cmd.final_bit;
    t.next_r2t_offset = t.unsolicited_end;
  }
  if (t.received < write_length) {
    SendR2ts(t);
  } else {
    Submit(t);
  }
}

void Connection::SendR2ts(PendingTask& t) {
  while (t.r2ts.size() < params_.max_outstanding_r2t && t.next_r2t_offset < t.edtl) {
    R2t r2t;
    r2t.lun = t.lun_field;
    r2t.itt = t.itt;
    r2t.ttt = next_ttt_++;
    if (r2t.ttt == kReservedTag) r2t.ttt = next_ttt_++;
    r2t.stat_sn = stat_sn_;
    r2t.exp_cmd_sn = exp_cmd_sn_;
    r2t.max_cmd_sn = max_cmd_sn_;
    r2t.r2t_sn = t.data_sn++;
    r2t.buffer_offset = t.next_r2t_offset;
    r2t.desired_data_transfer_length =
        std::min(params_.max_burst_length, t.edtl - t.next_r2t_offset);
    t.r2ts[r2t.ttt] = {r2t.buffer_offset, r2t.desired_data_transfer_length, 0};
    t.next_r2t_offset += r2t.desired_data_transfer_length;
    Send(Encode(r2t));
  }
}

void Connection::HandleDataOut(Pdu pdu) {
  DataOut d;
  if (!Decode(pdu.bhs, &d).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  auto it = tasks_.find(d.itt);
  if (it == tasks_.end() || it->second.submitted || it->second.task == nullptr) {
    return;  // data for an aborted or failed task: discard
  }
  PendingTask& t = it->second;
  const uint32_t len = static_cast<uint32_t>(pdu.data.size());
  // Each sequence (the unsolicited burst, or the answer to one R2T) numbers its
  // Data-Out PDUs from 0. An out-of-order DataSN means an earlier PDU was lost
  // to a digest error (RFC 7143 §7.4). Without recovery R2Ts (ERL 0) the task
  // ends with CHECK CONDITION, "protocol service CRC error", after the
  // initiator has sent all its data (§7.8.2); the connection stays up.
  constexpr DataOutFailure kCrcError{0x47, 0x05};
  constexpr DataOutFailure kUnexpectedUnsolicited{0x0c, 0x0c};
  constexpr DataOutFailure kIncorrectAmount{0x0c, 0x0d};
  std::optional<DataOutFailure> failure;
  if (t.failure) {
    // Already failed: only the end of each sequence matters now.
  } else if (d.ttt == kReservedTag) {
    if (d.data_sn != t.unsolicited_data_sn) {
      failure = kCrcError;
    } else if (d.buffer_offset != t.unsolicited_next ||
               uint64_t{d.buffer_offset} + len > t.unsolicited_end) {
      failure = kUnexpectedUnsolicited;
    } else {
      ++t.unsolicited_data_sn;
      t.unsolicited_next += len;
      // The burst is min(FirstBurstLength, EDTL): ending it early leaves a hole
      // no R2T will ever cover.
      if (d.final_bit && t.unsolicited_next != t.unsolicited_end) failure = kIncorrectAmount;
    }
  } else {
    auto r = t.r2ts.find(d.ttt);
    if (r == t.r2ts.end()) {
      failure = kIncorrectAmount;
    } else if (d.data_sn != r->second.next_data_sn) {
      failure = kCrcError;
    } else if (d.buffer_offset != r->second.offset + r->second.received ||
               uint64_t{r->second.received} + len > r->second.length) {
      failure = kIncorrectAmount;
    } else {
      ++r->second.next_data_sn;
      r->second.received += len;
      if (d.final_bit && r->second.received != r->second.length) failure = kIncorrectAmount;
      if (r->second.received == r->second.length) t.r2ts.erase(r);
    }
  }
  if (d.final_bit) {
    if (d.ttt == kReservedTag) {
      t.unsolicited_open = false;
    } else {
      t.r2ts.erase(d.ttt);
    }
  }
  if (failure) t.failure = failure;
  if (t.failure) {
    MaybeEndFailedDataOut(t);
    return;
  }
  if (len == 0) return;
  std::copy(pdu.data.begin(), pdu.data.end(),
            t.task->data_out.begin() + d.buffer_offset);
  t.received += len;
  if (t.received == t.edtl) {
    Submit(t);
  } else {
    SendR2ts(t);
  }
}

void Connection::MaybeEndFailedDataOut(PendingTask& t) {
  if (t.unsolicited_open || !t.r2ts.empty()) return;
  const uint32_t itt = t.itt;
  const DataOutFailure f = *t.failure;
  FinishTask(itt);
  SendCheckCondition(itt, /*ABORTED COMMAND*/ 0x0b, f.asc, f.ascq);
}

void Connection::Submit(PendingTask& t) {
  t.submitted = true;
  std::unique_ptr<scsi::Task> task = std::move(t.task);
  std::weak_ptr<Connection> weak = weak_from_this();
  std::shared_ptr<Poster> poster = loop_->poster();
  const uint32_t itt = t.itt;
  server_->router.Submit(
      std::move(task), [weak, poster, itt](scsi::TaskResponse response) mutable {
        poster->Post([weak, itt, response = std::move(response)]() mutable {
          if (auto c = weak.lock()) c->OnTaskComplete(itt, std::move(response));
        });
      });
}

void Connection::FinishTask(uint32_t itt) {
  auto it = tasks_.find(itt);
  if (it == tasks_.end()) return;
  ReleaseCmdSlot(it->second.immediate);
  tasks_.erase(it);
}

void Connection::OnTaskComplete(uint32_t itt, scsi::TaskResponse r) {
  if (closed_) return;
  auto it = tasks_.find(itt);
  if (it == tasks_.end() || !it->second.submitted) return;
  const PendingTask t = std::move(it->second);
  FinishTask(itt);
  if (r.aborted) return;  // task management answers for it

  // RFC 7143 §11.4.5: transfer min(expected, wanted) in each direction and
  // report the difference as overflow (the command wanted more than the
  // initiator's Expected Data Transfer Length) or underflow (less).
  const uint32_t read_expected =
      t.read ? (t.write ? t.bidi_read_length.value_or(0) : t.edtl) : 0;
  std::vector<uint8_t>& data = r.data_in;
  // An executor that returns more than asked (or reports the length it would
  // have returned) is overflow; the initiator never gets more than it expects.
  const uint32_t read_wanted = static_cast<uint32_t>(std::min<uint64_t>(
      std::max<uint64_t>(r.wanted_data_in_length, data.size()), UINT32_MAX));
  if (data.size() > read_expected) data.resize(read_expected);
  const uint32_t data_len = static_cast<uint32_t>(data.size());
  const Residual read_residual =
      t.read ? ComputeResidual(read_expected, read_wanted, data_len) : Residual();
  // Write residual from what the command wanted vs what the initiator sent: the
  // command consumed min(wanted, EDTL) of it.
  Residual write_residual;
  if (t.write && r.wanted_data_out_length != 0) {
    write_residual = ComputeResidual(t.edtl, r.wanted_data_out_length,
                                     std::min(t.edtl, r.wanted_data_out_length));
  }
  const bool status_in_data = r.sense.empty() && data_len > 0 && !t.write;

  uint32_t data_sn = t.data_sn;
  const uint32_t max_pdu = std::max<uint32_t>(512, params_.initiator_max_recv_data_segment_length);
  uint32_t offset = 0;
  uint32_t burst_used = 0;
  while (offset < data_len) {
    const uint32_t n = std::min({max_pdu, data_len - offset,
                                 params_.max_burst_length - burst_used});
    DataIn d;
    d.lun = t.lun_field;
    d.itt = t.itt;
    d.ttt = kReservedTag;
    d.exp_cmd_sn = exp_cmd_sn_;
    d.max_cmd_sn = max_cmd_sn_;
    d.data_sn = data_sn++;
    d.buffer_offset = offset;
    burst_used += n;
    const bool last = offset + n == data_len;
    d.final_bit = last || burst_used == params_.max_burst_length;
    if (burst_used == params_.max_burst_length) burst_used = 0;
    if (last && status_in_data) {
      d.status_present = true;
      d.status = static_cast<uint8_t>(r.status);
      d.stat_sn = stat_sn_++;
      d.overflow = read_residual.overflow;
      d.underflow = read_residual.underflow;
      d.residual_count = read_residual.count;
    }
    SendSpan(Encode(d), absl::MakeConstSpan(data).subspan(offset, n));
    offset += n;
  }
  if (status_in_data) return;

  ScsiResponse rsp;
  rsp.response = 0;  // command completed at target
  rsp.status = static_cast<uint8_t>(r.status);
  rsp.itt = t.itt;
  rsp.stat_sn = stat_sn_++;
  rsp.exp_cmd_sn = exp_cmd_sn_;
  rsp.max_cmd_sn = max_cmd_sn_;
  rsp.exp_data_sn = data_sn;
  if (t.write) {
    rsp.overflow = write_residual.overflow;
    rsp.underflow = write_residual.underflow;
    rsp.residual_count = write_residual.count;
    if (t.read) {
      rsp.bidi_overflow = read_residual.overflow;
      rsp.bidi_underflow = read_residual.underflow;
      rsp.bidi_read_residual_count = read_residual.count;
    }
  } else if (t.read) {
    rsp.overflow = read_residual.overflow;
    rsp.underflow = read_residual.underflow;
    rsp.residual_count = read_residual.count;
  }
  Send(Encode(rsp), r.sense.empty() ? std::vector<uint8_t>() : SenseSegment(r.sense));
}

// ---------------------------------------------------------------- TMF

void Connection::SendTmfResponse(uint32_t itt, TmfResponseCode code) {
  TaskMgmtResponse rsp;
  rsp.response = static_cast<uint8_t>(code);
  rsp.itt = itt;
  rsp.stat_sn = stat_sn_++;
  rsp.exp_cmd_sn = exp_cmd_sn_;
  rsp.max_cmd_sn = max_cmd_sn_;
  Send(Encode(rsp));
}

void Connection::HandleTaskMgmt(const Pdu& pdu) {
  if (discovery_) {
    SendReject(pdu, RejectReason::kProtocolError);
    return;
  }
  TaskMgmtRequest req;
  if (!Decode(pdu.bhs, &req).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  if (!AcceptCmdSn(req.immediate, req.cmd_sn)) {
    if (req.immediate) SendReject(pdu, RejectReason::kImmediateCommandReject);
    return;
  }
  ReleaseCmdSlot(req.immediate);
  const uint64_t lun = DecodeLun(req.lun);
  scsi::TmfRequest tmf;
  tmf.nexus = nexus_;
  tmf.lun = lun;
  bool cold_reset = false;
  // Tasks still gathering data-out were never submitted: they end here.
  auto drop_unsubmitted = [&](bool all_luns) {
    std::vector<uint32_t> doomed;
    for (auto& [itt, t] : tasks_) {
      if (!t.submitted && (all_luns || DecodeLun(t.lun_field) == lun)) doomed.push_back(itt);
    }
    for (uint32_t itt : doomed) FinishTask(itt);
  };
  switch (static_cast<TmfFunctionCode>(req.function)) {
    case TmfFunctionCode::kAbortTask: {
      auto it = tasks_.find(req.referenced_task_tag);
      if (it == tasks_.end()) {
        // Never received (RefCmdSN not yet seen) counts as aborted (RFC 7143
        // §11.5.1); otherwise it already completed.
        const bool not_yet_received = !SnLess(req.ref_cmd_sn, exp_cmd_sn_);
        SendTmfResponse(req.itt, not_yet_received ? TmfResponseCode::kComplete
                                                  : TmfResponseCode::kTaskDoesNotExist);
        return;
      }
      if (!it->second.submitted) {
        FinishTask(req.referenced_task_tag);
        SendTmfResponse(req.itt, TmfResponseCode::kComplete);
        return;
      }
      tmf.function = scsi::TmfFunction::kAbortTask;
      tmf.referenced_tag = req.referenced_task_tag;
      break;
    }
    case TmfFunctionCode::kAbortTaskSet:
      drop_unsubmitted(false);
      tmf.function = scsi::TmfFunction::kAbortTaskSet;
      break;
    case TmfFunctionCode::kClearAca:
      tmf.function = scsi::TmfFunction::kClearAca;
      break;
    case TmfFunctionCode::kClearTaskSet:
      drop_unsubmitted(false);
      tmf.function = scsi::TmfFunction::kClearTaskSet;
      break;
    case TmfFunctionCode::kLogicalUnitReset:
      drop_unsubmitted(false);
      tmf.function = scsi::TmfFunction::kLogicalUnitReset;
      break;
    case TmfFunctionCode::kTargetWarmReset:
      drop_unsubmitted(true);
      tmf.function = scsi::TmfFunction::kTargetWarmReset;
      break;
    case TmfFunctionCode::kTargetColdReset:
      drop_unsubmitted(true);
      tmf.function = scsi::TmfFunction::kTargetColdReset;
      cold_reset = true;
      break;
    case TmfFunctionCode::kTaskReassign:
      // Needs ERL 2 (connection recovery).
      SendTmfResponse(req.itt, TmfResponseCode::kAllegianceReassignmentNotSupported);
      return;
    default:
      SendTmfResponse(req.itt, TmfResponseCode::kNotSupported);
      return;
  }
  std::weak_ptr<Connection> weak = weak_from_this();
  std::shared_ptr<Poster> poster = loop_->poster();
  const uint32_t itt = req.itt;
  server_->router.ManageTasks(
      std::move(tmf), [weak, poster, itt, cold_reset](scsi::TmfResult result) mutable {
        poster->Post([weak, itt, result, cold_reset]() {
          auto c = weak.lock();
          if (c == nullptr || c->closed_) return;
          c->SendTmfResponse(itt, MapTmfResult(result));
          // A cold reset ends every connection (RFC 7143 §11.5.1).
          if (cold_reset) c->CloseAfterFlush();
        });
      });
}

// ---------------------------------------------------------------- Text

void Connection::HandleText(const Pdu& pdu) {
  TextRequest req;
  if (!Decode(pdu.bhs, &req).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  if (!AcceptCmdSn(req.immediate, req.cmd_sn)) {
    if (req.immediate) SendReject(pdu, RejectReason::kImmediateCommandReject);
    return;
  }
  ReleaseCmdSlot(req.immediate);
  TextResponse rsp;
  rsp.itt = req.itt;
  rsp.lun = req.lun;
  auto send_chunk = [&]() {
    const size_t n = std::min<size_t>(text_out_.size(),
                                      params_.initiator_max_recv_data_segment_length);
    std::vector<uint8_t> chunk(text_out_.begin(), text_out_.begin() + n);
    text_out_.erase(text_out_.begin(), text_out_.begin() + n);
    if (text_out_.empty()) {
      rsp.final_bit = true;
      rsp.ttt = kReservedTag;
      text_ttt_ = kReservedTag;
    } else {
      rsp.final_bit = false;
      rsp.continue_bit = true;
      text_ttt_ = next_ttt_++;
      if (text_ttt_ == kReservedTag) text_ttt_ = next_ttt_++;
      rsp.ttt = text_ttt_;
    }
    rsp.stat_sn = stat_sn_++;
    rsp.exp_cmd_sn = exp_cmd_sn_;
    rsp.max_cmd_sn = max_cmd_sn_;
    Send(Encode(rsp), std::move(chunk));
  };
  if (req.ttt != kReservedTag && text_in_.empty()) {
    // The initiator asks for the rest of a long response.
    if (req.ttt != text_ttt_ || text_out_.empty()) {
      SendReject(pdu, RejectReason::kInvalidPduField);
      return;
    }
    send_chunk();
    return;
  }
  text_out_.clear();
  text_in_.insert(text_in_.end(), pdu.data.begin(), pdu.data.end());
  if (text_in_.size() > 64 * 1024) {
    text_in_.clear();
    SendReject(pdu, RejectReason::kLongOperationReject);
    return;
  }
  if (req.continue_bit) {
    // More text follows from the initiator: acknowledge with an empty response.
    rsp.final_bit = false;
    text_ttt_ = next_ttt_++;
    if (text_ttt_ == kReservedTag) text_ttt_ = next_ttt_++;
    rsp.ttt = text_ttt_;
    rsp.stat_sn = stat_sn_++;
    rsp.exp_cmd_sn = exp_cmd_sn_;
    rsp.max_cmd_sn = max_cmd_sn_;
    Send(Encode(rsp));
    return;
  }
  auto keys = ParseTextKeys(text_in_);
  text_in_.clear();
  if (!keys.ok()) {
    SendReject(pdu, RejectReason::kProtocolError);
    return;
  }
  KeyValueList answers;
  for (const auto& kv : *keys) {
    if (kv.key == "SendTargets") {
      auto listed = BuildSendTargetsResponse(*server_->directory, kv.value,
                                             initiator_name_, discovery_, target_name_);
      answers.insert(answers.end(), listed.begin(), listed.end());
    } else if (kv.key == "MaxRecvDataSegmentLength") {
      auto n = ParseNumber(kv.value);
      if (n && *n >= 512 && *n <= kMaxDataSegmentLength) {
        params_.initiator_max_recv_data_segment_length = static_cast<uint32_t>(*n);
        answers.push_back({kv.key, absl::StrCat(params_.target_max_recv_data_segment_length)});
      } else {
        answers.push_back({kv.key, "Reject"});
      }
    } else if (IsLoginOnlyKey(kv.key)) {
      answers.push_back({kv.key, "Reject"});
    } else {
      answers.push_back({kv.key, "NotUnderstood"});
    }
  }
  text_out_ = BuildTextKeys(answers);
  send_chunk();
}

// ---------------------------------------------------------------- Logout

void Connection::HandleLogout(const Pdu& pdu) {
  LogoutRequest req;
  if (!Decode(pdu.bhs, &req).ok()) {
    SendReject(pdu, RejectReason::kInvalidPduField);
    return;
  }
  if (!AcceptCmdSn(req.immediate, req.cmd_sn)) {
    if (req.immediate) SendReject(pdu, RejectReason::kImmediateCommandReject);
    return;
  }
  ReleaseCmdSlot(req.immediate);
  LogoutResponse rsp;
  rsp.itt = req.itt;
  const auto reason = static_cast<LogoutReason>(req.reason);
  bool close = true;
  if (reason == LogoutReason::kRemoveConnectionForRecovery) {
    rsp.response = static_cast<uint8_t>(LogoutResponseCode::kRecoveryNotSupported);
    close = false;
  } else if (reason == LogoutReason::kCloseConnection &&
             req.cid != cid_) {
    rsp.response = static_cast<uint8_t>(LogoutResponseCode::kCidNotFound);
    close = false;
  } else {
    rsp.response = static_cast<uint8_t>(LogoutResponseCode::kSuccess);
  }
  rsp.stat_sn = stat_sn_++;
  rsp.exp_cmd_sn = exp_cmd_sn_;
  rsp.max_cmd_sn = max_cmd_sn_;
  Send(Encode(rsp));
  if (close) {
    phase_ = Phase::kLoggedOut;
    CloseAfterFlush();
  }
}

}  // namespace iscsi
