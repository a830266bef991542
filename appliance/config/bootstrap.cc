#include "appliance/config/bootstrap.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace appliance::config {
namespace {

// Collects the parser's first error with its position.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ",
                            message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};



}  // namespace

absl::StatusOr<NodeBootstrap> ParseBootstrap(const std::string& text) {
  NodeBootstrap bootstrap;
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &bootstrap)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap config: ", errors.first()));
  }
  return bootstrap;
}

absl::StatusOr<NodeBootstrap> LoadBootstrapFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read bootstrap config ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<NodeBootstrap> bootstrap = ParseBootstrap(buffer.str());
  if (!bootstrap.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", bootstrap.status().message()));
  }
  absl::Status valid = ValidateAndFillBootstrap(*bootstrap);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", valid.message()));
  }
  return bootstrap;
}

absl::Status SplitHostPort(const std::string& address, std::string& host,
                           int& port) {
  std::string port_text;
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", address, "' is not [host]:port"));
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", address, "' is not host:port"));
    }
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", address, "' has no valid port"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLunDefinition(const LunDefinition& lun) {
  const std::string& name = lun.name();
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  if (name.size() > kMaxLunNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name is longer than ", kMaxLunNameLength, " characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "name '", name, "' may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  if (lun.block_size() != 512 && lun.block_size() != 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block size must be 512 or 4096, not ", lun.block_size()));
  }
  if (lun.size_bytes() == 0) {
    return absl::InvalidArgumentError("size must be greater than 0");
  }
  if (lun.size_bytes() % lun.block_size() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size ", lun.size_bytes(),
                     " is not a multiple of the block size ", lun.block_size()));
  }
  if (lun.id() > kMaxLunId) {
    return absl::InvalidArgumentError(
        absl::StrCat("LUN id must be at most ", kMaxLunId));
  }
  const uint32_t physical = lun.physical_block_size();
  if (physical != 0) {
    bool valid = false;
    for (uint32_t ratio = 1; ratio <= kMaxLogicalBlocksPerPhysical; ratio *= 2) {
      valid = valid || physical == uint64_t{lun.block_size()} * ratio;
    }
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "physical block size ", physical, " must be 0 (the block size) or ",
          "the block size ", lun.block_size(), " times 1, 2, 4, 8 or 16"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAndFillBootstrap(NodeBootstrap& b) {
  if (b.node_name().empty()) {
    return absl::InvalidArgumentError("node_name is required");
  }
  if (b.partner_name() == b.node_name()) {
    return absl::InvalidArgumentError(
        "partner_name must differ from node_name");
  }
  if (b.target_name().empty()) {
    return absl::InvalidArgumentError("target_name is required");
  }
  if (b.shared_storage_dir().empty() || b.state_dir().empty()) {
    return absl::InvalidArgumentError(
        "shared_storage_dir and state_dir are required");
  }
  std::string host;
  int port = 0;
  if (b.mgmt_address().empty()) {
    return absl::InvalidArgumentError("mgmt_address is required");
  }
  if (absl::Status s = SplitHostPort(b.mgmt_address(), host, port); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mgmt_address: ", s.message()));
  }
  for (const std::string* a :
       {&b.interconnect_address(), &b.partner_interconnect_address()}) {
    if (a->empty()) continue;
    if (absl::Status s = SplitHostPort(*a, host, port); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("interconnect address: ", s.message()));
    }
  }
  if (!b.partner_name().empty() &&
      (b.interconnect_address().empty() ||
       b.partner_interconnect_address().empty() ||
       b.interconnect_tls_dir().empty())) {
    return absl::InvalidArgumentError(
        "a node with a partner needs interconnect_address, "
        "partner_interconnect_address and interconnect_tls_dir");
  }
  std::set<std::string> port_names;
  for (const PhysicalPort& p : b.physical_ports()) {
    if (p.name().empty() || p.address().empty()) {
      return absl::InvalidArgumentError("physical port needs name and address");
    }
    if (!port_names.insert(p.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("physical port '", p.name(), "' is listed twice"));
    }
  }
  std::set<std::string> lif_names;
  std::set<uint32_t> rtpis, tpgs;
  for (Lif& lif : *b.mutable_lifs()) {
    if (lif.name().empty() || lif.address().empty()) {
      return absl::InvalidArgumentError("LIF needs name and address");
    }
    if (!lif.has_port()) lif.set_port(3260);
    if (lif.port() > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("LIF '", lif.name(), "' port is out of range"));
    }
    if (lif.home_node().empty()) lif.set_home_node(b.node_name());
    if (lif.home_node() != b.node_name() &&
        lif.home_node() != b.partner_name()) {
      return absl::InvalidArgumentError(
          absl::StrCat("LIF '", lif.name(), "' home node '", lif.home_node(),
                       "' is neither this node nor its partner"));
    }
    if (lif.current_node().empty()) lif.set_current_node(lif.home_node());
    if (lif.relative_target_port_id() == 0 ||
        lif.relative_target_port_id() > 0xffff ||
        lif.target_portal_group() == 0 || lif.target_portal_group() > 0xffff) {
      return absl::InvalidArgumentError(
          absl::StrCat("LIF '", lif.name(),
                       "' needs relative_target_port_id and "
                       "target_portal_group in 1..65535"));
    }
    if (!lif_names.insert(lif.name()).second ||
        !rtpis.insert(lif.relative_target_port_id()).second ||
        !tpgs.insert(lif.target_portal_group()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LIF '", lif.name(),
          "' repeats a name, relative target port id or portal group"));
    }
  }
  std::set<std::string> chap_initiators;
  for (const ChapAccount& a : b.security().chap()) {
    if (a.initiator_name().empty() || a.user().empty()) {
      return absl::InvalidArgumentError(
          "CHAP account needs initiator_name and user");
    }
    if (!chap_initiators.insert(a.initiator_name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CHAP account for '", a.initiator_name(), "' is listed twice"));
    }
    // RFC 7143 §12.1.3: secrets of at least 96 bits; initiators commonly
    // require 12 characters.
    if (a.secret().size() < 12 || a.secret().size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CHAP secret for '", a.initiator_name(), "' must be 12-255 characters"));
    }
    if (a.target_user().empty() != a.target_secret().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mutual CHAP for '", a.initiator_name(),
          "' needs both target_user and target_secret"));
    }
    if (!a.target_secret().empty() &&
        (a.target_secret().size() < 12 || a.target_secret().size() > 255 ||
         a.target_secret() == a.secret())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mutual CHAP secret for '", a.initiator_name(),
          "' must be 12-255 characters and differ from the initiator's"));
    }
  }
  if (b.security().require_chap() && b.security().chap().empty()) {
    return absl::InvalidArgumentError("require_chap needs at least one account");
  }
  std::set<uint64_t> lun_ids;
  std::set<std::string> lun_names;
  for (LunDefinition& lun : *b.mutable_seed_luns()) {
    if (lun.block_size() == 0) lun.set_block_size(512);
    if (lun.home_node().empty()) lun.set_home_node(b.node_name());
    if (lun.home_node() != b.node_name() && lun.home_node() != b.partner_name()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "seed LUN '", lun.name(), "' home node '", lun.home_node(),
          "' is neither this node nor its partner"));
    }
    if (lun.owner_node().empty()) lun.set_owner_node(lun.home_node());
    if (absl::Status s = ValidateLunDefinition(lun); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("seed LUN: ", s.message()));
    }
    if (!lun_ids.insert(lun.id()).second ||
        !lun_names.insert(lun.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("seed LUN '", lun.name(), "' repeats an id or name"));
    }
  }
  return absl::OkStatus();
}

}  // namespace appliance::config
