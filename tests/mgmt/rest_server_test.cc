// The REST server end to end: a real HTTPS client (httplib::SSLClient, verifying
// the server's self-signed certificate) against a server on port 0.
#include "appliance/mgmt/rest_server.h"

#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/mgmt/test_server.h"

namespace appliance::mgmt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(env_.server, nullptr);
    client_ = std::make_unique<httplib::SSLClient>("127.0.0.1", env_.server->port());
    client_->set_ca_cert_path(env_.cert_file.c_str());
    client_->enable_server_certificate_verification(true);
    client_->set_bearer_token_auth(env_.token.c_str());
  }

  httplib::Result Post(const std::string& body) {
    return client_->Post("/api/v1/luns", body, "application/json");
  }

  // The "error" member of a JSON error reply.
  static std::string ErrorOf(const httplib::Result& result) {
    ErrorReply reply;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &reply).ok())
        << result->body;
    return reply.error();
  }

  // Asserts a create request is refused with `status` before reaching the backend.
  void ExpectRejectedBeforeBackend(const std::string& body, int status) {
    httplib::Result result = Post(body);
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, status) << body << " -> " << result->body;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    EXPECT_FALSE(ErrorOf(result).empty());
    EXPECT_EQ(env_.backend.create_calls(), 0) << body;
    EXPECT_EQ(env_.backend.mutations(), 0);
  }

  config::LunDefinition CreateLun(const std::string& body) {
    httplib::Result result = Post(body);
    EXPECT_TRUE(result);
    config::LunDefinition lun;
    if (!result) return lun;
    EXPECT_EQ(result->status, 201) << result->body;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &lun).ok());
    return lun;
  }

  TestServer env_;
  std::unique_ptr<httplib::SSLClient> client_;
};

TEST_F(RestServerTest, GetNode) {
  httplib::Result result = client_->Get("/api/v1/node");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  NodeInfo node;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &node).ok());
  EXPECT_EQ(node.node_name(), "node-a");
  EXPECT_EQ(node.lifs_size(), 1);
  // lowerCamelCase names, defaults printed.
  EXPECT_THAT(result->body, HasSubstr("\"nodeName\":\"node-a\""));
  EXPECT_THAT(result->body, HasSubstr("\"lunCount\":\"0\""));
}

TEST_F(RestServerTest, CreateListShowDeleteLun) {
  config::LunDefinition lun = CreateLun(
      R"({"name": "db1", "sizeBytes": "67108864", "blockSize": 4096})");
  EXPECT_EQ(lun.id(), 0u);
  EXPECT_EQ(lun.name(), "db1");
  EXPECT_EQ(lun.size_bytes(), 64u << 20);
  EXPECT_EQ(lun.block_size(), 4096u);

  // Proto field names and JSON numbers are accepted too; explicit id.
  httplib::Result created = Post(R"({"name": "logs", "size_bytes": 1048576, "id": 7})");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(created->get_header_value("Location"), "/api/v1/luns/7");

  httplib::Result list = client_->Get("/api/v1/luns");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  LunList luns;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(list->body, &luns).ok());
  ASSERT_EQ(luns.luns_size(), 2);
  EXPECT_EQ(luns.luns(1).id(), 7u);
  EXPECT_EQ(luns.luns(1).block_size(), 512u);

  httplib::Result show = client_->Get("/api/v1/luns/7");
  ASSERT_TRUE(show);
  EXPECT_EQ(show->status, 200);
  EXPECT_THAT(show->body, HasSubstr("\"name\":\"logs\""));

  httplib::Result deleted = client_->Delete("/api/v1/luns/7");
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 204);
  EXPECT_TRUE(deleted->body.empty());
  EXPECT_EQ(env_.backend.lun_count(), 1u);

  httplib::Result gone = client_->Get("/api/v1/luns/7");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
  EXPECT_THAT(ErrorOf(gone), HasSubstr("no LUN 7"));
}

