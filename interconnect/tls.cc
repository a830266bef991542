#include "interconnect/tls.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"

namespace interconnect {
namespace {

constexpr long kValiditySeconds = 20L * 365 * 24 * 3600;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

std::string OpensslError(absl::string_view what) {
  std::string out(what);
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, ": ", buf);
  }
  return out;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes atomically (temp file + rename) with the given mode.
absl::Status WriteFile(const std::string& path, const std::string& data,
                       mode_t mode) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  ::fchmod(fileno(f), mode);
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

absl::Status EnsureDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Pkey> LoadKey(const std::string& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return pem.status();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem->data(), pem->size()));
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::DataLossError(OpensslError("bad key " + path));
  return key;
}

absl::StatusOr<Cert> LoadCert(const std::string& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return pem.status();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem->data(), pem->size()));
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return absl::DataLossError(OpensslError("bad cert " + path));
  return cert;
}

absl::Status SaveKey(const std::string& path, EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return absl::InternalError(OpensslError("PEM_write_bio_PrivateKey"));
  }
  char* data;
  long len = BIO_get_mem_data(bio.get(), &data);
  return WriteFile(path, std::string(data, len), 0600);
}

absl::Status SaveCert(const std::string& path, X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), cert) != 1) {
    return absl::InternalError(OpensslError("PEM_write_bio_X509"));
  }
  char* data;
  long len = BIO_get_mem_data(bio.get(), &data);
  return WriteFile(path, std::string(data, len), 0644);
}

absl::StatusOr<Pkey> NewKey() {
  // ECDSA P-256: small, fast handshakes, supported by every gRPC/OpenSSL.
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) return absl::InternalError(OpensslError("EVP_EC_gen"));
  return key;
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) {
    return absl::InternalError(OpensslError(absl::StrCat("extension ", value)));
  }
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return absl::InternalError(OpensslError("X509_add_ext"));
  return absl::OkStatus();
}

// A certificate for subject_key with the given CN, signed by issuer_key
// (issuer null: self-signed).
absl::StatusOr<Cert> NewCert(EVP_PKEY* subject_key, absl::string_view cn,
                             X509* issuer, EVP_PKEY* issuer_key, bool is_ca,
                             absl::string_view ip) {
  Cert cert(X509_new());
  if (!cert) return absl::InternalError("X509_new");
  X509_set_version(cert.get(), 2);
  // A random 64-bit positive serial.
  unsigned char serial_bytes[8];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) {
    return absl::InternalError(OpensslError("RAND_bytes"));
  }
  serial_bytes[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValiditySeconds);
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn_str(cn);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>(cn_str.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr
                                       ? X509_get_subject_name(issuer)
                                       : name);
  X509* issuer_cert = issuer != nullptr ? issuer : cert.get();
  absl::Status s;
  if (is_ca) {
    s.Update(AddExt(cert.get(), issuer_cert, NID_basic_constraints,
                    "critical,CA:TRUE,pathlen:0"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_key_usage,
                    "critical,keyCertSign,cRLSign"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_subject_key_identifier, "hash"));
  } else {
    s.Update(AddExt(cert.get(), issuer_cert, NID_basic_constraints,
                    "critical,CA:FALSE"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_key_usage,
                    "critical,digitalSignature,keyEncipherment"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_ext_key_usage,
                    "serverAuth,clientAuth"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_subject_key_identifier, "hash"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_authority_key_identifier,
                    "keyid:always"));
    s.Update(AddExt(cert.get(), issuer_cert, NID_subject_alt_name,
                    absl::StrCat("IP:", ip).c_str()));
  }
  if (!s.ok()) return s;
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return absl::InternalError(OpensslError("X509_sign"));
  }
  return cert;
}

bool CertHasCn(X509* cert, absl::string_view cn) {
  char buf[256];
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                          NID_commonName, buf, sizeof(buf));
  return n >= 0 && absl::string_view(buf, n) == cn;
}

bool VerifiesAgainst(X509* cert, X509* ca) {
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr);
  return X509_verify_cert(ctx.get()) == 1;
}

}  // namespace

