// Self-signed certificate and token file creation and reuse.
#include "appliance/mgmt/credentials.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/mgmt/test_server.h"

namespace appliance::mgmt::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(CertificateTest, GeneratesOnceThenReuses) {
  const std::string dir = MakeTempDir();
  const std::string cert = dir + "/mgmt.crt";
  const std::string key = dir + "/mgmt.key";
  absl::StatusOr<CertificateFiles> first = EnsureSelfSignedCertificate("127.0.0.1", cert, key);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->generated);
  EXPECT_EQ(ModeOf(key), 0600u);
  const std::string cert_pem = Slurp(cert);
  const std::string key_pem = Slurp(key);
  EXPECT_NE(cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(key_pem.find("BEGIN PRIVATE KEY"), std::string::npos);

  absl::StatusOr<CertificateFiles> second = EnsureSelfSignedCertificate("127.0.0.1", cert, key);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->generated);
  EXPECT_EQ(Slurp(cert), cert_pem);
  EXPECT_EQ(Slurp(key), key_pem);
}

TEST(CertificateTest, LoneKeyIsNotOverwritten) {
  const std::string dir = MakeTempDir();
  const std::string key = dir + "/mgmt.key";
  std::ofstream(key) << "precious";
  absl::StatusOr<CertificateFiles> files =
      EnsureSelfSignedCertificate("127.0.0.1", dir + "/mgmt.crt", key);
  EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Slurp(key), "precious");
}

// The client verifies the server against the generated certificate as its CA
// when it connects by a name in the SAN, and refuses a name that is not.
TEST(CertificateTest, ClientVerifiesAgainstGeneratedCertificate) {
  TestServer env;
  ASSERT_NE(env.server, nullptr);
  for (const char* host : {"127.0.0.1", "localhost"}) {
    httplib::SSLClient client(host, env.server->port());
    client.set_ca_cert_path(env.cert_file.c_str());
    client.enable_server_certificate_verification(true);
    client.set_bearer_token_auth(env.token.c_str());
    httplib::Result result = client.Get("/api/v1/node");
    ASSERT_TRUE(result) << host << ": " << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 200);
  }
  // A CA that did not sign the server's certificate.
  TestServer other;
  ASSERT_NE(other.server, nullptr);
  httplib::SSLClient client("127.0.0.1", env.server->port());
  client.set_ca_cert_path(other.cert_file.c_str());
  client.enable_server_certificate_verification(true);
  httplib::Result result = client.Get("/api/v1/node");
  EXPECT_FALSE(result);
  EXPECT_EQ(result.error(), httplib::Error::SSLServerVerification);
}

TEST(CertificateTest, SanHoldsBindAddress) {
  const std::string dir = MakeTempDir();
  absl::StatusOr<CertificateFiles> files =
      EnsureSelfSignedCertificate("127.0.0.2", dir + "/c.pem", dir + "/k.pem");
  ASSERT_TRUE(files.ok()) << files.status();
  BIO* bio = BIO_new_file(files->cert_file.c_str(), "r");
  ASSERT_NE(bio, nullptr);
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.2", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(cert, "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_ip_asc(cert, "10.0.0.1", 0), 1);
  // Valid for about ten years.
  int days = 0, seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert),
                           X509_get0_notAfter(cert)),
            1);
  EXPECT_GE(days, 3650);
  EXPECT_LE(days, 3652);
  X509_free(cert);
}

TEST(TokenTest, GeneratesThenReuses) {
  const std::string path = MakeTempDir() + "/token";
  absl::StatusOr<std::string> token = LoadOrCreateToken(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 64u);
  EXPECT_EQ(token->find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(ModeOf(path), 0600u);
  absl::StatusOr<std::string> again = LoadOrCreateToken(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *token);
  const std::string other = MakeTempDir() + "/token";
  EXPECT_NE(*LoadOrCreateToken(other), *token);
}

TEST(TokenTest, ReadsOperatorTokenTrimmed) {
  const std::string path = MakeTempDir() + "/token";
  std::ofstream(path) << "  s3cret-token\n";
  absl::StatusOr<std::string> token = LoadOrCreateToken(path);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, "s3cret-token");
}

TEST(TokenTest, EmptyFileIsAnError) {
  const std::string path = MakeTempDir() + "/token";
  std::ofstream(path) << "\n";
  EXPECT_EQ(LoadOrCreateToken(path).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace appliance::mgmt::testing