TEST_F(RestServerTest, MissingTokenIs401AndChangesNothing) {
  httplib::SSLClient anonymous("127.0.0.1", env_.server->port());
  anonymous.set_ca_cert_path(env_.cert_file.c_str());
  anonymous.enable_server_certificate_verification(true);
  for (const char* path : {"/api/v1/node", "/api/v1/luns", "/api/v1/luns/0",
                           "/api/v1/nonexistent", "/metrics"}) {
    httplib::Result result = anonymous.Get(path);
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 401) << path;
    EXPECT_EQ(result->get_header_value("WWW-Authenticate"),
              "Bearer realm=\"appliance\"")
        << path;
  }
  httplib::Result post = anonymous.Post(
      "/api/v1/luns", R"({"name": "x", "sizeBytes": "4096"})", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 401);
  httplib::Result del = anonymous.Delete("/api/v1/luns/0");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 401);
  EXPECT_EQ(env_.backend.create_calls(), 0);
  EXPECT_EQ(env_.backend.delete_calls(), 0);
}

TEST_F(RestServerTest, WrongTokenIs401AndChangesNothing) {
  CreateLun(R"({"name": "keep", "sizeBytes": "4096"})");
  const int mutations = env_.backend.mutations();
  for (const std::string& token : {env_.token + "x", std::string("wrong"),
                                   env_.token.substr(1), std::string("")}) {
    httplib::SSLClient intruder("127.0.0.1", env_.server->port());
    intruder.enable_server_certificate_verification(false);
    intruder.set_default_headers({{"Authorization", "Bearer " + token}});
    httplib::Result del = intruder.Delete("/api/v1/luns/0");
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 401) << token;
    EXPECT_THAT(del->get_header_value("WWW-Authenticate"), HasSubstr("Bearer"));
    httplib::Result post = intruder.Post(
        "/api/v1/luns", R"({"name": "x", "sizeBytes": "4096"})", "application/json");
    ASSERT_TRUE(post);
    EXPECT_EQ(post->status, 401);
  }
  // Another scheme is not a bearer token.
  httplib::SSLClient basic("127.0.0.1", env_.server->port());
  basic.enable_server_certificate_verification(false);
  basic.set_basic_auth("admin", env_.token.c_str());
  httplib::Result result = basic.Get("/api/v1/luns");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 401);
  EXPECT_EQ(env_.backend.mutations(), mutations);
  EXPECT_EQ(env_.backend.lun_count(), 1u);
}

TEST_F(RestServerTest, MalformedJsonIs400) {
  ExpectRejectedBeforeBackend("{not json", 400);
  ExpectRejectedBeforeBackend("", 400);
  ExpectRejectedBeforeBackend("[1, 2]", 400);
}

TEST_F(RestServerTest, UnknownFieldIs400) {
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "4096", "color": "red"})",
                              400);
}

TEST_F(RestServerTest, WrongTypesAre400) {
  ExpectRejectedBeforeBackend(R"({"name": 5, "sizeBytes": "4096"})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "lots"})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": 4096.5})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": true})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "4096", "blockSize": "x"})",
                              400);
}

TEST_F(RestServerTest, PhysicalBlockSizeAndReadOnlyReachTheBackend) {
  config::LunDefinition lun = CreateLun(
      R"({"name": "ro", "sizeBytes": "1048576", "physicalBlockSize": 4096, "readOnly": true})");
  EXPECT_EQ(lun.block_size(), 512u);
  EXPECT_EQ(lun.physical_block_size(), 4096u);
  EXPECT_TRUE(lun.read_only());
  config::LunDefinition plain = CreateLun(R"({"name": "rw", "sizeBytes": "1048576"})");
  EXPECT_EQ(plain.physical_block_size(), 0u);
  EXPECT_FALSE(plain.read_only());
}

