// The metrics registry: registration rules, values, callbacks, text format.
#include "common/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace appliance::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, RendersCountersAndGaugesWithHelpAndType) {
  MetricsRegistry registry;
  absl::StatusOr<CounterFamily*> bytes =
      registry.AddCounterFamily("iscsi_bytes_total", "Bytes moved.", {"direction"});
  ASSERT_TRUE(bytes.ok());
  (*(*bytes)->WithLabels({"in"}))->Increment(4096);
  (*(*bytes)->WithLabels({"out"}))->Increment(512);
  (*(*bytes)->WithLabels({"out"}))->Increment(-5);  // Ignored.
  absl::StatusOr<Gauge*> sessions = registry.AddGauge("iscsi_sessions", "Open sessions.");
  ASSERT_TRUE(sessions.ok());
  (*sessions)->Increment();
  (*sessions)->Increment();
  (*sessions)->Decrement();
  ASSERT_TRUE(registry.AddCallbackGauge("queue_depth", "Depth.", [] { return 2.5; }).ok());

  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP iscsi_bytes_total Bytes moved.\n"
            "# TYPE iscsi_bytes_total counter\n"
            "iscsi_bytes_total{direction=\"in\"} 4096\n"
            "iscsi_bytes_total{direction=\"out\"} 512\n"
            "# HELP iscsi_sessions Open sessions.\n"
            "# TYPE iscsi_sessions gauge\n"
            "iscsi_sessions 1\n"
            "# HELP queue_depth Depth.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth 2.5\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  absl::StatusOr<GaugeFamily*> family =
      registry.AddGaugeFamily("g", "line1\nback\\slash \"q\"", {"name"});
  ASSERT_TRUE(family.ok());
  (*(*family)->WithLabels({"a\"b\\c\nd"}))->Set(1);
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP g line1\\nback\\\\slash \"q\"\n"
            "# TYPE g gauge\n"
            "g{name=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, RegistrationRules) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.AddCounter("bad-name", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddCounter("1x", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddCounterFamily("x", "", {"__reserved"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<CounterFamily*> a = registry.AddCounterFamily("c", "", {"l"});
  absl::StatusOr<CounterFamily*> b = registry.AddCounterFamily("c", "", {"l"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);  // Same family shared.
  EXPECT_EQ(registry.AddGaugeFamily("c", "", {"l"}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.AddCounterFamily("c", "", {"m"}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*a)->WithLabels({"x", "y"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsTest, CallbackSeriesAndRemoval) {
  MetricsRegistry registry;
  absl::StatusOr<GaugeFamily*> family = registry.AddGaugeFamily("s", "h", {"session"});
  ASSERT_TRUE(family.ok());
  double depth = 3;
  ASSERT_TRUE((*family)->SetCallback({"1"}, [&depth] { return depth; }).ok());
  EXPECT_EQ((*family)->WithLabels({"1"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  depth = 7;
  EXPECT_THAT(registry.RenderPrometheusText(), HasSubstr("s{session=\"1\"} 7\n"));
  (*family)->Remove({"1"});
  EXPECT_THAT(registry.RenderPrometheusText(), ::testing::Not(HasSubstr("session=")));
}

TEST(MetricsTest, SpecialValues) {
  EXPECT_EQ(FormatSampleValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatSampleValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatSampleValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatSampleValue(-3), "-3");
  EXPECT_EQ(FormatSampleValue(0.25), "0.25");
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  MetricsRegistry registry;
  absl::StatusOr<CounterFamily*> family = registry.AddCounterFamily("n_total", "", {"t"});
  ASSERT_TRUE(family.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        (*(*family)->WithLabels({"x"}))->Increment();
        if (i % 1000 == 0) registry.RenderPrometheusText();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ((*(*family)->WithLabels({"x"}))->Value(), 40000);
}

}  // namespace
}  // namespace appliance::metrics
