// How it works: every method is registered on one catch-all pattern and
// Handler::Handle() does the routing itself, so that authentication comes
// before anything else, unknown paths get 404 and known paths with the wrong
// method get 405 with Allow. httplib reads the body first (up to
// max_body_bytes, else 413 via the error handler). The httplib logger hook,
// which runs after every response (including the ones httplib makes itself),
// counts requests in metrics and writes the access log.
#include "appliance/mgmt/rest_server.h"

#include "appliance/mgmt/ha_backend.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "appliance/mgmt/api_validation.h"
#include "glog/logging.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"

namespace appliance::mgmt {
namespace {

constexpr char kJsonContentType[] = "application/json";
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4";
constexpr char kBearerChallenge[] = "Bearer realm=\"appliance\"";
constexpr absl::string_view kApiPrefix = "/api/";
constexpr absl::string_view kLunsPath = "/api/v1/luns";

using Sha256 = std::array<unsigned char, 32>;

Sha256 HashToken(absl::string_view token) {
  Sha256 digest{};
  unsigned int size = 0;
  EVP_Digest(token.data(), token.size(), digest.data(), &size, EVP_sha256(),
             nullptr);
  return digest;
}

enum class Route {
  kNode, kLuns, kLun, kLifs, kLifMigrate, kPortFault, kMetrics,
  kHa, kHaTakeover, kHaGiveback, kHaClearOffline, kMailboxFault, kUnknown
};

struct RouteMatch {
  Route route = Route::kUnknown;
  absl::string_view label = "unmatched";  // Metric label: the path template.
  absl::string_view id;  // {id} of /api/v1/luns/{id}, {name} of the LIF and
                         // port routes.
};

// The single path segment between prefix and suffix ("" when path has another
// shape).
absl::string_view SegmentBetween(absl::string_view path, absl::string_view prefix,
                                 absl::string_view suffix) {
  if (!absl::StartsWith(path, prefix) || !absl::EndsWith(path, suffix) ||
      path.size() <= prefix.size() + suffix.size()) {
    return {};
  }
  path.remove_prefix(prefix.size());
  path.remove_suffix(suffix.size());
  return absl::StrContains(path, '/') ? absl::string_view() : path;
}

RouteMatch MatchRoute(absl::string_view path) {
  if (path == "/api/v1/node") return {Route::kNode, "/api/v1/node", {}};
  if (path == kLunsPath) return {Route::kLuns, "/api/v1/luns", {}};
  if (path == "/metrics") return {Route::kMetrics, "/metrics", {}};
  if (path == "/api/v1/lifs") return {Route::kLifs, "/api/v1/lifs", {}};
  if (path == "/api/v1/ha") return {Route::kHa, "/api/v1/ha", {}};
  if (path == "/api/v1/ha/takeover") {
    return {Route::kHaTakeover, "/api/v1/ha/takeover", {}};
  }
  if (path == "/api/v1/ha/giveback") {
    return {Route::kHaGiveback, "/api/v1/ha/giveback", {}};
  }
  if (path == "/api/v1/ha/clear-offline") {
    return {Route::kHaClearOffline, "/api/v1/ha/clear-offline", {}};
  }
  if (path == "/api/v1/faults/mailbox") {
    return {Route::kMailboxFault, "/api/v1/faults/mailbox", {}};
  }
  if (absl::string_view name =
          SegmentBetween(path, "/api/v1/lifs/", "/migrate");
      !name.empty()) {
    return {Route::kLifMigrate, "/api/v1/lifs/{name}/migrate", name};
  }
  if (absl::string_view name = SegmentBetween(path, "/api/v1/faults/ports/", "");
      !name.empty()) {
    return {Route::kPortFault, "/api/v1/faults/ports/{name}", name};
  }
  constexpr absl::string_view kLunPrefix = "/api/v1/luns/";
  if (absl::StartsWith(path, kLunPrefix)) {
    path.remove_prefix(kLunPrefix.size());
    if (!path.empty() && !absl::StrContains(path, '/')) {
      return {Route::kLun, "/api/v1/luns/{id}", path};
    }
  }
  return {};
}

// Methods each route answers; HEAD is served as GET by httplib.
absl::string_view AllowedMethods(Route route) {
  switch (route) {
    case Route::kLuns: return "GET, POST";
    case Route::kLun: return "GET, DELETE";
    case Route::kLifMigrate:
    case Route::kPortFault:
    case Route::kHaTakeover:
    case Route::kHaGiveback:
    case Route::kHaClearOffline:
    case Route::kMailboxFault: return "POST";
    default: return "GET";
  }
}

bool MethodAllowed(Route route, absl::string_view method) {
  if (AllowedMethods(route) == "POST") return method == "POST";
  if (method == "GET" || method == "HEAD") return true;
  if (route == Route::kLuns) return method == "POST";
  if (route == Route::kLun) return method == "DELETE";
  return false;
}

google::protobuf::util::JsonPrintOptions PrintOptions() {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;  // lowerCamelCase, see header.
  return options;
}

void ReplyMessage(httplib::Response& res, int status,
                  const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::Status printed =
      google::protobuf::util::MessageToJsonString(message, &json,
                                                  PrintOptions());
  if (!printed.ok()) {
    res.status = 500;
    res.set_content("{\"error\":\"cannot encode reply\"}", kJsonContentType);
    return;
  }
  res.status = status;
  res.set_content(json + "\n", kJsonContentType);
}

void ReplyError(httplib::Response& res, int status, absl::string_view message) {
  ErrorReply reply;
  reply.set_error(std::string(message));
  ReplyMessage(res, status, reply);
}

void ReplyStatus(httplib::Response& res, const absl::Status& status) {
  ReplyError(res, HttpStatusFromStatus(status), status.message());
}

const char* DefaultErrorMessage(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "unauthorized";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 408: return "request timeout";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 416: return "range not satisfiable";
    default: return status >= 500 ? "internal error" : "request failed";
  }
}

}  // namespace

int HttpStatusFromStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition: return 409;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

// Request handling, separate from the server's lifecycle. Thread-safe: httplib
// calls it from its worker threads.
class RestServer::Handler {
 public:
  Handler(ManagementBackend& backend, HaBackend* ha,
          metrics::MetricsRegistry& registry,
          metrics::CounterFamily& requests, absl::string_view token,
          bool metrics_require_token)
      : backend_(backend),
        ha_(ha),
        registry_(registry),
        requests_(requests),
        token_digest_(HashToken(token)),
        metrics_require_token_(metrics_require_token) {}

  void Handle(const httplib::Request& req, httplib::Response& res) {
    const RouteMatch match = MatchRoute(req.path);
    const bool needs_token =
        absl::StartsWith(req.path, kApiPrefix) ||
        (match.route == Route::kMetrics && metrics_require_token_);
    if (needs_token && !Authenticate(req, res)) return;
    if (match.route == Route::kUnknown) {
      ReplyError(res, 404, absl::StrCat("no such resource: ", req.path));
      return;
    }
    if (!MethodAllowed(match.route, req.method)) {
      res.set_header("Allow", std::string(AllowedMethods(match.route)));
      ReplyError(res, 405,
                 absl::StrCat("method ", req.method, " not allowed on ",
                              req.path, "; allowed: ",
                              AllowedMethods(match.route)));
      return;
    }
    const bool is_get = req.method == "GET" || req.method == "HEAD";
    switch (match.route) {
      case Route::kNode: return GetNode(res);
      case Route::kLuns: return is_get ? ListLuns(res) : CreateLun(req, res);
      case Route::kLun:
        return is_get ? GetLun(match.id, res) : DeleteLun(match.id, res);
      case Route::kLifs: return ListLifs(res);
      case Route::kLifMigrate: return MigrateLif(match.id, req, res);
      case Route::kPortFault: return SetPortFault(match.id, req, res);
      case Route::kMetrics: return GetMetrics(res);
      case Route::kHa:
      case Route::kHaTakeover:
      case Route::kHaGiveback:
      case Route::kHaClearOffline:
      case Route::kMailboxFault: return HandleHa(match.route, req, res);
      case Route::kUnknown: break;
    }
  }

