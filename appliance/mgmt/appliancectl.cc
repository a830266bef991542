// appliancectl: command-line client of a node's REST management endpoint.
//
//   appliancectl --url=https://127.0.0.2:8443 --token_file=/var/lib/appliance/token
//       --cacert=/var/lib/appliance/mgmt.crt lun create db1 64G --block_size=4096
//
// Commands: node | lun list | lun show ID | lun create NAME SIZE
// [--block_size=512|4096] [--physical_block_size=N] [--read_only] [--id=N]
// [--owner=NODE] | lun delete ID | lif list | lif migrate NAME NODE |
// ha status|takeover|giveback|clear-offline [ID...] | fault mailbox stop|start |
// fault port NAME down|up | metrics.
// Flags may be spelled with '-' or '_' ("--token-file" = "--token_file").
//
// TLS: with --cacert the server certificate is verified against that PEM file
// (the node's self-signed certificate works as its own CA) including the host
// name. Without --cacert verification is skipped, as with --insecure: the
// node's certificate is self-signed, so there is nothing to verify against
// unless the operator copies it; pass --cacert wherever that matters.
//
// Output is a human-readable table; --json prints the server's JSON reply
// unchanged (lowerCamelCase field names, 64-bit numbers as strings) for scripts.
// Exit codes: 0 success, 1 API or connection error (message on stderr), 2 usage.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "appliance/mgmt/api.pb.h"
#include "appliance/mgmt/cli_util.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"

ABSL_FLAG(std::string, url, "https://127.0.0.1:8443",
          "Management endpoint, https://host:port.");
ABSL_FLAG(std::string, token, "", "Bearer token (prefer --token_file).");
ABSL_FLAG(std::string, token_file, "", "File holding the bearer token.");
ABSL_FLAG(std::string, cacert, "",
          "PEM file to verify the server certificate against (e.g. the node's "
          "self-signed certificate). Without it verification is skipped.");
ABSL_FLAG(bool, insecure, false,
          "Skip certificate verification (the default when --cacert is not "
          "given; an error together with --cacert).");
ABSL_FLAG(bool, json, false, "Print the server's raw JSON reply.");
ABSL_FLAG(uint32_t, block_size, 0, "lun create: 512 or 4096 (server default 512).");
ABSL_FLAG(uint32_t, physical_block_size, 0,
          "lun create: reported physical block size, the block size times 1, "
          "2, 4, 8 or 16 (0: same as the block size).");
ABSL_FLAG(bool, read_only, false, "lun create: write-protected LUN.");
ABSL_FLAG(std::string, id, "", "lun create: LUN number (lowest free when empty).");
ABSL_FLAG(std::string, owner, "", "lun create: owner node (the receiving node when empty).");
ABSL_FLAG(int, timeout_seconds, 30, "Connection and read timeout.");