TEST_F(RestServerTest, InvalidValuesAre400) {
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": -4096})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "-1"})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": 0})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a"})", 400);
  ExpectRejectedBeforeBackend(R"({"sizeBytes": "4096"})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a b/c", "sizeBytes": "4096"})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "1000"})", 400);
  ExpectRejectedBeforeBackend(
      R"({"name": "a", "sizeBytes": "4096", "blockSize": 1024})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "4096", "id": 99999})", 400);
  ExpectRejectedBeforeBackend(
      R"({"name": "a", "sizeBytes": "4096", "physicalBlockSize": 1536})", 400);
  ExpectRejectedBeforeBackend(
      R"({"name": "a", "sizeBytes": "4096", "blockSize": 4096, "physicalBlockSize": 512})",
      400);
  ExpectRejectedBeforeBackend(
      R"({"name": "a", "sizeBytes": "4096", "physicalBlockSize": 16384})", 400);
  ExpectRejectedBeforeBackend(R"({"name": "a", "sizeBytes": "4096", "readOnly": 3})", 400);
  httplib::Result result = Post(R"({"name": "a", "sizeBytes": 0})");
  ASSERT_TRUE(result);
  EXPECT_THAT(ErrorOf(result), HasSubstr("size must be greater than 0"));
}

TEST_F(RestServerTest, BadIdInPathIs400) {
  CreateLun(R"({"name": "keep", "sizeBytes": "4096"})");
  for (const char* path : {"/api/v1/luns/abc", "/api/v1/luns/-1", "/api/v1/luns/1x",
                           "/api/v1/luns/99999999999999999999999",
                           "/api/v1/luns/%20"}) {
    httplib::Result get = client_->Get(path);
    ASSERT_TRUE(get) << path;
    EXPECT_EQ(get->status, 400) << path;
    httplib::Result del = client_->Delete(path);
    ASSERT_TRUE(del) << path;
    EXPECT_EQ(del->status, 400) << path;
  }
  EXPECT_EQ(env_.backend.delete_calls(), 0);
  EXPECT_EQ(env_.backend.lun_count(), 1u);
}

TEST_F(RestServerTest, UnknownLunIs404) {
  httplib::Result get = client_->Get("/api/v1/luns/12");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404);
  httplib::Result del = client_->Delete("/api/v1/luns/12");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 404);
  EXPECT_EQ(env_.backend.mutations(), 0);
}