  void HandleHa(Route route, const httplib::Request& req,
                httplib::Response& res) {
    if (ha_ == nullptr) {
      return ReplyError(res, 404,
                        "high availability needs a paired node (no partner "
                        "configured)");
    }
    absl::StatusOr<HaStatus> status;
    switch (route) {
      case Route::kHa: return ReplyMessage(res, 200, ha_->GetHaStatus());
      case Route::kHaTakeover:
      case Route::kHaGiveback: {
        // No parameters: an empty body or {} (anything else is a 400).
        HaActionRequest none;
        if (!req.body.empty() && !ParseBody(req, none, res)) return;
        status = route == Route::kHaTakeover ? ha_->Takeover() : ha_->Giveback();
        break;
      }
      case Route::kHaClearOffline: {
        HaClearOfflineRequest request;
        if (!req.body.empty() && !ParseBody(req, request, res)) return;
        status = ha_->ClearOffline(request);
        break;
      }
      case Route::kMailboxFault: {
        MailboxFaultRequest request;
        if (!ParseBody(req, request, res)) return;
        if (!request.has_stopped()) {
          return ReplyError(res, 400, "stopped (true or false) is required");
        }
        status = ha_->SetMailboxFault(request.stopped());
        break;
      }
      default: return ReplyError(res, 404, "no such resource");
    }
    if (!status.ok()) return ReplyStatus(res, status.status());
    ReplyMessage(res, 200, *status);
  }

  // httplib's error hook: gives bodiless error responses (413, malformed
  // requests) the same JSON shape as ours.
  httplib::Server::HandlerResponse FillErrorBody(const httplib::Request&,
                                                 httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ReplyError(res, res.status, DefaultErrorMessage(res.status));
    return httplib::Server::HandlerResponse::Handled;
  }

  // Runs after each response is written.
  void Record(const httplib::Request& req, const httplib::Response& res) {
    const RouteMatch match = MatchRoute(req.path);
    absl::StatusOr<metrics::Counter*> counter = requests_.WithLabels(
        {req.method, std::string(match.label), absl::StrCat(res.status)});
    if (counter.ok()) (*counter)->Increment();
    LOG(INFO) << "mgmt " << req.remote_addr << ":" << req.remote_port << " "
              << req.method << " " << req.path << " -> " << res.status << " ("
              << res.body.size() << " bytes)";
  }

 private:
  bool Authenticate(const httplib::Request& req, httplib::Response& res) {
    const std::string header = req.get_header_value("Authorization");
    absl::string_view credentials = header;
    constexpr absl::string_view kScheme = "bearer ";
    if (credentials.size() < kScheme.size() ||
        !absl::EqualsIgnoreCase(credentials.substr(0, kScheme.size()),
                                kScheme)) {
      res.set_header("WWW-Authenticate", kBearerChallenge);
      ReplyError(res, 401, "missing bearer token");
      return false;
    }
    credentials.remove_prefix(kScheme.size());
    credentials = absl::StripAsciiWhitespace(credentials);
    // Comparing digests keeps the time independent of both the contents and
    // the length of the token presented.
    const Sha256 presented = HashToken(credentials);
    if (CRYPTO_memcmp(presented.data(), token_digest_.data(),
                      token_digest_.size()) != 0) {
      res.set_header("WWW-Authenticate",
                     absl::StrCat(kBearerChallenge, ", error=\"invalid_token\""));
      ReplyError(res, 401, "invalid bearer token");
      return false;
    }
    return true;
  }

  void GetNode(httplib::Response& res) {
    absl::StatusOr<NodeInfo> node = backend_.GetNode();
    if (!node.ok()) return ReplyStatus(res, node.status());
    ReplyMessage(res, 200, *node);
  }

  void ListLuns(httplib::Response& res) {
    absl::StatusOr<LunList> luns = backend_.ListLuns();
    if (!luns.ok()) return ReplyStatus(res, luns.status());
    ReplyMessage(res, 200, *luns);
  }

