// The Server driven by a small test initiator written with our own codec:
// malformed input, data digests, R2T flow, TMF, NOP pings, session
// reinstatement and completions that arrive after the connection died.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "target/iscsi/pdu.h"
#include "target/iscsi/server.h"
#include "target/iscsi/text.h"
#include "tests/iscsi/fake_task_router.h"

namespace iscsi {
namespace {

using iscsi_test::FakeTaskRouter;

constexpr char kTarget[] = "iqn.2024-01.com.example:server-test";
constexpr char kInitiator[] = "iqn.2024-01.com.example:client";

template <typename Pred>
bool WaitFor(Pred pred, int ms = 5000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    poll(nullptr, 0, 5);
  }
  return pred();
}

class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    PduReader::Limits l;
    l.from_initiator = false;
    l.max_data_segment_length = 1 << 24;
    reader_ = PduReader(l);
  }
  ~Client() { close(fd_); }

  bool connected() const { return connected_; }
  void SetDigests(bool hd, bool dd) {
    hd_ = hd;
    dd_ = dd;
    PduReader::Limits l = reader_.limits();
    l.header_digest = hd;
    l.data_digest = dd;
    reader_.set_limits(l);
  }
  void SendRaw(const std::vector<uint8_t>& bytes) {
    send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Half-close: the target sees end of input, this side can still read.
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  void Send(const Bhs& bhs, std::vector<uint8_t> data = {}, std::vector<uint8_t> ahs = {}) {
    Pdu p;
    p.bhs = bhs;
    p.data = std::move(data);
    p.ahs = std::move(ahs);
    SendRaw(SerializePduOrDie(p, hd_, dd_));
  }
  // Next PDU, or nullopt on timeout / close.
  std::optional<Pdu> Read(int ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (true) {
      if (!buffer_.empty()) {
        auto r = reader_.Feed(buffer_);
        if (!r.ok()) return std::nullopt;
        buffer_.erase(buffer_.begin(), buffer_.begin() + r->consumed);
        if (r->pdu) return std::move(r->pdu);
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      uint8_t buf[65536];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      buffer_.insert(buffer_.end(), buf, buf + n);
    }
  }
  // True once the server closed the connection.
  bool WaitClosed(int ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        uint8_t buf[4096];
        const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) return true;
      }
    }
    return false;
  }

  // Logs in (security stage skipped), returns the final Login Response.
  LoginResponse Login(const KeyValueList& extra, std::array<uint8_t, 6> isid = {0x80, 0, 0, 0, 0, 1},
                      bool discovery = false) {
    LoginRequest r;
    r.transit = true;
    r.csg = 1;
    r.nsg = 3;
    r.isid = isid;
    r.itt = 0x100;
    r.cmd_sn = cmd_sn_;
    KeyValueList keys = {{"InitiatorName", kInitiator}};
    if (discovery) {
      keys.push_back({"SessionType", "Discovery"});
    } else {
      keys.push_back({"TargetName", kTarget});
    }
    keys.insert(keys.end(), extra.begin(), extra.end());
    Send(Encode(r), BuildTextKeys(keys));
    LoginResponse rsp;
    auto pdu = Read();
    if (!pdu || !Decode(pdu->bhs, &rsp).ok()) {
      rsp.status_class = 0xff;
      return rsp;
    }
    login_keys_ = *ParseTextKeys(pdu->data);
    exp_stat_sn_ = rsp.stat_sn + 1;
    return rsp;
  }

  ScsiCommand Command(uint32_t itt, const std::vector<uint8_t>& cdb, uint32_t edtl,
                      bool read, bool write) {
    ScsiCommand c;
    c.itt = itt;
    c.read = read;
    c.write = write;
    c.expected_data_transfer_length = edtl;
    c.cmd_sn = cmd_sn_++;
    c.exp_stat_sn = exp_stat_sn_;
    std::copy(cdb.begin(), cdb.end(), c.cdb.begin());
    return c;
  }
  uint32_t NextCmdSn() { return cmd_sn_++; }

  KeyValueList login_keys_;

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool hd_ = false, dd_ = false;
  PduReader reader_;
  std::vector<uint8_t> buffer_;
  uint32_t cmd_sn_ = 1;
  uint32_t exp_stat_sn_ = 0;
};

