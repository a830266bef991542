// Replays the checked-in corpora through the fuzz entry points (the fuzzers
// themselves need clang -fsanitize=fuzzer), plus a deterministic mutation
// pass so the tests exercise more than the seeds.
#include <dirent.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

extern "C" int PduFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LoginKeysFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int ConnectionFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::vector<uint8_t>> LoadCorpus(const std::string& dir) {
  std::vector<std::vector<uint8_t>> out;
  const std::string path = std::string(getenv("TEST_SRCDIR")) + "/" +
                           std::string(getenv("TEST_WORKSPACE")) + "/" + dir;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(path + "/" + e->d_name, std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  closedir(d);
  return out;
}

void Replay(const std::string& dir, int (*fn)(const uint8_t*, size_t)) {
  auto corpus = LoadCorpus(dir);
  ASSERT_FALSE(corpus.empty()) << dir;
  std::mt19937 rng(1234);
  for (auto& input : corpus) {
    fn(input.data(), input.size());
    for (int m = 0; m < 200; ++m) {
      std::vector<uint8_t> mutated = input;
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits && !mutated.empty(); ++e) {
        switch (rng() % 3) {
          case 0: mutated[rng() % mutated.size()] = static_cast<uint8_t>(rng()); break;
          case 1: mutated.resize(rng() % (mutated.size() + 1)); break;
          case 2: mutated.insert(mutated.begin() + rng() % mutated.size(),
                                 static_cast<uint8_t>(rng()));
            break;
        }
      }
      fn(mutated.data(), mutated.size());
    }
  }
}

TEST(FuzzReplay, PduCorpus) { Replay("tests/iscsi/fuzz/corpus/pdu", PduFuzzerTestOneInput); }

TEST(FuzzReplay, LoginKeysCorpus) {
  Replay("tests/iscsi/fuzz/corpus/login_keys", LoginKeysFuzzerTestOneInput);
}

// The connection fuzzer drives a real server per input (slow): seeds only. The
// mutation runs are tests/iscsi/fuzz/run_fuzzers.sh's job.
TEST(FuzzReplay, ConnectionCorpusSeeds) {
  auto corpus = LoadCorpus("tests/iscsi/fuzz/corpus/connection");
  ASSERT_FALSE(corpus.empty());
  for (auto& input : corpus) ConnectionFuzzerTestOneInput(input.data(), input.size());
}

// Regression: libFuzzer's -timeout watchdog interrupts the fuzzing thread with
// SIGALRM (no SA_RESTART) every timeout/2+1 seconds. The harness used to read
// an interrupted poll() as "the target did not answer the login" and abort,
// which looked like a lost connection hand-off in the target. Here a thread
// interrupts the harness far more often than libFuzzer does; every input must
// still run to completion (an abort fails the test).
std::atomic<int> interruptions{0};

TEST(FuzzReplay, ConnectionHarnessToleratesInterruptedWaits) {
  auto corpus = LoadCorpus("tests/iscsi/fuzz/corpus/connection");
  ASSERT_FALSE(corpus.empty());
  // Creates the harness's server before the signals start.
  ConnectionFuzzerTestOneInput(corpus[0].data(), corpus[0].size());

  struct sigaction interrupt {};
  struct sigaction previous {};
  interrupt.sa_handler = [](int) { interruptions++; };
  sigemptyset(&interrupt.sa_mask);
  interrupt.sa_flags = 0;  // like libFuzzer: interrupted calls fail with EINTR
  ASSERT_EQ(sigaction(SIGALRM, &interrupt, &previous), 0);
  const pthread_t fuzzing_thread = pthread_self();
  std::atomic<bool> stop{false};
  std::thread interrupter([&] {
    while (!stop.load()) {
      pthread_kill(fuzzing_thread, SIGALRM);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  int rounds = 0;
  for (; rounds < 1000 && (rounds < 20 || interruptions.load() < 1000); ++rounds) {
    for (auto& input : corpus) ConnectionFuzzerTestOneInput(input.data(), input.size());
  }
  stop = true;
  interrupter.join();
  sigaction(SIGALRM, &previous, nullptr);
  EXPECT_GE(interruptions.load(), 1000) << "after " << rounds << " rounds";
}

}  // namespace
