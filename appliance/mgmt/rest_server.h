// RestServer: the node's HTTPS management endpoint (JSON over REST), the API
// that appliancectl and automation use, plus the Prometheus /metrics scrape.
//
// Routes (every one needs "Authorization: Bearer <token>"):
//   GET    /api/v1/node        NodeInfo
//   GET    /api/v1/luns        LunList
//   POST   /api/v1/luns        CreateLunRequest -> 201 LunDefinition (+Location)
//   GET    /api/v1/luns/{id}   LunDefinition
//   DELETE /api/v1/luns/{id}   204, no body
//   GET    /api/v1/lifs        LifList
//   POST   /api/v1/lifs/{name}/migrate   MigrateLifRequest -> 200 Lif
//   POST   /api/v1/faults/ports/{name}   PortFaultRequest -> 200 PortStatus
//   GET    /metrics            Prometheus text, "text/plain; version=0.0.4"
//                              (token required unless
//                              Options::metrics_require_token is false)
//
// JSON is protobuf's canonical JSON mapping of the messages in api.proto:
// field names are lowerCamelCase on output ("sizeBytes", "blockSize"); input
// accepts lowerCamelCase or the proto names ("size_bytes"). Fields with default
// values are printed. 64-bit integers print as JSON strings ("1073741824"), as
// the mapping requires; input accepts numbers or strings. Unknown fields are
// rejected.
//
// Errors are {"error": "<message>"} with: 400 bad JSON / unknown field / wrong
// type / failed validation / bad id / unknown node, 401 missing or wrong token
// (with WWW-Authenticate: Bearer), 404 unknown LUN, LIF, port or route, 405
// wrong method on a known path (with Allow), 409 already exists / failed
// precondition (LIF already there, partner unreachable), 413 body larger than
// Options::max_body_bytes, 503 backend unavailable, 500 otherwise (see
// HttpStatusFromStatus). A request body that fails parsing or validation
// never reaches the backend.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<RestServer>> server =
//       RestServer::Create(backend, registry, options);
//   (*server)->Start();            // serves on a background thread pool
//   int port = (*server)->port();  // the bound port (useful with port 0)
//   ...
//   (*server)->Stop();             // also done by the destructor
#ifndef APPLIANCE_MGMT_REST_SERVER_H_
#define APPLIANCE_MGMT_REST_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appliance/mgmt/backend.h"
#include "appliance/mgmt/ha_backend.h"
#include "common/metrics.h"

namespace httplib {
class SSLServer;
struct Request;
struct Response;
}  // namespace httplib

namespace appliance::mgmt {

// The HTTP status for a backend Status (the mapping documented in backend.h):
// InvalidArgument 400, Unauthenticated 401, NotFound 404, AlreadyExists and
// FailedPrecondition 409, Unavailable 503, OK 200, anything else 500.
int HttpStatusFromStatus(const absl::Status& status);

class RestServer {
 public:
  struct Options {
    // Address to listen on: an IPv4/IPv6 literal or host name. "0.0.0.0"
    // listens on every IPv4 address. Default: loopback only.
    std::string bind_address = "127.0.0.1";
    // TCP port; 0 picks a free ephemeral port, read it back with port().
    int port = 8443;
    // PEM certificate (chain) and private key of the server. Required; see
    // EnsureSelfSignedCertificate() in credentials.h to create them.
    std::string cert_file;
    std::string key_file;
    // The bearer token clients must present. Required, non-empty; see
    // LoadOrCreateToken() in credentials.h.
    std::string token;
    // Largest accepted request body; larger ones get 413 without being parsed.
    size_t max_body_bytes = 64 * 1024;
    // Worker threads serving connections (each keep-alive connection holds one
    // while open).
    int threads = 4;
    // Whether GET /metrics needs the token too. Default true: metrics reveal
    // LUN and session details; Prometheus sends it with `authorization`
    // (credentials_file) in its scrape config.
    bool metrics_require_token = true;
    // A paired node's HA controller (GET /api/v1/ha, takeover, giveback,
    // clear-offline, the mailbox fault); null: those routes answer 404.
    // Not owned; must outlive the server.
    HaBackend* ha = nullptr;
  };

  // Loads the certificate, binds the listening socket (so port() is known and
  // clients may connect as soon as this returns) and registers the request
  // metrics in `metrics`. Does not serve until Start(). `backend` and `metrics`
  // must outlive the server. InvalidArgument for bad options, Unavailable when
  // the address cannot be bound, Internal when the certificate does not load.
  static absl::StatusOr<std::unique_ptr<RestServer>> Create(
      ManagementBackend& backend, metrics::MetricsRegistry& metrics,
      Options options);

  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;
  ~RestServer();

  // Starts serving on a background thread; returns once the accept loop runs.
  // FailedPrecondition when already started or stopped.
  absl::Status Start();
  // Stops accepting, waits for the accept loop to end. Idempotent.
  void Stop();

  // The bound TCP port.
  int port() const { return port_; }

 private:
  class Handler;

  RestServer(std::unique_ptr<httplib::SSLServer> server,
             std::unique_ptr<Handler> handler, int port);

  std::unique_ptr<Handler> handler_;
  std::unique_ptr<httplib::SSLServer> server_;
  const int port_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_REST_SERVER_H_
