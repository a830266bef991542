// pair_certs: creates (or reuses) a pair's interconnect CA and node certificates.
//
//   pair_certs --dir=/var/lib/appliance/interconnect-tls --ca_name=pair1
//              --node=node-a=10.10.0.1 --node=node-b=10.10.0.2
//
// Writes ca.key/ca.crt and <node>.key/<node>.crt (CN = node, SAN = IP) into
// --dir. Idempotent: valid existing files are kept. Prints the files' paths.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "interconnect/tls.h"

ABSL_FLAG(std::string, dir, "", "Directory for the pair's PEM files");
ABSL_FLAG(std::string, ca_name, "appliance-pair-ca",
          "Common name of the pair CA (used only when it is created)");
ABSL_FLAG(std::vector<std::string>, node, {},
          "NAME=IP of a node to issue a certificate for (repeatable, or "
          "comma-separated)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    std::fprintf(stderr, "pair_certs: --dir is required\n");
    return 2;
  }
  auto ca = interconnect::EnsurePairCa(dir, absl::GetFlag(FLAGS_ca_name));
  if (!ca.ok()) {
    std::fprintf(stderr, "pair_certs: %s\n", ca.status().ToString().c_str());
    return 1;
  }
  std::printf("ca %s %s\n", ca->cert_path.c_str(), ca->key_path.c_str());
  for (const std::string& spec : absl::GetFlag(FLAGS_node)) {
    std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      std::fprintf(stderr, "pair_certs: --node wants NAME=IP, got '%s'\n",
                   spec.c_str());
      return 2;
    }
    auto files = interconnect::EnsureNodeCertificate(dir, parts[0], parts[1]);
    if (!files.ok()) {
      std::fprintf(stderr, "pair_certs: %s: %s\n", parts[0].c_str(),
                   files.status().ToString().c_str());
      return 1;
    }
    std::printf("node %s %s %s\n", parts[0].c_str(), files->cert_path.c_str(),
                files->key_path.c_str());
  }
  return 0;
}
