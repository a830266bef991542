// Pair certificates and mTLS on the interconnect: only holders of a
// certificate from the pair CA get through.
#include <fstream>
#include <sstream>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "interconnect/partner_channel.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"
#include "tests/interconnect/test_pki.h"

namespace interconnect {
namespace {

using interconnect_test::NodeTls;
using interconnect_test::TestTmpDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

X509* ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), pem.size());
  X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return c;
}

TEST(PairCertsTest, CreatesVerifiableCertificatesAndIsIdempotent) {
  const std::string dir = TestTmpDir() + "/idempotent";
  auto ca = EnsurePairCa(dir, "pair-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto a = EnsureNodeCertificate(dir, "node-a", "10.1.2.3");
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string ca_pem = Slurp(ca->cert_path);
  const std::string ca_key = Slurp(ca->key_path);
  const std::string a_pem = Slurp(a->cert_path);
  const std::string a_key = Slurp(a->key_path);

  // Second run: nothing changes.
  ASSERT_TRUE(EnsurePairCa(dir, "pair-ca").ok());
  ASSERT_TRUE(EnsureNodeCertificate(dir, "node-a", "10.1.2.3").ok());
  EXPECT_EQ(Slurp(ca->cert_path), ca_pem);
  EXPECT_EQ(Slurp(ca->key_path), ca_key);
  EXPECT_EQ(Slurp(a->cert_path), a_pem);
  EXPECT_EQ(Slurp(a->key_path), a_key);

  X509* ca_cert = ParseCert(ca_pem);
  X509* node = ParseCert(a_pem);
  ASSERT_NE(ca_cert, nullptr);
  ASSERT_NE(node, nullptr);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca_cert);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, node, nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  EXPECT_EQ(X509_check_ip_asc(node, "10.1.2.3", 0), 1);
  EXPECT_NE(X509_check_ip_asc(node, "10.1.2.4", 0), 1);
  char cn[64];
  X509_NAME_get_text_by_NID(X509_get_subject_name(node), NID_commonName, cn,
                            sizeof(cn));
  EXPECT_STREQ(cn, "node-a");

  // A new address reissues the certificate with the same key.
  ASSERT_TRUE(EnsureNodeCertificate(dir, "node-a", "10.1.2.4").ok());
  EXPECT_NE(Slurp(a->cert_path), a_pem);
  EXPECT_EQ(Slurp(a->key_path), a_key);
  X509* reissued = ParseCert(Slurp(a->cert_path));
  EXPECT_EQ(X509_check_ip_asc(reissued, "10.1.2.4", 0), 1);
  X509_free(reissued);
  X509_free(node);
  X509_free(ca_cert);
}

TEST(PairCertsTest, RejectsBadInput) {
  const std::string dir = TestTmpDir() + "/bad";
  EXPECT_FALSE(EnsureNodeCertificate(dir, "node-a", "127.0.0.1").ok())
      << "no CA yet";
  ASSERT_TRUE(EnsurePairCa(dir, "ca").ok());
  EXPECT_FALSE(EnsureNodeCertificate(dir, "node-a", "not-an-ip").ok());
  EXPECT_FALSE(EnsureNodeCertificate(dir, "../x", "127.0.0.1").ok());
}

class MtlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InterconnectServer::Options options;
    options.credentials = MakeServerCredentials(NodeTls("pair", "node-b"));
    auto server = InterconnectServer::Create(options, {&heartbeat_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  grpc::Status Beat(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(server_->address(), creds, args);
    auto stub = Heartbeat::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    HeartbeatRequest req;
    req.set_node_name("node-a");
    req.set_sequence(7);
    HeartbeatReply reply;
    grpc::Status s = stub->Beat(&ctx, req, &reply);
    if (s.ok()) {
      EXPECT_EQ(reply.sequence(), 7u);
      EXPECT_EQ(reply.node_name(), "node-b");
    }
    return s;
  }

  HeartbeatService heartbeat_{"node-b"};
  std::unique_ptr<InterconnectServer> server_;
};

TEST_F(MtlsTest, PairNodeIsAccepted) {
  ASSERT_GT(server_->port(), 0);
  grpc::Status s = Beat(MakeChannelCredentials(NodeTls("pair", "node-a")));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(heartbeat_.beats_received(), 1u);
  EXPECT_EQ(heartbeat_.last_peer_name(), "node-a");
}

TEST_F(MtlsTest, CertificateFromAnotherCaIsRefused) {
  // Trusts the right CA (so only the server's check can refuse it) but
  // presents a certificate of a different CA.
  TlsMaterial foreign = NodeTls("other-pair", "node-a");
  foreign.ca_cert_pem = NodeTls("pair", "node-a").ca_cert_pem;
  grpc::Status s = Beat(MakeChannelCredentials(foreign));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(heartbeat_.beats_received(), 0u);
}

TEST_F(MtlsTest, ClientWithoutCertificateIsRefused) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = NodeTls("pair", "node-a").ca_cert_pem;
  grpc::Status s = Beat(grpc::SslCredentials(options));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(heartbeat_.beats_received(), 0u);
}

TEST_F(MtlsTest, PlaintextClientIsRefused) {
  grpc::Status s = Beat(grpc::InsecureChannelCredentials());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(heartbeat_.beats_received(), 0u);
}

TEST_F(MtlsTest, ClientRefusesServerOfAnotherCa) {
  // The client trusts only the other pair's CA: the server is refused.
  grpc::Status s = Beat(MakeChannelCredentials(NodeTls("other-pair", "node-a")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(heartbeat_.beats_received(), 0u);
}

}  // namespace
}  // namespace interconnect