TEST_F(RestServerTest, UnknownRouteIs404AndWrongMethodIs405) {
  for (const char* path : {"/api/v2/luns", "/api/v1/luns/1/snapshots", "/", "/api/v1/luns/"}) {
    httplib::Result result = client_->Get(path);
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 404) << path;
    EXPECT_FALSE(ErrorOf(result).empty());
  }
  httplib::Result put = client_->Put("/api/v1/luns/1", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  EXPECT_EQ(put->get_header_value("Allow"), "GET, DELETE");
  httplib::Result del = client_->Delete("/api/v1/luns");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
  EXPECT_EQ(del->get_header_value("Allow"), "GET, POST");
  httplib::Result post = client_->Post("/api/v1/node", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  httplib::Result metrics_post = client_->Post("/metrics", "", "text/plain");
  ASSERT_TRUE(metrics_post);
  EXPECT_EQ(metrics_post->status, 405);
  EXPECT_EQ(env_.backend.create_calls(), 0);
  EXPECT_EQ(env_.backend.delete_calls(), 0);
}

TEST_F(RestServerTest, DuplicateIs409) {
  CreateLun(R"({"name": "db1", "sizeBytes": "4096", "id": 3})");
  httplib::Result same_name = Post(R"({"name": "db1", "sizeBytes": "8192"})");
  ASSERT_TRUE(same_name);
  EXPECT_EQ(same_name->status, 409);
  EXPECT_THAT(ErrorOf(same_name), HasSubstr("db1"));
  httplib::Result same_id = Post(R"({"name": "db2", "sizeBytes": "8192", "id": 3})");
  ASSERT_TRUE(same_id);
  EXPECT_EQ(same_id->status, 409);
  EXPECT_EQ(env_.backend.lun_count(), 1u);
}

TEST_F(RestServerTest, BackendUnavailableIs503) {
  env_.backend.set_unavailable(true);
  httplib::Result result = client_->Get("/api/v1/luns");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  EXPECT_THAT(ErrorOf(result), HasSubstr("taking over"));
}

TEST(RestServerLimitsTest, BodyTooLargeIs413) {
  TestServer env(/*max_body_bytes=*/1024);
  ASSERT_NE(env.server, nullptr);
  httplib::SSLClient client("127.0.0.1", env.server->port());
  client.set_ca_cert_path(env.cert_file.c_str());
  client.enable_server_certificate_verification(true);
  client.set_bearer_token_auth(env.token.c_str());
  const std::string body = absl::StrCat(R"({"name": ")", std::string(4096, 'a'),
                                        R"(", "sizeBytes": "4096"})");
  httplib::Result result = client.Post("/api/v1/luns", body, "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 413);
  EXPECT_THAT(result->body, HasSubstr("\"error\""));
  EXPECT_EQ(env.backend.create_calls(), 0);
  // The connection and server are still usable afterwards.
  httplib::Result ok = client.Post("/api/v1/luns", R"({"name": "a", "sizeBytes": "4096"})",
                                   "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201);
}

TEST_F(RestServerTest, ListLifsShowsPlacement) {
  httplib::Result result = client_->Get("/api/v1/lifs");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  LifList lifs;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &lifs).ok());
  ASSERT_EQ(lifs.lifs_size(), 2);
  EXPECT_THAT(result->body, HasSubstr("\"currentNode\":\"node-a\""));
  EXPECT_THAT(result->body, HasSubstr("\"currentPort\":\"e0a\""));
}

TEST_F(RestServerTest, MigrateLif) {
  httplib::Result moved = client_->Post("/api/v1/lifs/lif-a1/migrate",
                                        R"({"node":"node-b"})", "application/json");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->status, 200) << moved->body;
  config::Lif lif;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(moved->body, &lif).ok());
  EXPECT_EQ(lif.name(), "lif-a1");
  EXPECT_EQ(lif.current_node(), "node-b");
  // Already there: 409.
  httplib::Result again = client_->Post("/api/v1/lifs/lif-a1/migrate",
                                        R"({"node":"node-b"})", "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409);
  // Partner unreachable: 409.
  env_.backend.set_partner_reachable(false);
  httplib::Result cut = client_->Post("/api/v1/lifs/lif-a1/migrate",
                                      R"({"node":"node-a"})", "application/json");
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->status, 409);
  EXPECT_FALSE(ErrorOf(cut).empty());
}

