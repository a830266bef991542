// ComputeResidual against the cases RFC 7143 §11.4.5.1 distinguishes.
#include "target/iscsi/residual.h"

#include "gtest/gtest.h"

namespace iscsi {
namespace {

Residual Over(uint32_t n) { return {true, false, n}; }
Residual Under(uint32_t n) { return {false, true, n}; }

TEST(ResidualTest, ExactTransferHasNoResidual) {
  EXPECT_EQ(ComputeResidual(512, 512, 512), Residual());
  EXPECT_EQ(ComputeResidual(0, 0, 0), Residual());
}

TEST(ResidualTest, CommandWantingMoreThanExpectedIsOverflow) {
  EXPECT_EQ(ComputeResidual(0, 512, 0), Over(512));
  EXPECT_EQ(ComputeResidual(200, 512, 200), Over(312));
  EXPECT_EQ(ComputeResidual(512, 1024, 512), Over(512));
  EXPECT_EQ(ComputeResidual(0, 0xffffffffu, 0), Over(0xffffffffu));
}

TEST(ResidualTest, CommandWantingLessThanExpectedIsUnderflow) {
  EXPECT_EQ(ComputeResidual(10000, 512, 512), Under(10000 - 512));
  EXPECT_EQ(ComputeResidual(255, 36, 36), Under(219));  // short INQUIRY data
}

TEST(ResidualTest, CommandEndingEarlyIsUnderflowOfWhatWasNotSent) {
  // CHECK CONDITION before any data moved.
  EXPECT_EQ(ComputeResidual(4096, 4096, 0), Under(4096));
  // Overflow takes precedence even when nothing moved.
  EXPECT_EQ(ComputeResidual(512, 1024, 0), Over(512));
}

}  // namespace
}  // namespace iscsi
