// Credentials of the REST management endpoint: a self-signed TLS certificate and
// the bearer token, both created on first start and reused afterwards.
//
// A node has no PKI of its own when it is first installed, so it makes a
// self-signed certificate (EC P-256, SAN = its management address and
// localhost, valid 10 years) and a random token. Operators copy the certificate
// to clients as the CA to verify against (appliancectl --cacert) and the token
// to whoever may manage the node. Secrets are written with mode 0600.
#ifndef APPLIANCE_MGMT_CREDENTIALS_H_
#define APPLIANCE_MGMT_CREDENTIALS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace appliance::mgmt {

struct CertificateFiles {
  std::string cert_file;  // PEM certificate.
  std::string key_file;   // PEM private key (PKCS#8), mode 0600.
  bool generated = false; // True when this call created them.
};

// Makes sure `cert_file` and `key_file` exist. When both exist they are reused
// as they are (not parsed here; the TLS server reports a bad pair). When neither
// exists, generates an EC P-256 key and a self-signed X.509v3 certificate valid
// for 10 years whose subjectAltName holds `host` (as an IP address when it is
// one, else as a DNS name; skipped for wildcard addresses), "localhost",
// 127.0.0.1 and ::1. Files are written to a temporary name and renamed, the key
// with mode 0600. FailedPrecondition when only one of the two exists (we do not
// overwrite a lone key or certificate someone may depend on).
absl::StatusOr<CertificateFiles> EnsureSelfSignedCertificate(
    absl::string_view host, const std::string& cert_file,
    const std::string& key_file);

// Returns the bearer token stored in `token_file` (surrounding whitespace
// removed). When the file does not exist, generates a token of 32 random bytes
// as 64 lowercase hex digits and writes it with mode 0600 (exclusively: if
// another process wins the race, its token is read back). InvalidArgument when
// the file exists but is empty.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& token_file);

}  // namespace appliance::mgmt

#endif  // APPLIANCE_MGMT_CREDENTIALS_H_