absl::StatusOr<PairCaFiles> EnsurePairCa(const std::string& dir,
                                         absl::string_view common_name) {
  if (absl::Status s = EnsureDir(dir); !s.ok()) return s;
  PairCaFiles files{dir + "/ca.key", dir + "/ca.crt"};
  if (FileExists(files.key_path) && FileExists(files.cert_path)) {
    auto key = LoadKey(files.key_path);
    if (!key.ok()) return key.status();
    auto cert = LoadCert(files.cert_path);
    if (!cert.ok()) return cert.status();
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
      ERR_clear_error();
      return absl::FailedPreconditionError(absl::StrCat(
          files.cert_path, " does not match ", files.key_path,
          "; remove both to create a new pair CA (and reissue node certs)"));
    }
    return files;
  }
  auto key = NewKey();
  if (!key.ok()) return key.status();
  auto cert = NewCert(key->get(), common_name, nullptr, key->get(),
                      /*is_ca=*/true, "");
  if (!cert.ok()) return cert.status();
  if (absl::Status s = SaveKey(files.key_path, key->get()); !s.ok()) return s;
  if (absl::Status s = SaveCert(files.cert_path, cert->get()); !s.ok()) return s;
  return files;
}

NodeCertFiles NodeCertPaths(const std::string& dir, absl::string_view node_name) {
  return NodeCertFiles{absl::StrCat(dir, "/", node_name, ".key"),
                       absl::StrCat(dir, "/", node_name, ".crt"),
                       dir + "/ca.crt"};
}

absl::StatusOr<NodeCertFiles> EnsureNodeCertificate(const std::string& dir,
                                                    absl::string_view node_name,
                                                    absl::string_view ip) {
  if (node_name.empty() || node_name.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError("bad node name");
  }
  NodeCertFiles files = NodeCertPaths(dir, node_name);
  auto ca_key = LoadKey(dir + "/ca.key");
  if (!ca_key.ok()) return ca_key.status();
  auto ca_cert = LoadCert(files.ca_cert_path);
  if (!ca_cert.ok()) return ca_cert.status();

  Pkey key;
  if (FileExists(files.key_path)) {
    auto loaded = LoadKey(files.key_path);
    if (!loaded.ok()) return loaded.status();
    key = std::move(*loaded);
  }
  const std::string ip_str(ip);
  if (key && FileExists(files.cert_path)) {
    auto cert = LoadCert(files.cert_path);
    if (cert.ok() && X509_check_private_key(cert->get(), key.get()) == 1 &&
        VerifiesAgainst(cert->get(), ca_cert->get()) &&
        CertHasCn(cert->get(), node_name) &&
        X509_check_ip_asc(cert->get(), ip_str.c_str(), 0) == 1) {
      return files;
    }
    ERR_clear_error();
  }
  if (!key) {
    auto fresh = NewKey();
    if (!fresh.ok()) return fresh.status();
    key = std::move(*fresh);
    if (absl::Status s = SaveKey(files.key_path, key.get()); !s.ok()) return s;
  }
  ASN1_OCTET_STRING* parsed_ip = a2i_IPADDRESS(ip_str.c_str());
  if (parsed_ip == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
  }
  ASN1_OCTET_STRING_free(parsed_ip);
  auto cert = NewCert(key.get(), node_name, ca_cert->get(), ca_key->get(),
                      /*is_ca=*/false, ip);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = SaveCert(files.cert_path, cert->get()); !s.ok()) return s;
  return files;
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const NodeCertFiles& files) {
  TlsMaterial tls;
  auto ca = ReadFile(files.ca_cert_path);
  if (!ca.ok()) return ca.status();
  auto cert = ReadFile(files.cert_path);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(files.key_path);
  if (!key.ok()) return key.status();
  tls.ca_cert_pem = std::move(*ca);
  tls.cert_chain_pem = std::move(*cert);
  tls.private_key_pem = std::move(*key);
  return tls;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsMaterial& tls) {
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls.ca_cert_pem;
  options.pem_key_cert_pairs.push_back(
      {tls.private_key_pem, tls.cert_chain_pem});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const TlsMaterial& tls) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.ca_cert_pem;
  options.pem_private_key = tls.private_key_pem;
  options.pem_cert_chain = tls.cert_chain_pem;
  return grpc::SslCredentials(options);
}

}  // namespace interconnect