std::vector<uint8_t> Write10(uint32_t lba, uint16_t blocks) {
  return {0x2a, 0, static_cast<uint8_t>(lba >> 24), static_cast<uint8_t>(lba >> 16),
          static_cast<uint8_t>(lba >> 8), static_cast<uint8_t>(lba), 0,
          static_cast<uint8_t>(blocks >> 8), static_cast<uint8_t>(blocks), 0};
}
std::vector<uint8_t> Read10(uint32_t lba, uint16_t blocks) {
  auto c = Write10(lba, blocks);
  c[0] = 0x28;
  return c;
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(TargetOptions options = TargetOptions()) {
    directory_ = std::make_shared<PortalDirectory>();
    TargetConfig t;
    t.name = kTarget;
    directory_->UpsertTarget(t);
    PortalConfig partner;  // a LIF on the partner node, advertised only
    partner.address = "127.0.0.3";
    partner.port = 3260;
    partner.portal_group_tag = 2;
    directory_->UpsertPortal(partner);
    auto s = Server::Create(options, directory_, router_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    PortalConfig p;
    p.address = "127.0.0.1";
    p.port = 0;
    p.portal_group_tag = 1;
    p.relative_target_port_id = 3;
    auto portal = server_->AddPortal(p);
    ASSERT_TRUE(portal.ok()) << portal.status();
    port_ = (*portal)->bound_port();
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  FakeTaskRouter router_;
  std::shared_ptr<PortalDirectory> directory_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_F(ServerTest, DiscoverySendTargetsListsEveryPortal) {
  Start();
  Client c(port_);
  ASSERT_TRUE(c.connected());
  auto login = c.Login({}, {0x80, 0, 0, 0, 0, 9}, /*discovery=*/true);
  ASSERT_EQ(login.status_class, 0);
  TextRequest t;
  t.itt = 1;
  t.cmd_sn = c.NextCmdSn();
  c.Send(Encode(t), BuildTextKeys({{"SendTargets", "All"}}));
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  TextResponse rsp;
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  auto keys = *ParseTextKeys(pdu->data);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].value, kTarget);
  EXPECT_EQ(keys[1].value, absl::StrCat("127.0.0.1:", port_, ",1"));
  EXPECT_EQ(keys[2].value, "127.0.0.3:3260,2");
  // SCSI commands are not allowed in a discovery session.
  c.Send(Encode(c.Command(5, {0x00}, 0, false, false)));
  auto rej = c.Read();
  ASSERT_TRUE(rej);
  EXPECT_EQ(rej->bhs.opcode(), static_cast<uint8_t>(Opcode::kReject));
}

TEST_F(ServerTest, WriteWithR2tAndReadBackWithDataDigests) {
  TargetOptions o;
  o.negotiation.first_burst_length = 4096;
  o.negotiation.max_burst_length = 8192;
  Start(o);
  Client c(port_);
  auto login = c.Login({{"HeaderDigest", "CRC32C"},
                        {"DataDigest", "CRC32C"},
                        {"InitialR2T", "No"},
                        {"ImmediateData", "Yes"},
                        {"MaxRecvDataSegmentLength", "4096"},
                        {"MaxBurstLength", "8192"},
                        {"FirstBurstLength", "4096"}});
  ASSERT_EQ(login.status_class, 0);
  EXPECT_EQ(*FindKey(c.login_keys_, "DataDigest"), "CRC32C");
  EXPECT_EQ(server_->stats().data_digest_logins, 1u);
  c.SetDigests(true, true);
  std::vector<uint8_t> data(20 * 512);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + 1);
  // 1024 bytes immediate; unsolicited up to FirstBurstLength (4096); R2Ts for the rest.
  auto cmd = c.Command(0x10, Write10(8, 20), static_cast<uint32_t>(data.size()), false, true);
  cmd.final_bit = false;
  c.Send(Encode(cmd), std::vector<uint8_t>(data.begin(), data.begin() + 1024));
  DataOut unsolicited;
  unsolicited.itt = 0x10;
  unsolicited.buffer_offset = 1024;
  unsolicited.final_bit = true;
  c.Send(Encode(unsolicited), std::vector<uint8_t>(data.begin() + 1024, data.begin() + 4096));
  uint32_t solicited = 0;
  ScsiResponse final_rsp;
  bool done = false;
  while (!done) {
    auto pdu = c.Read();
    ASSERT_TRUE(pdu);
    if (pdu->bhs.opcode() == static_cast<uint8_t>(Opcode::kR2t)) {
      R2t r2t;
      ASSERT_TRUE(Decode(pdu->bhs, &r2t).ok());
      EXPECT_LE(r2t.desired_data_transfer_length, 8192u);
      uint32_t data_sn = 0;  // each R2T's sequence counts from 0
      for (uint32_t off = 0; off < r2t.desired_data_transfer_length; off += 4096) {
        DataOut d;
        d.itt = 0x10;
        d.ttt = r2t.ttt;
        d.data_sn = data_sn++;
        d.buffer_offset = r2t.buffer_offset + off;
        const uint32_t n = std::min<uint32_t>(4096, r2t.desired_data_transfer_length - off);
        d.final_bit = off + n == r2t.desired_data_transfer_length;
        c.Send(Encode(d), std::vector<uint8_t>(data.begin() + d.buffer_offset,
                                               data.begin() + d.buffer_offset + n));
      }
      solicited += r2t.desired_data_transfer_length;
    } else {
      ASSERT_EQ(pdu->bhs.opcode(), static_cast<uint8_t>(Opcode::kScsiResponse));
      ASSERT_TRUE(Decode(pdu->bhs, &final_rsp).ok());
      done = true;
    }
  }
  EXPECT_EQ(solicited, data.size() - 4096);
  EXPECT_EQ(final_rsp.status, 0);
  EXPECT_FALSE(final_rsp.underflow || final_rsp.overflow);

  // Read back with a larger EDTL than the command transfers: underflow.
  c.Send(Encode(c.Command(0x11, Read10(8, 20), static_cast<uint32_t>(data.size()) + 512,
                          true, false)));
  std::vector<uint8_t> got;
  DataIn last;
  int pdus = 0;
  while (true) {
    auto pdu = c.Read();
    ASSERT_TRUE(pdu);
    ASSERT_FALSE(pdu->data_digest_error);
    DataIn d;
    ASSERT_TRUE(Decode(pdu->bhs, &d).ok());
    EXPECT_EQ(d.buffer_offset, got.size());
    EXPECT_EQ(d.data_sn, static_cast<uint32_t>(pdus));
    EXPECT_LE(pdu->data.size(), 4096u);
    got.insert(got.end(), pdu->data.begin(), pdu->data.end());
    ++pdus;
    if (d.status_present) {
      last = d;
      break;
    }
  }
  EXPECT_EQ(got, data);
  EXPECT_EQ(pdus, 3);
  EXPECT_TRUE(last.underflow);
  EXPECT_EQ(last.residual_count, 512u);
}

