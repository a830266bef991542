#include "common/defer_scope.h"

#include <utility>

namespace common {
namespace {

struct ThreadState {
  int depth = 0;
  std::vector<absl::AnyInvocable<void() &&>> deferred;
};

thread_local ThreadState state;

}  // namespace

DeferScope::DeferScope() { ++state.depth; }

DeferScope::~DeferScope() {
  if (--state.depth > 0) return;
  // Moved out first: the work may open scopes of its own.
  std::vector<absl::AnyInvocable<void() &&>> work = std::move(state.deferred);
  state.deferred.clear();
  for (auto& fn : work) std::move(fn)();
}

bool DeferScope::IsOpen() { return state.depth > 0; }

bool DeferScope::Defer(absl::AnyInvocable<void() &&> fn) {
  if (state.depth == 0) return false;
  state.deferred.push_back(std::move(fn));
  return true;
}

}  // namespace common
