// libFuzzer entry point for the whole connection state machine: a real Server
// (event loop, Connection, session registry) over loopback TCP with the
// RAM-disk fake router. Each input gets a fresh connection that completes a
// real login; then the input's bytes are sent as the full-feature-phase
// stream, the client half-closes, and the target must answer what it can and
// close the connection. A crash, a sanitizer report or a target that does not
// close within the deadline (a hang) is a finding.
//
// Input layout: byte 0 picks the login keys (bit 0 HeaderDigest=CRC32C, bit 1
// DataDigest=CRC32C, bit 2 InitialR2T=No, bit 3 ImmediateData=No); the rest is
// the byte stream after the final Login Response. The first command's CmdSN
// is 1 (the login's CmdSN).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "target/iscsi/pdu.h"
#include "target/iscsi/server.h"
#include "target/iscsi/text.h"
#include "tests/iscsi/fake_task_router.h"

namespace {

constexpr char kTarget[] = "iqn.2024-01.com.example:fuzz";
constexpr int kDeadlineMs = 10000;

struct Harness {
  Harness() : router(/*blocks=*/2048) {
    directory = std::make_shared<iscsi::PortalDirectory>();
    iscsi::TargetConfig t;
    t.name = kTarget;
    directory->UpsertTarget(t);
    iscsi::TargetOptions options;
    options.max_data_out_length = 1 << 20;  // keep per-input allocations small
    options.max_data_in_length = 1 << 20;
    options.nop_in_interval = absl::ZeroDuration();
    auto s = iscsi::Server::Create(options, directory, router);
    if (!s.ok()) abort();
    server = std::move(*s);
    iscsi::PortalConfig p;
    p.address = "127.0.0.1";
    p.port = 0;
    p.portal_group_tag = 1;
    auto portal = server->AddPortal(p);
    if (!portal.ok()) abort();
    port = (*portal)->bound_port();
  }

  iscsi_test::FakeTaskRouter router;
  std::shared_ptr<iscsi::PortalDirectory> directory;
  std::unique_ptr<iscsi::Server> server;
  uint16_t port = 0;
};

Harness& GetHarness() {
  static Harness* h = new Harness();  // lives for the process
  return *h;
}

bool SendAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;  // the target may close early: fine
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads the final Login Response. False when the login did not succeed.
bool ReadLoginResponse(int fd) {
  iscsi::PduReader::Limits limits;
  limits.from_initiator = false;
  limits.max_data_segment_length = 1 << 24;
  iscsi::PduReader reader(limits);
  std::vector<uint8_t> buffer;
  for (;;) {
    if (!buffer.empty()) {
      auto r = reader.Feed(buffer);
      if (!r.ok()) return false;
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(r->consumed));
      if (r->pdu) {
        iscsi::LoginResponse rsp;
        return iscsi::Decode(r->pdu->bhs, &rsp).ok() && rsp.status_class == 0 &&
               rsp.transit && rsp.nsg == 3;
      }
    }
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, kDeadlineMs) <= 0) {
      Harness& h = GetHarness();
      fprintf(stderr, "login not answered: %zu connections, %zu sessions\n",
              static_cast<size_t>(h.server->connection_count()),
              static_cast<size_t>(h.server->session_count()));
      if (getenv("CONNECTION_FUZZER_GDB") != nullptr) {  // debugging aid
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt' 1>&2",
                 static_cast<int>(getpid()));
        if (system(cmd) != 0) fprintf(stderr, "gdb failed\n");
      }
      abort();  // login hung
    }
    uint8_t buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer.insert(buffer.end(), buf, buf + n);
  }
}

// Drains until the target closes; aborts if it never does.
void DrainUntilClosed(int fd) {
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, kDeadlineMs) <= 0) {
      abort();  // the target neither answered nor closed after our EOF: a hang
    }
    uint8_t buf[65536];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Harness& h = GetHarness();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  // The target closes first, so every input leaves a TIME-WAIT entry behind:
  // spread the client side over 127.1.0.0/16 so thousands of inputs a second
  // do not run out of (address, port) pairs.
  static uint32_t next_source = 0;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7f010000u | (1 + next_source++ % 65000));
  bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(h.port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    perror("connect");  // an environment limit, not a finding
    close(fd);
    return 0;
  }

  const uint8_t config = data[0];
  iscsi::LoginRequest login;
  login.transit = true;
  login.csg = 1;
  login.nsg = 3;
  login.isid = {0x80, 0, 0, 0, 0, 1};
  login.itt = 0x100;
  login.cmd_sn = 1;
  iscsi::KeyValueList keys = {{"InitiatorName", "iqn.2024-01.com.example:fuzzer"},
                              {"TargetName", kTarget},
                              {"HeaderDigest", (config & 1) ? "CRC32C" : "None"},
                              {"DataDigest", (config & 2) ? "CRC32C" : "None"},
                              {"InitialR2T", (config & 4) ? "No" : "Yes"},
                              {"ImmediateData", (config & 8) ? "No" : "Yes"},
                              {"MaxRecvDataSegmentLength", "8192"}};
  iscsi::Pdu pdu;
  pdu.bhs = iscsi::Encode(login);
  pdu.data = iscsi::BuildTextKeys(keys);
  std::vector<uint8_t> bytes;
  if (!iscsi::SerializePdu(pdu, false, false, &bytes).ok()) abort();
  SendAll(fd, bytes.data(), bytes.size());
  if (ReadLoginResponse(fd)) {
    SendAll(fd, data + 1, size - 1);
    shutdown(fd, SHUT_WR);
    DrainUntilClosed(fd);
  }
  close(fd);
  return 0;
}