TEST_F(ServerTest, CheckConditionCarriesSenseInScsiResponse) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  c.Send(Encode(c.Command(1, {0xff}, 0, false, false)));  // unsupported opcode
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  ScsiResponse rsp;
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  EXPECT_EQ(rsp.status, 0x02);
  ASSERT_EQ(pdu->data.size(), 20u);
  EXPECT_EQ(pdu->data[1], 18);  // SenseLength
  EXPECT_EQ(pdu->data[2 + 2], 0x05);
}

TEST_F(ServerTest, NopOutEchoAndSnackReject) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  NopOut nop;
  nop.immediate = true;
  nop.itt = 9;
  nop.cmd_sn = c.NextCmdSn();
  c.Send(Encode(nop), {1, 2, 3});
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  NopIn in;
  ASSERT_TRUE(Decode(pdu->bhs, &in).ok());
  EXPECT_EQ(in.itt, 9u);
  EXPECT_EQ(pdu->data, (std::vector<uint8_t>{1, 2, 3}));
  SnackRequest snack;
  c.Send(Encode(snack));
  auto rej = c.Read();
  ASSERT_TRUE(rej);
  Reject r;
  ASSERT_TRUE(Decode(rej->bhs, &r).ok());
  EXPECT_EQ(r.reason, static_cast<uint8_t>(RejectReason::kSnackReject));
  EXPECT_EQ(rej->data.size(), 48u);  // the rejected header
}

TEST_F(ServerTest, AnswersAreDeliveredWhenThePeerHalfClosesRightAfter) {
  // The NOP-Out and the FIN arrive together: the answer gathered in that
  // event-loop round still reaches the initiator before the target closes.
  Start();
  for (uint32_t i = 0; i < 20; ++i) {
    Client c(port_);
    ASSERT_EQ(c.Login({}).status_class, 0);
    NopOut nop;
    nop.immediate = true;
    nop.itt = 100 + i;
    nop.cmd_sn = c.NextCmdSn();
    c.Send(Encode(nop), {7, 7});
    c.ShutdownWrite();
    auto pdu = c.Read();
    ASSERT_TRUE(pdu) << "round " << i;
    NopIn in;
    ASSERT_TRUE(Decode(pdu->bhs, &in).ok());
    EXPECT_EQ(in.itt, 100 + i);
  }
}

TEST_F(ServerTest, MalformedInputDropsTheConnection) {
  Start();
  {
    Client c(port_);  // wrong opcode during login
    c.Send(Encode(NopOut()));
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    Client c(port_);  // data segment beyond the negotiated limit
    ASSERT_EQ(c.Login({}).status_class, 0);
    Bhs bhs = Encode(c.Command(1, {0x2a}, 1 << 20, false, true));
    bhs.set_data_segment_length(0xfffff0);
    c.SendRaw(std::vector<uint8_t>(bhs.bytes.begin(), bhs.bytes.end()));
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    Client c(port_);  // target opcode from an initiator
    ASSERT_EQ(c.Login({}).status_class, 0);
    c.Send(Encode(NopIn()));
    EXPECT_TRUE(c.WaitClosed());
  }
  EXPECT_TRUE(WaitFor([&] { return server_->connection_count() == 0; }));
}

