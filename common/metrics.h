// Metrics: a small thread-safe registry of counters and gauges that renders itself
// in the Prometheus text exposition format (version 0.0.4).
//
// Modules register metric families once (typically at construction) and keep the
// returned pointers; the registry owns every family and series and keeps them at
// stable addresses for its whole lifetime, so hot paths only touch an atomic.
//
//   MetricsRegistry registry;
//   absl::StatusOr<CounterFamily*> bytes = registry.AddCounterFamily(
//       "appliance_iscsi_bytes_total", "Bytes moved by iSCSI.", {"direction"});
//   absl::StatusOr<Counter*> in = (*bytes)->WithLabels({"in"});
//   (*in)->Increment(4096);
//   ... registry.RenderPrometheusText() ...
//
// A gauge can also be a callback that is evaluated at render time (queue depth,
// session count), without any registry lock held, so it may take its own locks.
#ifndef COMMON_METRICS_H_
#define COMMON_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace appliance::metrics {

// A monotonically increasing value (requests, bytes, errors).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `amount`; negative or NaN amounts are ignored (a counter never goes down).
  void Increment(double amount = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (open sessions, queue depth).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount);
  void Increment() { Add(1.0); }
  void Decrement() { Add(-1.0); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

enum class MetricType { kCounter, kGauge };

// The part shared by counter and gauge families: name, help, label names, and the
// series keyed by their label values. Not used directly.
class MetricFamily {
 public:
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;
  virtual ~MetricFamily() = default;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends this family's # HELP, # TYPE and sample lines to `out`. Callback
  // gauges are evaluated here, with no lock held.
  void RenderTo(std::string& out) const;

 protected:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);

  // One time series: a stored value or (gauges only) a callback.
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::function<double()> callback;
  };

  absl::Status CheckLabelCount(absl::Span<const std::string> values) const;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  mutable absl::Mutex mu_;
  // Keyed by label values (in label_names_ order); std::map renders sorted.
  std::map<std::vector<std::string>, Series> series_ ABSL_GUARDED_BY(mu_);
};

class CounterFamily : public MetricFamily {
 public:
  // The counter for these label values (one per label name, same order), created
  // at zero on first use. The pointer stays valid for the registry's lifetime
  // unless Remove() drops the series. InvalidArgument on a wrong label count.
  absl::StatusOr<Counter*> WithLabels(absl::Span<const std::string> label_values);
  // Drops a series (a session that ended). Pointers to it become invalid.
  void Remove(absl::Span<const std::string> label_values);

 private:
  friend class MetricsRegistry;
  using MetricFamily::MetricFamily;
};

class GaugeFamily : public MetricFamily {
 public:
  // Like CounterFamily::WithLabels. FailedPrecondition if the series is a callback.
  absl::StatusOr<Gauge*> WithLabels(absl::Span<const std::string> label_values);
  // Makes the series for these label values a callback evaluated at render time,
  // replacing any stored value or earlier callback. The callback must stay
  // callable until Remove() or the registry's destruction.
  absl::Status SetCallback(absl::Span<const std::string> label_values,
                           std::function<double()> callback);
  void Remove(absl::Span<const std::string> label_values);

 private:
  friend class MetricsRegistry;
  using MetricFamily::MetricFamily;
};

// Owns every metric family. Thread-safe; usually one per process, passed by
// reference to the modules that register metrics and to the /metrics endpoint.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Returns the family called `name`, creating it. Adding a name again with the
  // same type and label names returns the existing family (so two instances of a
  // module can share it); a different type or label names is AlreadyExists.
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
  // and not start with "__" (InvalidArgument otherwise). Counter names should end
  // in "_total" by Prometheus convention (not enforced).
  absl::StatusOr<CounterFamily*> AddCounterFamily(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily*> AddGaugeFamily(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names = {});

  // Shorthands for a family without labels and its single series.
  absl::StatusOr<Counter*> AddCounter(absl::string_view name,
                                      absl::string_view help);
  absl::StatusOr<Gauge*> AddGauge(absl::string_view name,
                                  absl::string_view help);
  absl::Status AddCallbackGauge(absl::string_view name, absl::string_view help,
                                std::function<double()> callback);

  // The whole registry in Prometheus text exposition format 0.0.4, families
  // sorted by name, serve it as "text/plain; version=0.0.4".
  std::string RenderPrometheusText() const;

 private:
  absl::StatusOr<MetricFamily*> AddFamily(absl::string_view name,
                                          absl::string_view help,
                                          MetricType type,
                                          std::vector<std::string> label_names);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<MetricFamily>, std::less<>> families_
      ABSL_GUARDED_BY(mu_);
};

// Escaping of the text format, exposed for tests: label values escape
// backslash, double quote and newline; HELP text escapes backslash and newline.
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);
// A sample value: integers without a decimal point, NaN, +Inf, -Inf, else %.17g.
std::string FormatSampleValue(double value);

}  // namespace appliance::metrics

#endif  // COMMON_METRICS_H_
