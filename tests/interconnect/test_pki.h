// Test certificates: a pair CA and node certificates for 127.0.0.1, generated
// with the production code (interconnect/tls.h) into TEST_TMPDIR.
#ifndef TESTS_INTERCONNECT_TEST_PKI_H_
#define TESTS_INTERCONNECT_TEST_PKI_H_

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "interconnect/tls.h"

namespace interconnect_test {

inline std::string TestTmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d != nullptr ? d : "/tmp";
}

// Creates (or reuses) the CA in TEST_TMPDIR/<pair> and loads node's material.
inline interconnect::TlsMaterial NodeTls(const std::string& pair,
                                         const std::string& node,
                                         const std::string& ip = "127.0.0.1") {
  const std::string dir = TestTmpDir() + "/" + pair;
  auto ca = interconnect::EnsurePairCa(dir, pair + "-ca");
  EXPECT_TRUE(ca.ok()) << ca.status();
  auto files = interconnect::EnsureNodeCertificate(dir, node, ip);
  EXPECT_TRUE(files.ok()) << files.status();
  auto tls = interconnect::LoadTlsMaterial(*files);
  EXPECT_TRUE(tls.ok()) << tls.status();
  return tls.ok() ? *tls : interconnect::TlsMaterial{};
}

}  // namespace interconnect_test

#endif  // TESTS_INTERCONNECT_TEST_PKI_H_