namespace appliance::mgmt {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitApiError = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: appliancectl [flags] COMMAND\n"
    "commands:\n"
    "  node                          node information\n"
    "  lun list                      list LUNs\n"
    "  lun show ID                   one LUN\n"
    "  lun create NAME SIZE [--block_size=512|4096] [--id=N] [--owner=NODE]\n"
    "             [--physical_block_size=N] [--read_only]\n"
    "                                SIZE: bytes or 512K, 64M, 1G, 2T\n"
    "  lun delete ID                 delete a LUN and its data\n"
    "  lif list                      LIFs and where they are hosted\n"
    "  lif migrate NAME NODE         move a LIF to NODE (this node or partner)\n"
    "  fault port NAME down|up       fault injection on a physical port of the\n"
    "                                node (down moves its LIFs to the partner)\n"
    "  fault mailbox stop|start      stop/resume the node's HA mailbox writes\n"
    "  ha status                     HA state, partner, fencing, last takeover\n"
    "  ha takeover                   planned takeover of the partner\n"
    "  ha giveback                   give the partner its LUNs and LIFs back\n"
    "  ha clear-offline [ID...]      bring LUNs kept offline after a takeover\n"
    "                                online (all when no ID)\n"
    "  metrics                       Prometheus metrics text\n"
    "flags: --url=https://host:port --token=T | --token_file=F\n"
    "       --cacert=PEM | --insecure  --json  --timeout_seconds=N\n"
    "exit codes: 0 ok, 1 API/connection error, 2 usage error\n";

int UsageError(absl::string_view message) {
  std::cerr << "appliancectl: " << message << "\n\n" << kUsage;
  return kExitUsage;
}

// Checks every flag before absl::ParseCommandLine sees it, because absl exits
// with 1 on an unknown flag or bad value and we promise 2 for usage errors.
// Also turns '-' into '_' in flag names. Returns false after printing the
// error; sets *help when --help was asked for.
bool PrepareArgs(int argc, char** argv, std::vector<std::string>& args,
                 bool& help) {
  args.assign(argv, argv + argc);
  bool options_ended = false;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (options_ended || arg.size() < 2 || arg[0] != '-') continue;
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    const size_t dashes = arg[1] == '-' ? 2 : 1;
    const size_t eq = arg.find('=');
    std::string name = arg.substr(dashes, eq == std::string::npos
                                              ? std::string::npos
                                              : eq - dashes);
    for (char& c : name) c = c == '-' ? '_' : c;
    arg = absl::StrCat(std::string(dashes, '-'), name,
                       eq == std::string::npos ? "" : arg.substr(eq));
    if (name == "help" || name == "h" || name == "helpfull") {
      help = true;
      return true;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) {
      UsageError(absl::StrCat("unknown flag --", name));
      return false;
    }
    std::string value;
    if (eq != std::string::npos) {
      if (negated) {
        UsageError(absl::StrCat("--", name, " takes no value"));
        return false;
      }
      value = arg.substr(arg.find('=') + 1);
    } else if (flag->IsOfType<bool>()) {
      value = negated ? "false" : "true";
    } else if (i + 1 < args.size()) {
      value = args[i + 1];
      ++i;
    } else {
      UsageError(absl::StrCat("flag --", name, " needs a value"));
      return false;
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      UsageError(absl::StrCat("bad value for --", name, ": ", error));
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> ReadToken() {
  const std::string token = absl::GetFlag(FLAGS_token);
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token.empty() && !token_file.empty()) {
    return absl::InvalidArgumentError("give --token or --token_file, not both");
  }
  if (!token.empty()) return token;
  if (token_file.empty()) {
    return absl::InvalidArgumentError("--token or --token_file is required");
  }
  std::ifstream in(token_file);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read token file ", token_file));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  std::string from_file(absl::StripAsciiWhitespace(contents.str()));
  if (from_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", token_file, " is empty"));
  }
  return from_file;
}

// One HTTP exchange's outcome, already judged: success, or the exit code and
// message to print.
struct Reply {
  int status = 0;
  std::string body;
};

class Client {
 public:
  Client(const ServerUrl& url, const std::string& token,
         const std::string& cacert, int timeout_seconds)
      : client_(url.host, url.port) {
    client_.set_bearer_token_auth(token);
    client_.set_connection_timeout(timeout_seconds, 0);
    client_.set_read_timeout(timeout_seconds, 0);
    client_.set_write_timeout(timeout_seconds, 0);
    if (cacert.empty()) {
      client_.enable_server_certificate_verification(false);
    } else {
      client_.set_ca_cert_path(cacert.c_str());
      client_.enable_server_certificate_verification(true);
    }
  }

  // Sends the request; on transport failure prints the reason and returns
  // false.
  bool Send(const std::string& method, const std::string& path,
            const std::string& body, Reply& reply) {
    httplib::Result result =
        method == "GET"      ? client_.Get(path.c_str())
        : method == "DELETE" ? client_.Delete(path.c_str())
                             : client_.Post(path.c_str(), body, "application/json");
    if (!result) {
      std::string reason = httplib::to_string(result.error());
      if (result.error() == httplib::Error::SSLServerVerification) {
        reason += " (certificate not trusted by --cacert or name mismatch)";
      }
      std::cerr << "appliancectl: request failed: " << reason << "\n";
      return false;
    }
    reply.status = result->status;
    reply.body = result->body;
    return true;
  }

 private:
  httplib::SSLClient client_;
};

// The server's message from an error reply, or the raw body.
std::string ErrorMessage(const Reply& reply) {
  ErrorReply error;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (google::protobuf::util::JsonStringToMessage(reply.body, &error, options)
          .ok() &&
      !error.error().empty()) {
    return error.error();
  }
  return std::string(absl::StripAsciiWhitespace(reply.body));
}

template <typename Message>
bool ParseReply(const Reply& reply, Message& message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // A newer server may add fields.
  if (!google::protobuf::util::JsonStringToMessage(reply.body, &message, options)
           .ok()) {
    std::cerr << "appliancectl: cannot parse the server's reply\n";
    return false;
  }
  return true;
}

std::vector<std::string> LunRow(const config::LunDefinition& lun) {
  return {absl::StrCat(lun.id()), lun.name(), FormatSize(lun.size_bytes()),
          absl::StrCat(lun.block_size()), lun.owner_node(), lun.home_node()};
}

std::string LunDetails(const config::LunDefinition& lun) {
  return FormatTable(
      {"FIELD", "VALUE"},
      {{"id", absl::StrCat(lun.id())},
       {"name", lun.name()},
       {"size", absl::StrCat(FormatSize(lun.size_bytes()), " (",
                             lun.size_bytes(), " bytes)")},
       {"block_size", absl::StrCat(lun.block_size())},
       {"physical_block_size",
        absl::StrCat(lun.physical_block_size() == 0 ? lun.block_size()
                                                    : lun.physical_block_size())},
       {"read_only", lun.read_only() ? "yes" : "no"},
       {"home_node", lun.home_node()},
       {"owner_node", lun.owner_node()},
       {"backing_file", lun.backing_file()},
       {"naa_id", lun.naa_id()},
       {"serial", lun.serial()},
       {"uuid", lun.uuid()},
       {"created_unix_seconds", absl::StrCat(lun.created_unix_seconds())}});
}

std::string LifTable(
    const google::protobuf::RepeatedPtrField<config::Lif>& lifs) {
  std::vector<std::vector<std::string>> rows;
  for (const config::Lif& lif : lifs) {
    const std::string current =
        lif.current_node().empty() ? lif.home_node() : lif.current_node();
    rows.push_back({lif.name(),
                    absl::StrCat(lif.address(), ":",
                                 lif.has_port() ? lif.port() : 3260),
                    absl::StrCat(lif.home_node(), "/", lif.home_port()),
                    lif.current_port().empty()
                        ? current
                        : absl::StrCat(current, "/", lif.current_port()),
                    absl::StrCat(lif.relative_target_port_id()),
                    absl::StrCat(lif.target_portal_group())});
  }
  return FormatTable({"LIF", "PORTAL", "HOME", "CURRENT", "RTPI", "TPG"}, rows);
}

std::string NodeDetails(const NodeInfo& node) {
  std::string out = FormatTable(
      {"FIELD", "VALUE"},
      {{"node", node.node_name()},
       {"partner", node.partner_name()},
       {"target", node.target_name()},
       {"state", node.state()},
       {"version", node.version()},
       {"uptime_seconds", absl::StrCat(node.uptime_seconds())},
       {"lun_count", absl::StrCat(node.lun_count())}});
  if (node.ports_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const PortStatus& port : node.ports()) {
      rows.push_back({port.name(), port.address(), port.up() ? "up" : "down",
                      absl::StrJoin(port.lifs(), ",")});
    }
    absl::StrAppend(&out, "\n",
                    FormatTable({"PORT", "ADDRESS", "STATE", "LIFS"}, rows));
  } else if (node.physical_ports_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const config::PhysicalPort& port : node.physical_ports()) {
      rows.push_back({port.name(), port.address()});
    }
    absl::StrAppend(&out, "\n", FormatTable({"PORT", "ADDRESS"}, rows));
  }
  if (node.lifs_size() > 0) {
    absl::StrAppend(&out, "\n", LifTable(node.lifs()));
  }
  return out;
}