TEST_F(ServerTest, LoginFailuresAndTsihForUnknownSession) {
  Start();
  Client c(port_);
  LoginRequest r;
  r.transit = true;
  r.csg = 1;
  r.nsg = 3;
  r.tsih = 77;  // no such session
  c.Send(Encode(r), BuildTextKeys({{"InitiatorName", kInitiator}, {"TargetName", kTarget}}));
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  LoginResponse rsp;
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  EXPECT_EQ(rsp.status_class, 0x02);
  EXPECT_EQ(rsp.status_detail, 0x0a);
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ServerTest, TaskManagement) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  router_.set_park_tasks(true);
  c.Send(Encode(c.Command(0x20, Read10(0, 1), 512, true, false)));
  ASSERT_TRUE(WaitFor([&] { return router_.parked() == 1; }));
  TaskMgmtRequest abort;
  abort.immediate = true;
  abort.function = static_cast<uint8_t>(TmfFunctionCode::kAbortTask);
  abort.itt = 0x21;
  abort.referenced_task_tag = 0x20;
  abort.cmd_sn = c.NextCmdSn();
  c.Send(Encode(abort));
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  TaskMgmtResponse rsp;
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());  // no response for the aborted task first
  EXPECT_EQ(rsp.itt, 0x21u);
  EXPECT_EQ(rsp.response, 0);
  ASSERT_FALSE(router_.tmfs().empty());
  EXPECT_EQ(router_.tmfs().back().function, scsi::TmfFunction::kAbortTask);
  EXPECT_EQ(router_.tmfs().back().referenced_tag, 0x20u);

  TaskMgmtRequest reassign = abort;
  reassign.function = static_cast<uint8_t>(TmfFunctionCode::kTaskReassign);
  reassign.itt = 0x22;
  c.Send(Encode(reassign));
  pdu = c.Read();
  ASSERT_TRUE(pdu);
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  EXPECT_EQ(rsp.response,
            static_cast<uint8_t>(TmfResponseCode::kAllegianceReassignmentNotSupported));

  TaskMgmtRequest lu_reset = abort;
  lu_reset.function = static_cast<uint8_t>(TmfFunctionCode::kLogicalUnitReset);
  lu_reset.itt = 0x23;
  c.Send(Encode(lu_reset));
  pdu = c.Read();
  ASSERT_TRUE(pdu);
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  EXPECT_EQ(rsp.response, 0);
  EXPECT_EQ(router_.tmfs().back().function, scsi::TmfFunction::kLogicalUnitReset);
}

TEST_F(ServerTest, CompletionAfterConnectionDiedIsDropped) {
  Start();
  router_.set_park_tasks(true);
  {
    Client c(port_);
    ASSERT_EQ(c.Login({}).status_class, 0);
    c.Send(Encode(c.Command(0x30, Read10(0, 8), 4096, true, false)));
    ASSERT_TRUE(WaitFor([&] { return router_.parked() == 1; }));
  }
  ASSERT_TRUE(WaitFor([&] { return server_->connection_count() == 0; }));
  // The nexus loss aborted the parked task already; park another through a
  // second connection and complete it from a foreign thread after it closed.
  bool saw_nexus_loss = false;
  for (const auto& t : router_.tmfs()) {
    saw_nexus_loss |= t.function == scsi::TmfFunction::kItNexusLoss;
  }
  EXPECT_TRUE(saw_nexus_loss);
  {
    Client c(port_);
    ASSERT_EQ(c.Login({}, {0x80, 0, 0, 0, 0, 2}).status_class, 0);
    c.Send(Encode(c.Command(0x31, Read10(0, 8), 4096, true, false)));
    ASSERT_TRUE(WaitFor([&] { return router_.parked() == 1; }));
    // Take the task out before the connection's nexus loss can abort it.
    router_.set_park_tasks(false);
  }
  std::thread late([&] { router_.CompleteParked(); });
  late.join();
  EXPECT_TRUE(WaitFor([&] { return server_->session_count() == 0; }));
}

TEST_F(ServerTest, SessionReinstatementDropsTheOldConnection) {
  Start();
  Client first(port_);
  ASSERT_EQ(first.Login({}).status_class, 0);
  Client second(port_);
  auto rsp = second.Login({});  // same InitiatorName + ISID, TSIH 0
  EXPECT_EQ(rsp.status_class, 0);
  EXPECT_NE(rsp.tsih, 0);
  EXPECT_TRUE(first.WaitClosed());
  bool saw_nexus_loss = false;
  for (const auto& t : router_.tmfs()) {
    saw_nexus_loss |= t.function == scsi::TmfFunction::kItNexusLoss;
  }
  EXPECT_TRUE(saw_nexus_loss);
  second.Send(Encode(second.Command(1, {0x00}, 0, false, false)));
  auto pdu = second.Read();
  ASSERT_TRUE(pdu);
  EXPECT_EQ(pdu->bhs.opcode(), static_cast<uint8_t>(Opcode::kScsiResponse));
  EXPECT_EQ(server_->session_count(), 1u);
}

