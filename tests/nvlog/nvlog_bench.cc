// nvlog_bench: append throughput of the NVLOG, mirrored (to an NvlogReplica
// over real gRPC + mutual TLS on loopback) against unmirrored (link down), at
// N concurrent appenders writing fixed-size entries. Each appender appends,
// waits for its completion (the point a host would be acknowledged), retires
// the entry (as if the BlockStore write had completed) and goes again.
//
// Optional --write_us simulates the owner's own BlockStore write, which runs
// in parallel with the mirror: an append then completes at
// max(mirror, write_us), which is what a host would see.
//
//   bazel run -c opt //tests/nvlog:nvlog_bench -- --seconds=5
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "appliance/nvlog/grpc_mirror_transport.h"
#include "appliance/nvlog/nvlog.h"
#include "appliance/nvlog/nvlog_replica.h"
#include "grpcpp/create_channel.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"

ABSL_FLAG(double, seconds, 3.0, "measured time per configuration");
ABSL_FLAG(int, appenders, 32, "concurrent appenders (queue depth)");
ABSL_FLAG(int, entry_bytes, 4096, "bytes per entry (multiple of 4096 or 512)");
ABSL_FLAG(std::string, in_flight, "1,2,4",
          "Nvlog max_batches_in_flight values to measure (comma-separated)");
ABSL_FLAG(int, write_us, 0,
          "simulated local BlockStore write time per append (0: none)");

namespace {

class DownTransport final : public nvlog::MirrorTransport {
 public:
  bool LinkUp() const override { return false; }
  absl::StatusOr<std::unique_ptr<Session>> Open(
      const interconnect::NvlogResyncRequest&, SessionCallbacks) override {
    return absl::UnavailableError("down");
  }
};

struct Result {
  double ops_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  double entries_per_batch = 0;
};

Result Run(nvlog::Nvlog& log, int appenders, int entry_bytes, int write_us,
           absl::Duration duration) {
  const std::vector<uint8_t> data(entry_bytes, 0x5a);
  const uint32_t blocks = entry_bytes % 4096 == 0 ? entry_bytes / 4096
                                                  : entry_bytes / 512;
  std::atomic<bool> go{false};
  std::vector<std::vector<double>> latencies(appenders);
  std::vector<std::thread> threads;
  const nvlog::Nvlog::Stats before = log.stats();
  absl::Time start, end;
  for (int t = 0; t < appenders; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      const absl::Time stop = absl::Now() + duration;
      uint64_t lba = static_cast<uint64_t>(t) << 20;
      while (absl::Now() < stop) {
        const absl::Time t0 = absl::Now();
        absl::Notification done;
        auto seq = log.Append(1, lba, blocks, data,
                              [&](absl::StatusOr<nvlog::AppendResult>) {
                                done.Notify();
                              });
        if (!seq.ok()) {
          std::fprintf(stderr, "append: %s\n", seq.status().ToString().c_str());
          std::exit(1);
        }
        if (write_us > 0) absl::SleepFor(absl::Microseconds(write_us));
        done.WaitForNotification();
        latencies[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        (void)log.Retire(*seq);
        lba += blocks;
      }
    });
  }
  start = absl::Now();
  go = true;
  for (auto& th : threads) th.join();
  end = absl::Now();
  const nvlog::Nvlog::Stats after = log.stats();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  Result r;
  r.ops_per_second = all.size() / absl::ToDoubleSeconds(end - start);
  if (!all.empty()) {
    r.p50_us = all[all.size() / 2];
    r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  const uint64_t batches = after.batches_sent - before.batches_sent;
  if (batches > 0) {
    r.entries_per_batch =
        static_cast<double>(after.entries_sent - before.entries_sent) / batches;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int appenders = absl::GetFlag(FLAGS_appenders);
  const int entry_bytes = absl::GetFlag(FLAGS_entry_bytes);
  const int write_us = absl::GetFlag(FLAGS_write_us);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));

