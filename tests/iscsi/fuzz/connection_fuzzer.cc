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

#include <cerrno>
#include <chrono>
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

// libFuzzer's -timeout watchdog is a process-wide SIGALRM every timeout/2+1
// seconds (16 s with run_fuzzers.sh's -timeout=30), installed without
// SA_RESTART; gdb and the RSS thread can interrupt us too. poll() is never
// restarted, so every wait and transfer below retries EINTR: an interrupted
// poll() used to count as "the target did not answer" and produced false
// "login not answered" findings, one per 16 s of fuzzing.

bool SendAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;  // the target may close early: fine
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Waits until fd is readable (data, EOF or error). False only when
// kDeadlineMs passed without that.
bool WaitReadable(int fd) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kDeadlineMs);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    pollfd pfd{fd, POLLIN, 0};
    const int r = poll(&pfd, 1, left > 0 ? static_cast<int>(left) : 0);
    if (r > 0) return true;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      perror("poll");
      abort();  // a harness bug (bad fd), not a target finding
    }
    if (left <= 0) return false;
  }
}

// recv() that retries EINTR.
ssize_t Recv(int fd, uint8_t* buf, size_t size) {
  for (;;) {
    const ssize_t n = recv(fd, buf, size, 0);
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
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
    if (!WaitReadable(fd)) {
      Harness& h = GetHarness();
      fprintf(stderr, "login not answered in %d ms: %zu connections, %zu sessions\n",
              kDeadlineMs,
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
    const ssize_t n = Recv(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    buffer.insert(buffer.end(), buf, buf + n);
  }
}

// Drains until the target closes; aborts if it never does.
void DrainUntilClosed(int fd) {
  for (;;) {
    if (!WaitReadable(fd)) {
      fprintf(stderr, "target neither answered nor closed in %d ms after our EOF\n",
              kDeadlineMs);
      abort();  // a hang
    }
    uint8_t buf[65536];
    const ssize_t n = Recv(fd, buf, sizeof(buf));
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
  // A blocking connect() interrupted by a signal keeps connecting in the
  // background (EINTR): wait for it like a non-blocking one.
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  if (rc != 0 && errno == EINTR) {
    pollfd pfd{fd, POLLOUT, 0};
    while ((rc = poll(&pfd, 1, kDeadlineMs)) < 0 && errno == EINTR) {
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = (rc > 0 && err == 0) ? 0 : -1;
  }
  if (rc != 0) {
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