TEST_F(ServerTest, NopInPingDropsSilentInitiator) {
  TargetOptions o;
  o.nop_in_interval = absl::Milliseconds(100);
  o.nop_in_timeout = absl::Milliseconds(300);
  Start(o);
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  auto ping = c.Read(3000);
  ASSERT_TRUE(ping);
  NopIn nop;
  ASSERT_TRUE(Decode(ping->bhs, &nop).ok());
  EXPECT_EQ(nop.itt, kReservedTag);
  EXPECT_NE(nop.ttt, kReservedTag);
  EXPECT_TRUE(c.WaitClosed(5000));  // we never answer
}

// Answers the target's NOP-In pings and checks that the connection stays up
// across several ping intervals, then that it still answers a NOP-Out.
TEST_F(ServerTest, NopInPingAnsweredKeepsTheConnection) {
  TargetOptions o;
  o.nop_in_interval = absl::Milliseconds(100);
  o.nop_in_timeout = absl::Milliseconds(300);
  Start(o);
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  int answered = 0;
  while (answered < 5) {
    auto ping = c.Read(3000);
    ASSERT_TRUE(ping) << "connection dropped after " << answered << " answered pings";
    NopIn in;
    ASSERT_TRUE(Decode(ping->bhs, &in).ok());
    ASSERT_EQ(in.itt, kReservedTag);
    NopOut reply;  // RFC 7143 §11.18: ITT reserved, TTT echoed, I bit
    reply.immediate = true;
    reply.ttt = in.ttt;
    c.Send(Encode(reply));
    ++answered;
  }
  NopOut nop;
  nop.immediate = true;
  nop.itt = 7;
  nop.cmd_sn = c.NextCmdSn();
  c.Send(Encode(nop));
  for (;;) {  // pings may still be interleaved
    auto pdu = c.Read(3000);
    ASSERT_TRUE(pdu);
    NopIn in;
    ASSERT_TRUE(Decode(pdu->bhs, &in).ok());
    if (in.itt == 7u) break;
    NopOut reply;
    reply.immediate = true;
    reply.ttt = in.ttt;
    c.Send(Encode(reply));
  }
  EXPECT_EQ(server_->connection_count(), 1u);
}

// A connection that never completes login is closed once login_timeout has
// passed (not before): silent after connect, stuck in the middle of a PDU, and
// stuck after a non-final login step.
TEST_F(ServerTest, LoginTimeoutClosesConnectionsThatNeverFinishLogin) {
  TargetOptions o;
  o.login_timeout = absl::Milliseconds(400);
  Start(o);
  const auto start = std::chrono::steady_clock::now();
  Client silent(port_);
  Client half_pdu(port_);
  Client mid_login(port_);
  ASSERT_TRUE(silent.connected() && half_pdu.connected() && mid_login.connected());
  half_pdu.SendRaw(std::vector<uint8_t>(20, 0x43));  // 20 of the 48 BHS bytes
  LoginRequest r;  // operational stage, no transit: the target answers and waits
  r.csg = 1;
  r.nsg = 1;
  r.isid = {0x80, 0, 0, 0, 0, 9};
  r.itt = 0x100;
  r.cmd_sn = 1;
  mid_login.Send(Encode(r), BuildTextKeys({{"InitiatorName", kInitiator},
                                           {"TargetName", kTarget}}));
  auto step = mid_login.Read();
  ASSERT_TRUE(step);
  LoginResponse rsp;
  ASSERT_TRUE(Decode(step->bhs, &rsp).ok());
  EXPECT_EQ(rsp.status_class, 0);
  EXPECT_FALSE(rsp.transit);
  ASSERT_TRUE(WaitFor([&] { return server_->connection_count() == 3; }));

  EXPECT_TRUE(silent.WaitClosed(5000));
  EXPECT_TRUE(half_pdu.WaitClosed(5000));
  EXPECT_TRUE(mid_login.WaitClosed(5000));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
  EXPECT_TRUE(WaitFor([&] { return server_->connection_count() == 0; }));
  EXPECT_EQ(server_->session_count(), 0u);
}

// The login timer stops at the final Login Response: a full-feature
// connection outlives login_timeout (pings disabled).
TEST_F(ServerTest, LoginTimeoutDoesNotApplyAfterLogin) {
  TargetOptions o;
  o.login_timeout = absl::Milliseconds(200);
  o.nop_in_interval = absl::ZeroDuration();
  Start(o);
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  EXPECT_FALSE(c.Read(1000));  // nothing arrives, and the target does not close
  NopOut nop;
  nop.immediate = true;
  nop.itt = 5;
  nop.cmd_sn = c.NextCmdSn();
  c.Send(Encode(nop));
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  NopIn in;
  ASSERT_TRUE(Decode(pdu->bhs, &in).ok());
  EXPECT_EQ(in.itt, 5u);
}

