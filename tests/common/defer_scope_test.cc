// DeferScope: work deferred inside a scope runs when the outermost scope on
// that thread closes, in order; without a scope Defer declines; scopes are
// per thread.
#include "common/defer_scope.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace common {
namespace {

TEST(DeferScopeTest, WithoutAScopeDeferDeclines) {
  EXPECT_FALSE(DeferScope::IsOpen());
  bool ran = false;
  EXPECT_FALSE(DeferScope::Defer([&] { ran = true; }));
  EXPECT_FALSE(ran);
}

TEST(DeferScopeTest, DeferredWorkRunsInOrderWhenTheOutermostScopeCloses) {
  std::string log;
  {
    DeferScope outer;
    EXPECT_TRUE(DeferScope::IsOpen());
    EXPECT_TRUE(DeferScope::Defer([&] { log += "a"; }));
    {
      DeferScope inner;
      EXPECT_TRUE(DeferScope::Defer([&] { log += "b"; }));
    }
    EXPECT_EQ(log, "");  // the inner scope does not run it
    log += "-";
  }
  EXPECT_EQ(log, "-ab");
  EXPECT_FALSE(DeferScope::IsOpen());
}

TEST(DeferScopeTest, WorkDeferredWhileClosingRunsAtOnceAndScopesReopen) {
  std::string log;
  {
    DeferScope round;
    DeferScope::Defer([&] {
      log += "a";
      // The scope is closed by now: the caller does the work itself.
      EXPECT_FALSE(DeferScope::Defer([&] { log += "x"; }));
      DeferScope nested;
      DeferScope::Defer([&] { log += "c"; });
      log += "b";
    });
  }
  EXPECT_EQ(log, "abc");
  {
    DeferScope again;
    DeferScope::Defer([&] { log += "d"; });
  }
  EXPECT_EQ(log, "abcd");
}

TEST(DeferScopeTest, ScopesArePerThread) {
  DeferScope here;
  bool other_open = true;
  bool other_deferred = true;
  std::thread t([&] {
    other_open = DeferScope::IsOpen();
    other_deferred = DeferScope::Defer([] {});
  });
  t.join();
  EXPECT_FALSE(other_open);
  EXPECT_FALSE(other_deferred);
}

}  // namespace
}  // namespace common
