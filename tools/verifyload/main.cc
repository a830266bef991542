// verifyload: a verifying load generator for iSCSI LUNs. See README.md.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>

#include "tools/verifyload/options.h"
#include "tools/verifyload/report.h"
#include "tools/verifyload/verifyload.h"

namespace {

std::atomic<int> g_signals{0};

void OnSignal(int) { g_signals.fetch_add(1); }

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = &OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns early with EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  // libiscsi writes to the socket with writev(), which raises SIGPIPE when
  // the target has gone.
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<verifyload::Options> options =
      verifyload::ParseArgs(argc, argv);
  if (!options.ok()) {
    std::cerr << "verifyload: " << options.status().message() << "\n\n"
              << verifyload::UsageText();
    return verifyload::kExitUsage;
  }
  if (options->help) {
    std::cout << verifyload::UsageText();
    return verifyload::kExitClean;
  }
  static_assert(std::atomic<int>::is_always_lock_free,
                "the signal handler needs a lock-free counter");
  InstallSignalHandlers();
  const verifyload::Report report =
      verifyload::RunVerifyload(*options, [] { return g_signals.load(); });
  std::cout << report.ToJson() << std::endl;
  if (!report.fatal.empty()) {
    std::cerr << "verifyload: " << report.fatal << "\n";
  }
  return report.ExitCode();
}