TEST_F(RestServerTest, MigrateLifErrors) {
  const auto post = [&](const std::string& path, const std::string& body) {
    httplib::Result r = client_->Post(path, body, "application/json");
    EXPECT_TRUE(r);
    return r ? r->status : -1;
  };
  const int before = env_.backend.migrate_calls();
  // Bad bodies never reach the backend.
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/migrate", "{"), 400);
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/migrate", "{}"), 400);
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/migrate", R"({"node":"node-b","x":1})"), 400);
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/migrate", R"({"node":7})"), 400);
  EXPECT_EQ(env_.backend.migrate_calls(), before);
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/migrate", R"({"node":"node-z"})"), 400);
  EXPECT_EQ(post("/api/v1/lifs/lif-zz/migrate", R"({"node":"node-b"})"), 404);
  EXPECT_EQ(post("/api/v1/lifs//migrate", R"({"node":"node-b"})"), 404);
  EXPECT_EQ(post("/api/v1/lifs/lif-a1/move", R"({"node":"node-b"})"), 404);
  httplib::Result get = client_->Get("/api/v1/lifs/lif-a1/migrate");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  EXPECT_EQ(env_.backend.mutations(), 0);
}

TEST_F(RestServerTest, PortFaultMovesLifsAndReportsThePort) {
  httplib::Result down = client_->Post("/api/v1/faults/ports/e0a", R"({"down":true})",
                                       "application/json");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 200) << down->body;
  PortStatus port;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(down->body, &port).ok());
  EXPECT_EQ(port.name(), "e0a");
  EXPECT_FALSE(port.up());
  EXPECT_EQ(port.lifs_size(), 0);  // lif-a1 moved to node-b
  httplib::Result lifs = client_->Get("/api/v1/lifs");
  ASSERT_TRUE(lifs);
  EXPECT_THAT(lifs->body, Not(HasSubstr("\"currentNode\":\"node-a\"")));
  httplib::Result up = client_->Post("/api/v1/faults/ports/e0a", R"({"down":false})",
                                     "application/json");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->status, 200);
  EXPECT_THAT(up->body, HasSubstr("\"up\":true"));
  const auto post = [&](const std::string& path, const std::string& body) {
    httplib::Result r = client_->Post(path, body, "application/json");
    EXPECT_TRUE(r);
    return r ? r->status : -1;
  };
  EXPECT_EQ(post("/api/v1/faults/ports/e9z", R"({"down":true})"), 404);
  EXPECT_EQ(post("/api/v1/faults/ports/e0a", "{}"), 400);
  EXPECT_EQ(post("/api/v1/faults/ports/e0a", R"({"down":"maybe"})"), 400);
  httplib::Result get = client_->Get("/api/v1/faults/ports/e0a");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
}

TEST_F(RestServerTest, MetricsAreTextFormatWithRequestCounters) {
  ASSERT_TRUE(client_->Get("/api/v1/node"));
  ASSERT_TRUE(client_->Get("/api/v1/luns/55"));
  httplib::Result result = client_->Get("/metrics");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  const std::string& text = result->body;
  EXPECT_THAT(text, HasSubstr("# HELP appliance_mgmt_http_requests_total "));
  EXPECT_THAT(text, HasSubstr("# TYPE appliance_mgmt_http_requests_total counter\n"));
  EXPECT_THAT(text, HasSubstr("appliance_mgmt_http_requests_total{method=\"GET\","
                              "route=\"/api/v1/node\",code=\"200\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("appliance_mgmt_http_requests_total{method=\"GET\","
                              "route=\"/api/v1/luns/{id}\",code=\"404\"} 1\n"));
  // Every line is a comment or "name{labels} value".
  std::istringstream lines(text);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (absl::StartsWith(line, "#")) continue;
    ++samples;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
  }
  EXPECT_GE(samples, 2);
}

