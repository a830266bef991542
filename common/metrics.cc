// Implementation notes: values are std::atomic<double> updated with a CAS loop
// (fetch_add on floating point atoms is C++20). Rendering snapshots the family
// list under the registry lock, then each family's series under its own lock,
// and calls gauge callbacks with no lock held.
#include "common/metrics.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace appliance::metrics {
namespace {

void AtomicAdd(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount,
                                       std::memory_order_relaxed)) {
  }
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Exact integers (the common case: counts, bytes) print without exponent.
  if (std::fabs(value) < 9007199254740992.0 && value == std::trunc(value)) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.17g", value);
}

void Counter::Increment(double amount) {
  if (!(amount > 0)) return;  // Also rejects NaN.
  AtomicAdd(value_, amount);
}

void Gauge::Add(double amount) { AtomicAdd(value_, amount); }

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

absl::Status MetricFamily::CheckLabelCount(
    absl::Span<const std::string> values) const {
  if (values.size() != label_names_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric ", name_, " takes ", label_names_.size(),
                     " label values, got ", values.size()));
  }
  return absl::OkStatus();
}

void MetricFamily::RenderTo(std::string& out) const {
  struct Sample {
    std::vector<std::string> labels;
    double value;
    std::function<double()> callback;
  };
  std::vector<Sample> samples;
  {
    absl::MutexLock lock(&mu_);
    samples.reserve(series_.size());
    for (const auto& [labels, series] : series_) {
      double value = 0;
      if (series.counter != nullptr) value = series.counter->Value();
      if (series.gauge != nullptr) value = series.gauge->Value();
      samples.push_back({labels, value, series.callback});
    }
  }
  absl::StrAppend(&out, "# HELP ", name_, " ", EscapeHelp(help_), "\n");
  absl::StrAppend(&out, "# TYPE ", name_, " ",
                  type_ == MetricType::kCounter ? "counter" : "gauge", "\n");
  for (const Sample& sample : samples) {
    const double value = sample.callback ? sample.callback() : sample.value;
    out += name_;
    if (!label_names_.empty()) {
      out += '{';
      for (size_t i = 0; i < label_names_.size(); ++i) {
        if (i > 0) out += ',';
        absl::StrAppend(&out, label_names_[i], "=\"",
                        EscapeLabelValue(sample.labels[i]), "\"");
      }
      out += '}';
    }
    absl::StrAppend(&out, " ", FormatSampleValue(value), "\n");
  }
}

absl::StatusOr<Counter*> CounterFamily::WithLabels(
    absl::Span<const std::string> label_values) {
  if (absl::Status s = CheckLabelCount(label_values); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Series& series = series_[std::vector<std::string>(label_values.begin(),
                                                    label_values.end())];
  if (series.counter == nullptr) series.counter = std::make_unique<Counter>();
  return series.counter.get();
}

void CounterFamily::Remove(absl::Span<const std::string> label_values) {
  absl::MutexLock lock(&mu_);
  series_.erase(
      std::vector<std::string>(label_values.begin(), label_values.end()));
}

absl::StatusOr<Gauge*> GaugeFamily::WithLabels(
    absl::Span<const std::string> label_values) {
  if (absl::Status s = CheckLabelCount(label_values); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Series& series = series_[std::vector<std::string>(label_values.begin(),
                                                    label_values.end())];
  if (series.callback) {
    return absl::FailedPreconditionError(
        absl::StrCat("series of ", name_, " is a callback gauge"));
  }
  if (series.gauge == nullptr) series.gauge = std::make_unique<Gauge>();
  return series.gauge.get();
}

absl::Status GaugeFamily::SetCallback(
    absl::Span<const std::string> label_values,
    std::function<double()> callback) {
  if (absl::Status s = CheckLabelCount(label_values); !s.ok()) return s;
  if (!callback) return absl::InvalidArgumentError("empty gauge callback");
  absl::MutexLock lock(&mu_);
  Series& series = series_[std::vector<std::string>(label_values.begin(),
                                                    label_values.end())];
  series.gauge.reset();
  series.callback = std::move(callback);
  return absl::OkStatus();
}

void GaugeFamily::Remove(absl::Span<const std::string> label_values) {
  absl::MutexLock lock(&mu_);
  series_.erase(
      std::vector<std::string>(label_values.begin(), label_values.end()));
}

absl::StatusOr<MetricFamily*> MetricsRegistry::AddFamily(
    absl::string_view name, absl::string_view help, MetricType type,
    std::vector<std::string> label_names) {
  if (!IsValidMetricName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid metric name \"", name, "\""));
  }
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid label name \"", label, "\" for metric ", name));
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    MetricFamily& existing = *it->second;
    if (existing.type() != type || existing.label_names() != label_names) {
      return absl::AlreadyExistsError(absl::StrCat(
          "metric ", name, " already registered with another type or labels"));
    }
    return &existing;
  }
  std::unique_ptr<MetricFamily> family;
  if (type == MetricType::kCounter) {
    family.reset(new CounterFamily(std::string(name), std::string(help), type,
                                   std::move(label_names)));
  } else {
    family.reset(new GaugeFamily(std::string(name), std::string(help), type,
                                 std::move(label_names)));
  }
  MetricFamily* raw = family.get();
  families_.emplace(std::string(name), std::move(family));
  return raw;
}

absl::StatusOr<CounterFamily*> MetricsRegistry::AddCounterFamily(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names) {
  absl::StatusOr<MetricFamily*> family =
      AddFamily(name, help, MetricType::kCounter, std::move(label_names));
  if (!family.ok()) return family.status();
  return static_cast<CounterFamily*>(*family);
}

absl::StatusOr<GaugeFamily*> MetricsRegistry::AddGaugeFamily(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names) {
  absl::StatusOr<MetricFamily*> family =
      AddFamily(name, help, MetricType::kGauge, std::move(label_names));
  if (!family.ok()) return family.status();
  return static_cast<GaugeFamily*>(*family);
}

absl::StatusOr<Counter*> MetricsRegistry::AddCounter(absl::string_view name,
                                                     absl::string_view help) {
  absl::StatusOr<CounterFamily*> family = AddCounterFamily(name, help);
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

absl::StatusOr<Gauge*> MetricsRegistry::AddGauge(absl::string_view name,
                                                 absl::string_view help) {
  absl::StatusOr<GaugeFamily*> family = AddGaugeFamily(name, help);
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

absl::Status MetricsRegistry::AddCallbackGauge(
    absl::string_view name, absl::string_view help,
    std::function<double()> callback) {
  absl::StatusOr<GaugeFamily*> family = AddGaugeFamily(name, help);
  if (!family.ok()) return family.status();
  return (*family)->SetCallback({}, std::move(callback));
}

std::string MetricsRegistry::RenderPrometheusText() const {
  std::vector<const MetricFamily*> families;
  {
    absl::MutexLock lock(&mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  // Families are never removed, so the pointers stay valid without the lock.
  std::string out;
  for (const MetricFamily* family : families) family->RenderTo(out);
  return out;
}

}  // namespace appliance::metrics