// Many initiators connecting at once through both event loops: logins (new
// sessions and reinstatements of the thread's previous session), garbage
// after login, garbage instead of a login, and connections closed before
// sending anything. Every login must be answered within the deadline and the
// server must end with no connection and no session.
TEST_F(ServerTest, ConcurrentConnectLoginGarbageCloseCyclesAreAllAnswered) {
  TargetOptions o;
  o.event_loop_threads = 2;
  Start(o);
  constexpr int kThreads = 8;
  constexpr int kCycles = 60;
  std::atomic<int> logins{0};
  std::atomic<int> unanswered{0};
  std::atomic<int> not_closed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<uint8_t> garbage(300, static_cast<uint8_t>(0x5a + t));
      for (int i = 0; i < kCycles; ++i) {
        Client c(port_);
        if (!c.connected()) {
          unanswered++;
          continue;
        }
        switch (i % 4) {
          case 0:
          case 1: {
            // Same ISID every time: each login reinstates this thread's last session.
            const uint8_t isid_tail = static_cast<uint8_t>(i % 4 == 0 ? t : 100 + t);
            if (c.Login({}, {0x80, 0, 0, 0, 1, isid_tail}).status_class != 0) {
              unanswered++;
              break;
            }
            logins++;
            if (i % 8 == 0) {
              c.SendRaw(garbage);  // not a PDU: the target drops the connection
              if (!c.WaitClosed(5000)) not_closed++;
            }
            break;
          }
          case 2:
            c.SendRaw(garbage);
            if (!c.WaitClosed(5000)) not_closed++;
            break;
          case 3:
            break;  // closed without a word
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(unanswered.load(), 0);
  EXPECT_EQ(not_closed.load(), 0);
  EXPECT_EQ(logins.load(), kThreads * kCycles / 2);
  EXPECT_TRUE(WaitFor([&] {
    return server_->connection_count() == 0 && server_->session_count() == 0;
  })) << server_->connection_count() << " connections, " << server_->session_count()
      << " sessions";
}

TEST_F(ServerTest, AsyncLogoutRequestAndLogout) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  server_->RequestLogout(1, 5);
  auto pdu = c.Read();
  ASSERT_TRUE(pdu);
  AsyncMessage msg;
  ASSERT_TRUE(Decode(pdu->bhs, &msg).ok());
  EXPECT_EQ(msg.async_event, static_cast<uint8_t>(AsyncEvent::kRequestLogout));
  EXPECT_EQ(msg.parameter3, 5);
  LogoutRequest lo;
  lo.immediate = true;
  lo.itt = 3;
  lo.cmd_sn = c.NextCmdSn();
  c.Send(Encode(lo));
  pdu = c.Read();
  ASSERT_TRUE(pdu);
  LogoutResponse lr;
  ASSERT_TRUE(Decode(pdu->bhs, &lr).ok());
  EXPECT_EQ(lr.response, 0);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(WaitFor([&] { return server_->session_count() == 0; }));
}

// What an initiator sees at the end of a command.
struct Outcome {
  bool ok = false;  // a SCSI Response / final Data-In arrived
  uint8_t status = 0xff;
  bool overflow = false;
  bool underflow = false;
  uint32_t residual = 0;
  std::vector<uint8_t> data;  // Data-In payload, in order
};

// Sends a read-direction command and gathers its Data-In and status.
Outcome RunRead(Client& c, uint32_t itt, const std::vector<uint8_t>& cdb, uint32_t edtl) {
  c.Send(Encode(c.Command(itt, cdb, edtl, true, false)));
  Outcome o;
  while (auto pdu = c.Read()) {
    if (pdu->bhs.opcode() == static_cast<uint8_t>(Opcode::kDataIn)) {
      DataIn d;
      if (!Decode(pdu->bhs, &d).ok() || d.buffer_offset != o.data.size()) return o;
      o.data.insert(o.data.end(), pdu->data.begin(), pdu->data.end());
      if (!d.status_present) continue;
      o.ok = true;
      o.status = d.status;
      o.overflow = d.overflow;
      o.underflow = d.underflow;
      o.residual = d.residual_count;
      return o;
    }
    ScsiResponse rsp;
    if (!Decode(pdu->bhs, &rsp).ok()) return o;
    o.ok = true;
    o.status = rsp.status;
    o.overflow = rsp.overflow;
    o.underflow = rsp.underflow;
    o.residual = rsp.residual_count;
    return o;
  }
  return o;
}

// Sends a write-direction command with EDTL = data.size(): up to 4 KiB as
// immediate data, the rest in 4 KiB Data-Out PDUs answering R2Ts.
Outcome RunWrite(Client& c, uint32_t itt, const std::vector<uint8_t>& cdb,
                 const std::vector<uint8_t>& data) {
  const uint32_t edtl = static_cast<uint32_t>(data.size());
  const uint32_t imm = std::min<uint32_t>(edtl, 4096);
  c.Send(Encode(c.Command(itt, cdb, edtl, false, true)),
         std::vector<uint8_t>(data.begin(), data.begin() + imm));
  Outcome o;
  while (auto pdu = c.Read()) {
    if (pdu->bhs.opcode() == static_cast<uint8_t>(Opcode::kR2t)) {
      R2t r2t;
      if (!Decode(pdu->bhs, &r2t).ok()) return o;
      uint32_t sn = 0;
      for (uint32_t off = 0; off < r2t.desired_data_transfer_length; off += 4096) {
        DataOut d;
        d.itt = itt;
        d.ttt = r2t.ttt;
        d.data_sn = sn++;
        d.buffer_offset = r2t.buffer_offset + off;
        const uint32_t n = std::min<uint32_t>(4096, r2t.desired_data_transfer_length - off);
        d.final_bit = off + n == r2t.desired_data_transfer_length;
        c.Send(Encode(d), std::vector<uint8_t>(data.begin() + d.buffer_offset,
                                               data.begin() + d.buffer_offset + n));
      }
      continue;
    }
    ScsiResponse rsp;
    if (!Decode(pdu->bhs, &rsp).ok()) return o;
    o.ok = true;
    o.status = rsp.status;
    o.overflow = rsp.overflow;
    o.underflow = rsp.underflow;
    o.residual = rsp.residual_count;
    return o;
  }
  return o;
}

// RFC 7143 §11.4.5: the target transfers min(EDTL, what the CDB calls for) and
// reports the difference: O when the CDB wanted more, U when it wanted less.
TEST_F(ServerTest, ReadResidualsWhenEdtlDiffersFromTheCdb) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  std::vector<uint8_t> pattern(1024);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_EQ(RunWrite(c, 1, Write10(40, 2), pattern).status, 0);

  Outcome o = RunRead(c, 2, Read10(40, 1), 0);  // EDTL 0: nothing can be sent
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(o.overflow);
  EXPECT_FALSE(o.underflow);
  EXPECT_EQ(o.residual, 512u);
  EXPECT_TRUE(o.data.empty());

  o = RunRead(c, 3, Read10(40, 1), 200);  // less than one block
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(o.overflow);
  EXPECT_EQ(o.residual, 312u);
  EXPECT_EQ(o.data, std::vector<uint8_t>(pattern.begin(), pattern.begin() + 200));

  o = RunRead(c, 4, Read10(40, 2), 512);  // two blocks, room for one
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(o.overflow);
  EXPECT_EQ(o.residual, 512u);
  EXPECT_EQ(o.data, std::vector<uint8_t>(pattern.begin(), pattern.begin() + 512));

  o = RunRead(c, 5, Read10(40, 1), 10000);  // more room than needed
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_FALSE(o.overflow);
  EXPECT_TRUE(o.underflow);
  EXPECT_EQ(o.residual, 10000u - 512u);
  EXPECT_EQ(o.data.size(), 512u);

  o = RunRead(c, 6, Read10(40, 2), 1024);  // exact: no residual
  ASSERT_TRUE(o.ok);
  EXPECT_FALSE(o.overflow || o.underflow);
  EXPECT_EQ(o.residual, 0u);
  EXPECT_EQ(o.data, pattern);
}