TEST_F(RestServerTest, HaStatusTakeoverGivebackAndFaults) {
  env_.ha.status.set_node_name("node-b");
  env_.ha.status.set_state("active");
  httplib::Result status = client_->Get("/api/v1/ha");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->status, 200);
  EXPECT_THAT(status->body, HasSubstr(R"("state":"active")"));

  httplib::Result takeover =
      client_->Post("/api/v1/ha/takeover", "{}", "application/json");
  ASSERT_TRUE(takeover);
  EXPECT_EQ(takeover->status, 200);
  EXPECT_EQ(env_.ha.takeovers, 1);
  httplib::Result empty = client_->Post("/api/v1/ha/takeover", "", "application/json");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 200);
  EXPECT_EQ(env_.ha.takeovers, 2);
  // Parameters it does not take, a GET: refused, nothing done.
  httplib::Result extra = client_->Post("/api/v1/ha/takeover",
                                        R"({"force": true})", "application/json");
  ASSERT_TRUE(extra);
  EXPECT_EQ(extra->status, 400);
  httplib::Result get = client_->Get("/api/v1/ha/takeover");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(env_.ha.takeovers, 2);

  env_.ha.error = absl::FailedPreconditionError("partner node-a is unreachable");
  httplib::Result giveback =
      client_->Post("/api/v1/ha/giveback", "{}", "application/json");
  ASSERT_TRUE(giveback);
  EXPECT_EQ(giveback->status, 409);
  EXPECT_THAT(giveback->body, HasSubstr("unreachable"));
  EXPECT_EQ(env_.ha.givebacks, 1);
  env_.ha.error = absl::OkStatus();

  httplib::Result clear = client_->Post("/api/v1/ha/clear-offline",
                                        R"({"luns": [3, 4]})", "application/json");
  ASSERT_TRUE(clear);
  EXPECT_EQ(clear->status, 200);
  ASSERT_EQ(env_.ha.cleared.luns_size(), 2);
  EXPECT_EQ(env_.ha.cleared.luns(1), 4u);
  httplib::Result bad_clear = client_->Post(
      "/api/v1/ha/clear-offline", R"({"luns": "all"})", "application/json");
  ASSERT_TRUE(bad_clear);
  EXPECT_EQ(bad_clear->status, 400);

  httplib::Result no_flag =
      client_->Post("/api/v1/faults/mailbox", "{}", "application/json");
  ASSERT_TRUE(no_flag);
  EXPECT_EQ(no_flag->status, 400);
  EXPECT_THAT(no_flag->body, HasSubstr("stopped"));
  httplib::Result stop = client_->Post("/api/v1/faults/mailbox",
                                       R"({"stopped": true})", "application/json");
  ASSERT_TRUE(stop);
  EXPECT_EQ(stop->status, 200);
  EXPECT_THAT(stop->body, HasSubstr(R"("mailboxWritesStopped":true)"));
}

TEST(RestServerHaTest, StandaloneNodeAnswers404ForHa) {
  TestServer env(64 * 1024, /*with_ha=*/false);
  ASSERT_NE(env.server, nullptr);
  httplib::SSLClient client("127.0.0.1", env.server->port());
  client.set_ca_cert_path(env.cert_file.c_str());
  client.enable_server_certificate_verification(true);
  client.set_bearer_token_auth(env.token.c_str());
  httplib::Result status = client.Get("/api/v1/ha");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->status, 404);
  EXPECT_THAT(status->body, HasSubstr("paired"));
}

TEST(RestServerCreateTest, RejectsBadOptions) {
  FakeBackend backend;
  metrics::MetricsRegistry registry;
  RestServer::Options options;
  options.port = 0;
  options.cert_file = "/nonexistent/cert.pem";
  options.key_file = "/nonexistent/key.pem";
  EXPECT_EQ(RestServer::Create(backend, registry, options).status().code(),
            absl::StatusCode::kInvalidArgument);  // No token.
  options.token = "t";
  EXPECT_EQ(RestServer::Create(backend, registry, options).status().code(),
            absl::StatusCode::kInternal);  // Certificate does not load.
}

TEST(RestServerCreateTest, StopWithoutStartAndTwice) {
  TestServer env;
  ASSERT_NE(env.server, nullptr);
  env.server->Stop();
  env.server->Stop();
  EXPECT_FALSE(env.server->Start().ok());
}

TEST(HttpStatusFromStatusTest, MapsCodes) {
  EXPECT_EQ(HttpStatusFromStatus(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatusFromStatus(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpStatusFromStatus(absl::UnauthenticatedError("")), 401);
  EXPECT_EQ(HttpStatusFromStatus(absl::NotFoundError("")), 404);
  EXPECT_EQ(HttpStatusFromStatus(absl::AlreadyExistsError("")), 409);
  EXPECT_EQ(HttpStatusFromStatus(absl::FailedPreconditionError("")), 409);
  EXPECT_EQ(HttpStatusFromStatus(absl::UnavailableError("")), 503);
  EXPECT_EQ(HttpStatusFromStatus(absl::InternalError("")), 500);
  EXPECT_EQ(HttpStatusFromStatus(absl::DataLossError("")), 500);
}

}  // namespace
}  // namespace appliance::mgmt::testing
