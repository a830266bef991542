// A RestServer on 127.0.0.1, port 0, with a fresh self-signed certificate and
// token in a private temporary directory, over a FakeBackend. Shared by the
// server and CLI tests.
#ifndef TESTS_MGMT_TEST_SERVER_H_
#define TESTS_MGMT_TEST_SERVER_H_

#include <stdlib.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "appliance/mgmt/credentials.h"
#include "appliance/mgmt/rest_server.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "tests/mgmt/fake_backend.h"

namespace appliance::mgmt::testing {

// A new empty directory under TEST_TMPDIR.
inline std::string MakeTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/mgmtXXXXXX");
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

// Records the HA calls; answers with `status`, or `error` when it is set.
class FakeHaBackend : public HaBackend {
 public:
  HaStatus GetHaStatus() override { return status; }
  absl::StatusOr<HaStatus> Takeover() override {
    takeovers++;
    if (!error.ok()) return error;
    return status;
  }
  absl::StatusOr<HaStatus> Giveback() override {
    givebacks++;
    if (!error.ok()) return error;
    return status;
  }
  absl::StatusOr<HaStatus> ClearOffline(
      const HaClearOfflineRequest& request) override {
    cleared = request;
    if (!error.ok()) return error;
    return status;
  }
  absl::StatusOr<HaStatus> SetMailboxFault(bool stopped) override {
    status.set_mailbox_writes_stopped(stopped);
    return status;
  }
  HaStatus status;
  absl::Status error;
  int takeovers = 0;
  int givebacks = 0;
  HaClearOfflineRequest cleared;
};

struct TestServer {
  // Starts the server; check `server != nullptr` (a failure is reported).
  // with_ha: serve the HA routes from `ha` (a paired node).
  explicit TestServer(size_t max_body_bytes = 64 * 1024, bool with_ha = true) {
    dir = MakeTempDir();
    cert_file = dir + "/mgmt.crt";
    absl::StatusOr<CertificateFiles> files =
        EnsureSelfSignedCertificate("127.0.0.1", cert_file, dir + "/mgmt.key");
    EXPECT_TRUE(files.ok()) << files.status();
    token_file = dir + "/token";
    absl::StatusOr<std::string> loaded = LoadOrCreateToken(token_file);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!files.ok() || !loaded.ok()) return;
    token = *loaded;
    RestServer::Options options;
    options.bind_address = "127.0.0.1";
    options.port = 0;
    options.cert_file = files->cert_file;
    options.key_file = files->key_file;
    options.token = token;
    options.max_body_bytes = max_body_bytes;
    options.threads = 2;
    if (with_ha) options.ha = &ha;
    absl::StatusOr<std::unique_ptr<RestServer>> created =
        RestServer::Create(backend, registry, options);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return;
    absl::Status started = (*created)->Start();
    EXPECT_TRUE(started.ok()) << started;
    if (started.ok()) server = std::move(*created);
  }

  std::string url() const { return absl::StrCat("https://127.0.0.1:", server->port()); }

  FakeBackend backend;
  FakeHaBackend ha;
  metrics::MetricsRegistry registry;
  std::string dir;
  std::string cert_file;
  std::string token_file;
  std::string token;
  std::unique_ptr<RestServer> server;
};

}  // namespace appliance::mgmt::testing

#endif  // TESTS_MGMT_TEST_SERVER_H_