std::string HaDetails(const HaStatus& ha) {
  const TakeoverReport& t = ha.last_takeover();
  std::vector<std::vector<std::string>> rows = {
      {"node", ha.node_name()},
      {"state", ha.state()},
      {"partner", absl::StrCat(ha.partner_name(), " (", ha.partner_state(),
                               ", ", ha.partner_verdict(), ")")},
      {"interconnect", ha.interconnect_up() ? "up" : "down"},
      {"takeover_possible", ha.takeover_possible() ? "yes (mirrored)"
                                                   : "no (unmirrored)"},
      {"fenced_by", ha.fenced_by().empty() ? "-" : ha.fenced_by()},
      {"fencing_partner", ha.fencing_partner() ? "yes" : "no"},
      {"mailbox_writes", ha.mailbox_writes_stopped() ? "stopped (fault)" : "on"},
      {"luns_served", absl::StrJoin(ha.luns_served(), ",")},
      {"takeovers", absl::StrCat(ha.takeovers())},
      {"givebacks", absl::StrCat(ha.givebacks())}};
  if (!t.partner().empty()) {
    rows.push_back(
        {"last_takeover",
         absl::StrCat(t.planned() ? "planned" : t.reason(), "; ",
                      t.duration_micros() / 1000, " ms; replayed ",
                      t.replayed_entries(), ", dropped ",
                      t.dropped_uncommitted(), " uncommitted; LUNs ",
                      absl::StrJoin(t.luns(), ","))});
  }
  for (const HaOfflineLun& lun : ha.offline_luns()) {
    rows.push_back({absl::StrCat("offline LUN ", lun.id()), lun.reason()});
  }
  return FormatTable({"FIELD", "VALUE"}, rows);
}