  void CreateLun(const httplib::Request& req, httplib::Response& res) {
    CreateLunRequest request;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    google::protobuf::util::Status parsed =
        google::protobuf::util::JsonStringToMessage(req.body, &request,
                                                    options);
    if (!parsed.ok()) {
      return ReplyError(res, 400,
                        absl::StrCat("invalid CreateLunRequest JSON: ",
                                     std::string(parsed.message())));
    }
    if (absl::Status valid = ValidateCreateLunRequest(request); !valid.ok()) {
      return ReplyStatus(res, valid);
    }
    absl::StatusOr<config::LunDefinition> lun = backend_.CreateLun(request);
    if (!lun.ok()) return ReplyStatus(res, lun.status());
    res.set_header("Location", absl::StrCat(kLunsPath, "/", lun->id()));
    ReplyMessage(res, 201, *lun);
  }

  // Parses a JSON request body into message; replies 400 and returns false
  // when it does not parse.
  static bool ParseBody(const httplib::Request& req,
                        google::protobuf::Message& message,
                        httplib::Response& res) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    google::protobuf::util::Status parsed =
        google::protobuf::util::JsonStringToMessage(req.body, &message,
                                                    options);
    if (parsed.ok()) return true;
    ReplyError(res, 400,
               absl::StrCat("invalid ", message.GetDescriptor()->name(),
                            " JSON: ", std::string(parsed.message())));
    return false;
  }

  void ListLifs(httplib::Response& res) {
    absl::StatusOr<LifList> lifs = backend_.ListLifs();
    if (!lifs.ok()) return ReplyStatus(res, lifs.status());
    ReplyMessage(res, 200, *lifs);
  }

  void MigrateLif(absl::string_view name, const httplib::Request& req,
                  httplib::Response& res) {
    MigrateLifRequest request;
    if (!ParseBody(req, request, res)) return;
    if (request.node().empty()) {
      return ReplyError(res, 400, "node is required");
    }
    absl::StatusOr<config::Lif> lif =
        backend_.MigrateLif(std::string(name), request.node());
    if (!lif.ok()) return ReplyStatus(res, lif.status());
    ReplyMessage(res, 200, *lif);
  }

  void SetPortFault(absl::string_view name, const httplib::Request& req,
                    httplib::Response& res) {
    PortFaultRequest request;
    if (!ParseBody(req, request, res)) return;
    if (!request.has_down()) {
      return ReplyError(res, 400, "down (true or false) is required");
    }
    absl::StatusOr<PortStatus> port =
        backend_.SetPortFault(std::string(name), request.down());
    if (!port.ok()) return ReplyStatus(res, port.status());
    ReplyMessage(res, 200, *port);
  }

  void GetLun(absl::string_view id_text, httplib::Response& res) {
    absl::StatusOr<uint64_t> id = ParseLunId(id_text);
    if (!id.ok()) return ReplyStatus(res, id.status());
    absl::StatusOr<config::LunDefinition> lun = backend_.GetLun(*id);
    if (!lun.ok()) return ReplyStatus(res, lun.status());
    ReplyMessage(res, 200, *lun);
  }

  void DeleteLun(absl::string_view id_text, httplib::Response& res) {
    absl::StatusOr<uint64_t> id = ParseLunId(id_text);
    if (!id.ok()) return ReplyStatus(res, id.status());
    if (absl::Status deleted = backend_.DeleteLun(*id); !deleted.ok()) {
      return ReplyStatus(res, deleted);
    }
    res.status = 204;
  }

  void GetMetrics(httplib::Response& res) {
    res.status = 200;
    res.set_content(registry_.RenderPrometheusText(), kMetricsContentType);
  }

  ManagementBackend& backend_;
  HaBackend* const ha_;
  metrics::MetricsRegistry& registry_;
  metrics::CounterFamily& requests_;
  const Sha256 token_digest_;
  const bool metrics_require_token_;
};

