// Certificates are built with OpenSSL 3's EVP/X509 APIs; files are published
// with link(2) from a private temporary name, so a reader never sees a partial
// file and an existing file is never overwritten.
#include "appliance/mgmt/credentials.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"

namespace appliance::mgmt {
namespace {

constexpr int kValidityDays = 3650;

struct OpenSslFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
};
template <typename T>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree>;

// The OpenSSL error queue as text, emptied.
std::string OpenSslErrors() {
  std::vector<std::string> errors;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    errors.push_back(buffer);
  }
  return errors.empty() ? "unknown OpenSSL error" : absl::StrJoin(errors, "; ");
}

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", OpenSslErrors()));
}

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int error) {
  return absl::Status(absl::ErrnoToStatusCode(error),
                      absl::StrCat(what, " ", path, ": ", std::strerror(error)));
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Writes `contents` to `path` with `mode` unless `path` exists. Returns
// AlreadyExists (and leaves the existing file alone) when it does.
absl::Status PublishNewFile(const std::string& path, absl::string_view contents,
                            mode_t mode) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  unlink(temp.c_str());  // Left over from a crash of an earlier process.
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("cannot create", temp, errno);
  absl::Status status;
  if (fchmod(fd, mode) != 0) status = ErrnoError("cannot chmod", temp, errno);
  size_t written = 0;
  while (status.ok() && written < contents.size()) {
    ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError("cannot write", temp, errno);
    } else {
      written += static_cast<size_t>(n);
    }
  }
  if (status.ok() && fsync(fd) != 0) status = ErrnoError("cannot sync", temp, errno);
  if (close(fd) != 0 && status.ok()) status = ErrnoError("cannot close", temp, errno);
  if (status.ok() && link(temp.c_str(), path.c_str()) != 0) {
    status = errno == EEXIST
                 ? absl::AlreadyExistsError(absl::StrCat(path, " exists"))
                 : ErrnoError("cannot create", path, errno);
  }
  unlink(temp.c_str());
  return status;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path, errno);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read ", path));
  return contents.str();
}

absl::Status AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  OpenSslPtr<X509_EXTENSION> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("cannot add extension ", OBJ_nid2sn(nid),
                                     "=", value));
  }
  return absl::OkStatus();
}

bool IsIpAddress(const std::string& host) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

std::string SubjectAltNames(std::string host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::vector<std::string> names;
  const bool wildcard = host.empty() || host == "0.0.0.0" || host == "::";
  if (!wildcard && host != "localhost" && host != "127.0.0.1" && host != "::1") {
    names.push_back(absl::StrCat(IsIpAddress(host) ? "IP:" : "DNS:", host));
  }
  names.push_back("DNS:localhost");
  names.push_back("IP:127.0.0.1");
  names.push_back("IP:::1");
  return absl::StrJoin(names, ",");
}

struct PemPair {
  std::string cert;
  std::string key;
};

absl::StatusOr<PemPair> GenerateSelfSigned(const std::string& host) {
  OpenSslPtr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslError("cannot generate EC P-256 key");

  OpenSslPtr<X509> cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), 2) != 1) {
    return OpenSslError("cannot create certificate");
  }
  // A random positive 127-bit serial, as RFC 5280 recommends for uniqueness.
  OpenSslPtr<BIGNUM> serial(BN_new());
  if (serial == nullptr || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY,
                                   BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ==
          nullptr) {
    return OpenSslError("cannot set serial number");
  }
  // Back-date an hour so a client with a slightly slow clock accepts it.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), kValidityDays, 0,
                       nullptr) == nullptr) {
    return OpenSslError("cannot set validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string common_name =
      host.empty() || host == "0.0.0.0" || host == "::" ? "appliance" : host;
  if (X509_NAME_add_entry_by_txt(
          name, "O", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>("appliance"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(
          name, "CN", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
          0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 ||
      X509_set_pubkey(cert.get(), key.get()) != 1) {
    return OpenSslError("cannot set certificate names");
  }
  // An end-entity certificate that clients pin as their trust anchor. No
  // keyUsage extension: OpenSSL would then demand keyCertSign to accept the
  // certificate as its own issuer.
  for (const auto& [nid, value] : std::vector<std::pair<int, std::string>>{
           {NID_basic_constraints, "critical,CA:FALSE"},
           {NID_ext_key_usage, "serverAuth"},
           {NID_subject_key_identifier, "hash"},
           {NID_subject_alt_name, SubjectAltNames(host)},
       }) {
    if (absl::Status s = AddExtension(cert.get(), nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return OpenSslError("cannot sign certificate");
  }

  PemPair pem;
  OpenSslPtr<BIO> cert_bio(BIO_new(BIO_s_mem()));
  OpenSslPtr<BIO> key_bio(BIO_new(BIO_s_mem()));
  if (cert_bio == nullptr || key_bio == nullptr ||
      PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    return OpenSslError("cannot encode PEM");
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(cert_bio.get(), &data);
  pem.cert.assign(data, static_cast<size_t>(size));
  size = BIO_get_mem_data(key_bio.get(), &data);
  pem.key.assign(data, static_cast<size_t>(size));
  return pem;
}

}  // namespace

absl::StatusOr<CertificateFiles> EnsureSelfSignedCertificate(
    absl::string_view host, const std::string& cert_file,
    const std::string& key_file) {
  CertificateFiles files{cert_file, key_file, false};
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("certificate and key paths are required");
  }
  const bool have_cert = FileExists(cert_file);
  const bool have_key = FileExists(key_file);
  if (have_cert && have_key) return files;
  if (have_cert || have_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only one of ", cert_file, " and ", key_file,
        " exists; remove it to generate a new pair or supply the other"));
  }
  absl::StatusOr<PemPair> pem = GenerateSelfSigned(std::string(host));
  if (!pem.ok()) return pem.status();
  // Key first: a certificate without its key would block later starts.
  if (absl::Status s = PublishNewFile(key_file, pem->key, 0600); !s.ok()) {
    return s;
  }
  if (absl::Status s = PublishNewFile(cert_file, pem->cert, 0644); !s.ok()) {
    unlink(key_file.c_str());
    return s;
  }
  LOG(INFO) << "generated self-signed certificate " << cert_file << " for "
            << SubjectAltNames(std::string(host));
  files.generated = true;
  return files;
}

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& token_file) {
  if (token_file.empty()) return absl::InvalidArgumentError("no token file");
  if (!FileExists(token_file)) {
    unsigned char random[32];
    if (RAND_bytes(random, sizeof(random)) != 1) {
      return OpenSslError("cannot generate token");
    }
    const std::string token = absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(random), sizeof(random)));
    absl::Status status = PublishNewFile(token_file, token + "\n", 0600);
    if (status.ok()) {
      LOG(INFO) << "generated management token in " << token_file;
      return token;
    }
    if (!absl::IsAlreadyExists(status)) return status;
    // Another process created it meanwhile: use theirs.
  }
  struct stat st;
  if (stat(token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    LOG(WARNING) << "token file " << token_file
                 << " is readable by group or others";
  }
  absl::StatusOr<std::string> contents = ReadFile(token_file);
  if (!contents.ok()) return contents.status();
  std::string token(absl::StripAsciiWhitespace(*contents));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", token_file, " is empty"));
  }
  return token;
}

}  // namespace appliance::mgmt
