// Work a thread puts off to the end of what it is doing now.
//
// A thread that handles events in rounds (the iSCSI event loop over one
// epoll_wait's ready descriptors, the io_uring reaper over the completions
// ready at once, the partner adapter over one stream message) opens a
// DeferScope around the round. Code it calls once per command can then hold
// back a per-command cost it can share (a stream write: every command of the
// round leaves in one interconnect message) and do it once when the scope
// closes. With no scope open, Defer declines and the caller does the work at
// once: nothing is ever held on a thread that does not close a scope.
//
//   {
//     common::DeferScope round;
//     for (auto& event : ready) Handle(event);   // may call Defer
//   }                                            // deferred work runs here
#ifndef COMMON_DEFER_SCOPE_H_
#define COMMON_DEFER_SCOPE_H_

#include <vector>

#include "absl/functional/any_invocable.h"

namespace common {

class DeferScope {
 public:
  // Scopes nest; the outermost one runs what was deferred.
  DeferScope();
  // Runs the deferred work in the order it was deferred (work deferred while
  // it runs runs at once: the scope is closed by then).
  ~DeferScope();
  DeferScope(const DeferScope&) = delete;
  DeferScope& operator=(const DeferScope&) = delete;

  // Whether a scope is open on this thread.
  static bool IsOpen();
  // Keeps fn to run when this thread's outermost scope closes and returns
  // true; returns false (and drops fn) when no scope is open.
  static bool Defer(absl::AnyInvocable<void() &&> fn);
};

}  // namespace common

#endif  // COMMON_DEFER_SCOPE_H_
