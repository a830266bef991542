// ManualExecutor: a FIFO of closures that a test drains explicitly, so code that
// completes "later, on another thread" can be exercised deterministically on the
// test's own thread.
#ifndef TESTS_FAKES_MANUAL_EXECUTOR_H_
#define TESTS_FAKES_MANUAL_EXECUTOR_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace fakes {

class ManualExecutor {
 public:
  using Closure = absl::AnyInvocable<void() &&>;

  // Queues fn; it runs on a later RunOne()/RunAll().
  void Post(Closure fn) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(fn));
  }

  // Runs the oldest queued closure; false when the queue was empty.
  bool RunOne() {
    Closure fn;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return false;
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(fn)();
    return true;
  }

  // Runs closures (including ones queued while running) until none is left.
  // Returns how many ran.
  size_t RunAll() {
    size_t n = 0;
    while (RunOne()) ++n;
    return n;
  }

  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // An executor function suitable for MemoryBlockStore::Options::executor.
  std::function<void(Closure)> AsFunction() {
    return [this](Closure fn) { Post(std::move(fn)); };
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<Closure> queue_;
};

}  // namespace fakes

#endif  // TESTS_FAKES_MANUAL_EXECUTOR_H_