namespace {

// httplib's SSLServer with a way to close a listening socket that was bound
// but never served (httplib's stop() only acts on a running server).
class BoundSslServer : public httplib::SSLServer {
 public:
  using httplib::SSLServer::SSLServer;

  void CloseUnusedListener() {
    const socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock != INVALID_SOCKET) {
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
    }
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RestServer>> RestServer::Create(
    ManagementBackend& backend, metrics::MetricsRegistry& metrics,
    Options options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid port ", options.port));
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError("cert_file and key_file are required");
  }
  if (options.token.empty()) {
    return absl::InvalidArgumentError("a bearer token is required");
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError("threads must be at least 1");
  }
  if (options.max_body_bytes == 0) {
    return absl::InvalidArgumentError("max_body_bytes must be positive");
  }

  absl::StatusOr<metrics::CounterFamily*> requests = metrics.AddCounterFamily(
      "appliance_mgmt_http_requests_total",
      "Management REST requests by method, route and HTTP status code.",
      {"method", "route", "code"});
  if (!requests.ok()) return requests.status();

  auto server = std::make_unique<BoundSslServer>(options.cert_file.c_str(),
                                                 options.key_file.c_str());
  if (!server->is_valid()) {
    return absl::InternalError(absl::StrCat(
        "cannot load TLS certificate ", options.cert_file, " and key ",
        options.key_file));
  }
  SSL_CTX_set_min_proto_version(server->ssl_context(), TLS1_2_VERSION);

  auto handler = std::make_unique<Handler>(backend, options.ha, metrics,
                                           **requests,
                                           options.token,
                                           options.metrics_require_token);
  Handler* h = handler.get();
  const int threads = options.threads;
  server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server->set_payload_max_length(options.max_body_bytes);
  server->set_read_timeout(10, 0);
  server->set_write_timeout(10, 0);
  auto handle = [h](const httplib::Request& req, httplib::Response& res) {
    h->Handle(req, res);
  };
  // Every method known to httplib, so routing (404/405) is ours alone.
  const std::string any = ".*";
  server->Get(any, handle);
  server->Post(any, handle);
  server->Put(any, handle);
  server->Patch(any, handle);
  server->Delete(any, handle);
  server->Options(any, handle);
  server->set_error_handler(httplib::Server::HandlerWithResponse(
      [h](const httplib::Request& req, httplib::Response& res) {
        return h->FillErrorBody(req, res);
      }));
  server->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        ReplyError(res, 500, "internal error");
      });
  server->set_logger(
      [h](const httplib::Request& req, const httplib::Response& res) {
        h->Record(req, res);
      });

  int port = options.port;
  if (port == 0) {
    port = server->bind_to_any_port(options.bind_address);
  } else if (!server->bind_to_port(options.bind_address, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.bind_address, ":", options.port));
  }
  LOG(INFO) << "management REST endpoint bound to " << options.bind_address
            << ":" << port;
  return std::unique_ptr<RestServer>(
      new RestServer(std::move(server), std::move(handler), port));
}

RestServer::RestServer(std::unique_ptr<httplib::SSLServer> server,
                       std::unique_ptr<Handler> handler, int port)
    : handler_(std::move(handler)), server_(std::move(server)), port_(port) {}

RestServer::~RestServer() { Stop(); }

absl::Status RestServer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError("server already started or stopped");
  }
  started_ = true;
  auto listen_done = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([server = server_.get(), listen_done] {
    if (!server->listen_after_bind()) {
      LOG(ERROR) << "management REST accept loop ended with an error";
    }
    listen_done->store(true);
  });
  // httplib's stop() is a no-op until the accept loop has started; waiting
  // here makes Stop() right after Start() reliable.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!server_->is_running() && !listen_done->load() &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (!server_->is_running()) {
    return absl::InternalError("management REST accept loop did not start");
  }
  return absl::OkStatus();
}

void RestServer::Stop() {
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  stopped_ = true;
  if (started_) {
    server_->stop();
    if (thread_.joinable()) thread_.join();
  } else {
    static_cast<BoundSslServer*>(server_.get())->CloseUnusedListener();
  }
}

}  // namespace appliance::mgmt
