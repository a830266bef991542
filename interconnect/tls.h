// Mutual TLS for the cluster interconnect.
//
// A pair has its own certificate authority (the "pair CA": a key and a
// self-signed certificate). Each node has a key and a certificate the pair CA
// signed, with CN = the node's name and subjectAltName = IP:<its interconnect
// address>. Both ends of every interconnect connection present their node
// certificate and accept only certificates of the pair CA: a process without
// one cannot talk to a node's interconnect services.
//
// Files (all PEM) in one directory:
//   ca.key, ca.crt               the pair CA
//   <node>.key, <node>.crt       one per node
// Keys are written with mode 0600. Everything is idempotent: existing, valid
// files are reused, so running the tool on every boot is safe.
#ifndef INTERCONNECT_TLS_H_
#define INTERCONNECT_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace interconnect {

struct PairCaFiles {
  std::string key_path;
  std::string cert_path;
};

struct NodeCertFiles {
  std::string key_path;
  std::string cert_path;
  std::string ca_cert_path;  // the pair CA certificate (the trust root)
};

// Creates dir (if needed) and the pair CA in it, or reuses an existing one
// whose key matches its certificate. common_name names the CA (e.g. the pair's
// name); it only matters when the CA is created.
absl::StatusOr<PairCaFiles> EnsurePairCa(const std::string& dir,
                                         absl::string_view common_name);

// Creates (or reuses) node's key and certificate in dir, signed by the pair CA
// of dir (which must exist: call EnsurePairCa first). An existing certificate is
// reused when it verifies against the CA, matches the key, and carries this CN
// and IP; otherwise it is reissued (the key is kept when present). ip is an
// IPv4 or IPv6 literal.
absl::StatusOr<NodeCertFiles> EnsureNodeCertificate(const std::string& dir,
                                                    absl::string_view node_name,
                                                    absl::string_view ip);

// The file names EnsureNodeCertificate uses, without touching the disk.
NodeCertFiles NodeCertPaths(const std::string& dir, absl::string_view node_name);

// PEM contents of a node's credentials.
struct TlsMaterial {
  std::string ca_cert_pem;     // the pair CA: the only accepted root
  std::string cert_chain_pem;  // this node's certificate
  std::string private_key_pem; // this node's key
};

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const NodeCertFiles& files);

// Server side: presents the node certificate and requires (and verifies) a
// client certificate from the pair CA.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsMaterial& tls);

// Client side: presents the node certificate and accepts only a server
// certificate from the pair CA whose SAN matches the address dialled.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const TlsMaterial& tls);

}  // namespace interconnect

#endif  // INTERCONNECT_TLS_H_