  // Pair certificates, as the daemon's interconnect uses them.
  char tmpl[] = "/tmp/nvlog_bench.XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) return 1;
  if (!interconnect::EnsurePairCa(dir, "bench-ca").ok()) return 1;
  auto a = interconnect::EnsureNodeCertificate(dir, "node-a", "127.0.0.1");
  auto b = interconnect::EnsureNodeCertificate(dir, "node-b", "127.0.0.1");
  if (!a.ok() || !b.ok()) return 1;
  auto tls_a = interconnect::LoadTlsMaterial(*a);
  auto tls_b = interconnect::LoadTlsMaterial(*b);
  if (!tls_a.ok() || !tls_b.ok()) return 1;

  nvlog::NvlogReplica replica;
  interconnect::InterconnectServer::Options server_options;
  server_options.credentials = interconnect::MakeServerCredentials(*tls_b);
  auto server = interconnect::InterconnectServer::Create(server_options, {&replica});
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateCustomChannel(
      (*server)->address(), interconnect::MakeChannelCredentials(*tls_a),
      interconnect::ClientChannelArguments(interconnect::TransportOptions()));
  nvlog::GrpcMirrorTransport mirrored_transport(channel);
  DownTransport down_transport;

  std::printf("NVLOG append, %d appenders, %d-byte entries, %.1f s each%s\n",
              appenders, entry_bytes, absl::ToDoubleSeconds(duration),
              write_us > 0
                  ? (", simulated local write " + std::to_string(write_us) + " us")
                        .c_str()
                  : "");
  nvlog::Nvlog::Options options;
  options.node_name = "node-a";
  Result unmirrored;
  {
    auto log = nvlog::Nvlog::Create(down_transport, options);
    if (!log.ok()) return 1;
    Run(**log, appenders, entry_bytes, write_us, absl::Milliseconds(300));
    unmirrored = Run(**log, appenders, entry_bytes, write_us, duration);
  }
  std::printf("%-24s %12s %10s %10s %10s %8s\n", "mode", "appends/s", "p50 us",
              "p99 us", "per batch", "ratio");
  std::printf("%-24s %12.0f %10.1f %10.1f %10s %8s\n", "unmirrored",
              unmirrored.ops_per_second, unmirrored.p50_us, unmirrored.p99_us,
              "-", "1.00");
  std::string list = absl::GetFlag(FLAGS_in_flight);
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const int in_flight = std::atoi(list.substr(pos, comma - pos).c_str());
    pos = comma + 1;
    if (in_flight < 1) continue;
    options.max_batches_in_flight = in_flight;
    auto log = nvlog::Nvlog::Create(mirrored_transport, options);
    if (!log.ok() || !(*log)->WaitUntilMirrored(true, absl::Seconds(10))) {
      std::fprintf(stderr, "could not mirror\n");
      return 1;
    }
    Run(**log, appenders, entry_bytes, write_us, absl::Milliseconds(300));
    Result m = Run(**log, appenders, entry_bytes, write_us, duration);
    const std::string name =
        "mirrored, in_flight=" + std::to_string(in_flight);
    std::printf("%-24s %12.0f %10.1f %10.1f %10.1f %8.3f\n", name.c_str(),
                m.ops_per_second, m.p50_us, m.p99_us, m.entries_per_batch,
                m.ops_per_second / unmirrored.ops_per_second);
    if ((*log)->unmirrored_writes() != 0) {
      std::printf("  (%llu appends fell back to unmirrored)\n",
                  static_cast<unsigned long long>((*log)->unmirrored_writes()));
    }
  }
  for (const char* f : {"ca.key", "ca.crt", "node-a.key", "node-a.crt",
                        "node-b.key", "node-b.crt"}) {
    std::remove((std::string(dir) + "/" + f).c_str());
  }
  std::remove(dir);
  return 0;
}