int Run(const std::vector<std::string>& command) {
  if (command.empty()) return UsageError("no command given");

  // Work out the request from the command first: usage errors never touch
  // the network.
  std::string method = "GET";
  std::string path;
  std::string body;
  const std::string& verb = command[0];
  const auto expect_args = [&](size_t n) { return command.size() == n; };
  if (verb == "node" && expect_args(1)) {
    path = "/api/v1/node";
  } else if (verb == "metrics" && expect_args(1)) {
    path = "/metrics";
  } else if (verb == "lun" && command.size() >= 2) {
    const std::string& sub = command[1];
    if (sub == "list" && expect_args(2)) {
      path = "/api/v1/luns";
    } else if ((sub == "show" || sub == "delete") && expect_args(3)) {
      uint64_t id = 0;
      if (!absl::SimpleAtoi(command[2], &id) ||
          !absl::ascii_isdigit(command[2][0])) {
        return UsageError(absl::StrCat("invalid LUN id \"", command[2], "\""));
      }
      path = absl::StrCat("/api/v1/luns/", id);
      if (sub == "delete") method = "DELETE";
    } else if (sub == "create" && expect_args(4)) {
      CreateLunRequest request;
      request.set_name(command[2]);
      absl::StatusOr<uint64_t> size = ParseSize(command[3]);
      if (!size.ok()) return UsageError(size.status().message());
      request.set_size_bytes(*size);
      const uint32_t block_size = absl::GetFlag(FLAGS_block_size);
      if (block_size != 0 && block_size != 512 && block_size != 4096) {
        return UsageError("--block_size must be 512 or 4096");
      }
      request.set_block_size(block_size);
      // The server validates the physical block size (one place for the rule).
      request.set_physical_block_size(absl::GetFlag(FLAGS_physical_block_size));
      request.set_read_only(absl::GetFlag(FLAGS_read_only));
      const std::string id_text = absl::GetFlag(FLAGS_id);
      if (!id_text.empty()) {
        uint64_t id = 0;
        if (!absl::SimpleAtoi(id_text, &id) || !absl::ascii_isdigit(id_text[0])) {
          return UsageError(absl::StrCat("invalid --id \"", id_text, "\""));
        }
        request.set_id(id);
      }
      request.set_owner_node(absl::GetFlag(FLAGS_owner));
      google::protobuf::util::MessageToJsonString(request, &body);
      method = "POST";
      path = "/api/v1/luns";
    } else {
      return UsageError(absl::StrCat("bad use of \"lun ", sub, "\""));
    }
  } else if (verb == "lif" && command.size() >= 2) {
    const std::string& sub = command[1];
    if (sub == "list" && expect_args(2)) {
      path = "/api/v1/lifs";
    } else if (sub == "migrate" && expect_args(4)) {
      MigrateLifRequest request;
      request.set_node(command[3]);
      google::protobuf::util::MessageToJsonString(request, &body);
      method = "POST";
      path = absl::StrCat("/api/v1/lifs/", command[2], "/migrate");
    } else {
      return UsageError(absl::StrCat("bad use of \"lif ", sub, "\""));
    }
  } else if (verb == "fault" && command.size() == 3 &&
             command[1] == "mailbox") {
    if (command[2] != "stop" && command[2] != "start") {
      return UsageError("fault mailbox takes stop or start");
    }
    MailboxFaultRequest request;
    request.set_stopped(command[2] == "stop");
    google::protobuf::util::MessageToJsonString(request, &body);
    method = "POST";
    path = "/api/v1/faults/mailbox";
  } else if (verb == "ha" && command.size() >= 2) {
    const std::string& sub = command[1];
    if (sub == "status" && expect_args(2)) {
      path = "/api/v1/ha";
    } else if ((sub == "takeover" || sub == "giveback") && expect_args(2)) {
      method = "POST";
      body = "{}";
      path = absl::StrCat("/api/v1/ha/", sub);
    } else if (sub == "clear-offline") {
      HaClearOfflineRequest request;
      for (size_t i = 2; i < command.size(); ++i) {
        uint64_t id = 0;
        if (!absl::SimpleAtoi(command[i], &id)) {
          return UsageError(absl::StrCat("invalid LUN id \"", command[i], "\""));
        }
        request.add_luns(id);
      }
      google::protobuf::util::MessageToJsonString(request, &body);
      method = "POST";
      path = "/api/v1/ha/clear-offline";
    } else {
      return UsageError(absl::StrCat("bad use of \"ha ", sub, "\""));
    }
  } else if (verb == "fault" && expect_args(4) && command[1] == "port") {
    if (command[3] != "down" && command[3] != "up") {
      return UsageError("fault port NAME takes down or up");
    }
    PortFaultRequest request;
    request.set_down(command[3] == "down");
    google::protobuf::util::MessageToJsonString(request, &body);
    method = "POST";
    path = absl::StrCat("/api/v1/faults/ports/", command[2]);
  } else {
    return UsageError(absl::StrCat("unknown command or wrong arguments: ",
                                   absl::StrJoin(command, " ")));
  }

  absl::StatusOr<ServerUrl> url = ParseServerUrl(absl::GetFlag(FLAGS_url));
  if (!url.ok()) return UsageError(url.status().message());
  absl::StatusOr<std::string> token = ReadToken();
  if (!token.ok()) return UsageError(token.status().message());
  const std::string cacert = absl::GetFlag(FLAGS_cacert);
  if (!cacert.empty() && absl::GetFlag(FLAGS_insecure)) {
    return UsageError("--cacert and --insecure exclude each other");
  }
  if (!cacert.empty() && access(cacert.c_str(), R_OK) != 0) {
    return UsageError(absl::StrCat("cannot read --cacert ", cacert));
  }
  const int timeout = absl::GetFlag(FLAGS_timeout_seconds);
  if (timeout <= 0) return UsageError("--timeout_seconds must be positive");

  Client client(*url, *token, cacert, timeout);
  Reply reply;
  if (!client.Send(method, path, body, reply)) return kExitApiError;
  if (reply.status < 200 || reply.status >= 300) {
    std::cerr << "appliancectl: error: " << ErrorMessage(reply) << " (HTTP "
              << reply.status << ")\n";
    return kExitApiError;
  }

  const bool json = absl::GetFlag(FLAGS_json);
  if (json || path == "/metrics") {
    std::cout << reply.body;
    if (!reply.body.empty() && reply.body.back() != '\n') std::cout << "\n";
    return kExitOk;
  }
  if (path == "/api/v1/node") {
    NodeInfo node;
    if (!ParseReply(reply, node)) return kExitApiError;
    std::cout << NodeDetails(node);
  } else if (path == "/api/v1/luns" && method == "GET") {
    LunList list;
    if (!ParseReply(reply, list)) return kExitApiError;
    std::vector<std::vector<std::string>> rows;
    for (const config::LunDefinition& lun : list.luns()) rows.push_back(LunRow(lun));
    std::cout << FormatTable({"ID", "NAME", "SIZE", "BLOCK", "OWNER", "HOME"},
                             rows);
  } else if (path == "/api/v1/lifs") {
    LifList list;
    if (!ParseReply(reply, list)) return kExitApiError;
    std::cout << LifTable(list.lifs());
  } else if (verb == "lif") {
    config::Lif lif;
    if (!ParseReply(reply, lif)) return kExitApiError;
    std::cout << "LIF " << lif.name() << " now on " << lif.current_node()
              << (lif.current_port().empty() ? "" : "/" + lif.current_port())
              << "\n";
  } else if (verb == "ha" || path == "/api/v1/faults/mailbox") {
    HaStatus ha;
    if (!ParseReply(reply, ha)) return kExitApiError;
    std::cout << HaDetails(ha);
  } else if (verb == "fault") {
    PortStatus port;
    if (!ParseReply(reply, port)) return kExitApiError;
    std::cout << "port " << port.name() << " " << (port.up() ? "up" : "down")
              << "; LIFs on it: "
              << (port.lifs().empty() ? "none" : absl::StrJoin(port.lifs(), ","))
              << "\n";
  } else if (method == "DELETE") {
    std::cout << "deleted LUN " << command[2] << "\n";
  } else {
    config::LunDefinition lun;
    if (!ParseReply(reply, lun)) return kExitApiError;
    if (method == "POST") std::cout << "created LUN " << lun.id() << "\n";
    std::cout << LunDetails(lun);
  }
  return kExitOk;
}

}  // namespace
}  // namespace appliance::mgmt

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(appliance::mgmt::kUsage);
  std::vector<std::string> args;
  bool help = false;
  if (!appliance::mgmt::PrepareArgs(argc, argv, args, help)) {
    return appliance::mgmt::kExitUsage;
  }
  if (help) {
    std::cout << appliance::mgmt::kUsage;
    return appliance::mgmt::kExitOk;
  }
  std::vector<char*> prepared;
  for (std::string& arg : args) prepared.push_back(arg.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(prepared.size()), prepared.data());
  std::vector<std::string> command(positional.begin() + 1, positional.end());
  return appliance::mgmt::Run(command);
}
