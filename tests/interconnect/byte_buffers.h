// Test helper: the bytes of a gRPC message, whatever slices it is made of.
#ifndef TESTS_INTERCONNECT_BYTE_BUFFERS_H_
#define TESTS_INTERCONNECT_BYTE_BUFFERS_H_

#include <string>
#include <vector>

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "gtest/gtest.h"

namespace interconnect_test {

inline std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

}  // namespace interconnect_test

#endif  // TESTS_INTERCONNECT_BYTE_BUFFERS_H_