TEST_F(ServerTest, WriteResidualsWhenEdtlDiffersFromTheCdb) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  const std::vector<uint8_t> a(1024, 'a'), b(10000, 'b');

  ASSERT_EQ(RunWrite(c, 1, Write10(60, 2), a).status, 0);
  // EDTL 0 for a one-block write: nothing sent, one block of overflow.
  Outcome o = RunWrite(c, 2, Write10(60, 1), {});
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(o.overflow);
  EXPECT_EQ(o.residual, 512u);
  // Two blocks in the CDB, one block of data: only that block is written.
  o = RunWrite(c, 3, Write10(60, 2), std::vector<uint8_t>(b.begin(), b.begin() + 512));
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(o.overflow);
  EXPECT_FALSE(o.underflow);
  EXPECT_EQ(o.residual, 512u);
  Outcome back = RunRead(c, 4, Read10(60, 2), 1024);
  ASSERT_TRUE(back.ok);
  EXPECT_EQ(std::vector<uint8_t>(back.data.begin(), back.data.begin() + 512),
            std::vector<uint8_t>(512, 'b'));
  EXPECT_EQ(std::vector<uint8_t>(back.data.begin() + 512, back.data.end()),
            std::vector<uint8_t>(512, 'a'));
  // One block in the CDB, 10000 bytes sent (immediate + R2T): underflow, and
  // only one block written.
  o = RunWrite(c, 5, Write10(61, 1), b);
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  EXPECT_FALSE(o.overflow);
  EXPECT_TRUE(o.underflow);
  EXPECT_EQ(o.residual, 10000u - 512u);
  back = RunRead(c, 6, Read10(62, 1), 512);
  EXPECT_EQ(back.data, std::vector<uint8_t>(512, 0));
  // A partial block is refused by the executor; the overflow is still reported.
  o = RunWrite(c, 7, Write10(60, 1), std::vector<uint8_t>(200, 'c'));
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0x02);
  EXPECT_TRUE(o.overflow);
  EXPECT_EQ(o.residual, 312u);
}

// libiscsi's iSCSIDataSnInvalid: a Data-Out whose DataSN is not the next in its
// sequence means an earlier PDU was lost. At ErrorRecoveryLevel 0 the target
// waits for the rest of the data (the F bit), then ends the task with CHECK
// CONDITION, ABORTED COMMAND / PROTOCOL SERVICE CRC ERROR, without executing
// it; the session stays usable.
TEST_F(ServerTest, DataOutWithWrongDataSnFailsTheCommandNotTheSession) {
  Start();
  Client c(port_);
  ASSERT_EQ(c.Login({}).status_class, 0);
  // Each case: the DataSNs of two 512-byte Data-Outs answering one R2T.
  const std::vector<std::pair<uint32_t, uint32_t>> cases = {
      {0, 0}, {1, 0}, {27, 1}, {0xffffffffu, 1}, {0, 2}};
  uint32_t itt = 0x40;
  for (const auto& [first_sn, second_sn] : cases) {
    const uint64_t before = router_.commands();
    c.Send(Encode(c.Command(itt, Write10(70, 2), 1024, false, true)));
    auto pdu = c.Read();
    ASSERT_TRUE(pdu);
    R2t r2t;
    ASSERT_TRUE(Decode(pdu->bhs, &r2t).ok());
    ASSERT_EQ(r2t.desired_data_transfer_length, 1024u);
    for (uint32_t off : {0u, 512u}) {
      DataOut d;
      d.itt = itt;
      d.ttt = r2t.ttt;
      d.data_sn = off == 0 ? first_sn : second_sn;
      d.buffer_offset = off;
      d.final_bit = off == 512;
      c.Send(Encode(d), std::vector<uint8_t>(512, 'x'));
      if (off == 0) {
        // Nothing is answered before the sequence ends.
        EXPECT_FALSE(c.Read(50)) << first_sn;
      }
    }
    pdu = c.Read();
    ASSERT_TRUE(pdu);
    ASSERT_EQ(pdu->bhs.opcode(), static_cast<uint8_t>(Opcode::kScsiResponse)) << first_sn;
    ScsiResponse rsp;
    ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
    EXPECT_EQ(rsp.itt, itt);
    EXPECT_EQ(rsp.status, 0x02);
    ASSERT_EQ(pdu->data.size(), 20u);
    EXPECT_EQ(pdu->data[2 + 2], 0x0b);   // ABORTED COMMAND
    EXPECT_EQ(pdu->data[2 + 12], 0x47);  // PROTOCOL SERVICE CRC ERROR
    EXPECT_EQ(pdu->data[2 + 13], 0x05);
    EXPECT_EQ(router_.commands(), before);  // never executed
    ++itt;
  }
  // Unsolicited data (immediate + Data-Out, InitialR2T=No) with a bad DataSN.
  // (The default login keeps InitialR2T=Yes, so use a second session.)
  Client u(port_);
  ASSERT_EQ(u.Login({{"InitialR2T", "No"}}, {0x80, 0, 0, 0, 0, 7}).status_class, 0);
  auto cmd = u.Command(0x50, Write10(70, 2), 1024, false, true);
  cmd.final_bit = false;
  u.Send(Encode(cmd));
  DataOut d;
  d.itt = 0x50;
  d.data_sn = 5;
  d.final_bit = true;
  u.Send(Encode(d), std::vector<uint8_t>(1024, 'z'));
  auto pdu = u.Read();
  ASSERT_TRUE(pdu);
  ScsiResponse rsp;
  ASSERT_TRUE(Decode(pdu->bhs, &rsp).ok());
  EXPECT_EQ(rsp.status, 0x02);
  // The session still works: a correct write goes through.
  Outcome o = RunWrite(c, itt, Write10(70, 2), std::vector<uint8_t>(1024, 'w'));
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.status, 0);
  Outcome back = RunRead(c, itt + 1, Read10(70, 2), 1024);
  EXPECT_EQ(back.data, std::vector<uint8_t>(1024, 'w'));
}

}  // namespace
}  // namespace iscsi
