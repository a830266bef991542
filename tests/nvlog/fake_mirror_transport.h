// FakeMirrorTransport: an in-process MirrorTransport in front of an
// NvlogReplica, with the controls the NVLOG tests need: hold batches (and
// release them one by one), delay them, cut and restore the link, fail the
// next Open, count round trips. One delivery thread runs every callback of a
// session in order (acks, then on_closed last), as a real transport would.
#ifndef TESTS_NVLOG_FAKE_MIRROR_TRANSPORT_H_
#define TESTS_NVLOG_FAKE_MIRROR_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "appliance/nvlog/mirror_transport.h"
#include "appliance/nvlog/nvlog_replica.h"

namespace nvlog_test {

class FakeMirrorTransport final : public nvlog::MirrorTransport {
 public:
  explicit FakeMirrorTransport(nvlog::NvlogReplica& replica)
      : replica_(replica), thread_([this] { Loop(); }) {}

  ~FakeMirrorTransport() override {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  // --- controls ---

  // Down: LinkUp() is false, Open fails, the open session ends (batches not
  // yet delivered are lost). Up: sessions can be opened again.
  void SetLinkUp(bool up) {
    absl::MutexLock l(&mu_);
    link_up_ = up;
    if (!up && current_ != nullptr) {
      CloseLocked(current_, absl::UnavailableError("link cut"));
    }
  }
  // While held, batches stay queued (Release lets n of them through).
  void SetHold(bool hold) {
    absl::MutexLock l(&mu_);
    hold_ = hold;
  }
  void Release(int n) {
    absl::MutexLock l(&mu_);
    released_ += n;
  }
  // Each batch is delivered no earlier than delay after it was sent.
  void SetDelay(absl::Duration delay) {
    absl::MutexLock l(&mu_);
    delay_ = delay;
  }
  void FailNextOpen(absl::Status status) {
    absl::MutexLock l(&mu_);
    fail_next_open_ = std::move(status);
  }

  // Batches sent by the log (round trips) and delivered to the replica.
  int batches_sent() const {
    absl::MutexLock l(&mu_);
    return sent_;
  }
  int batches_delivered() const {
    absl::MutexLock l(&mu_);
    return delivered_;
  }
  int sessions_opened() const {
    absl::MutexLock l(&mu_);
    return opened_;
  }
  // Batches sent and not delivered yet.
  int queued() const {
    absl::MutexLock l(&mu_);
    int n = 0;
    for (const Event& e : events_) n += e.batch.has_value() ? 1 : 0;
    return n;
  }

  // Waits until pred() holds; pred is re-checked whenever the transport's
  // state changes (a batch sent or delivered, a session opened or closed).
  bool WaitUntil(std::function<bool()> pred,
                 absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock l(&mu_);
    auto cond = [&pred]() { return pred(); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // (pred must not call the transport's accessors: use the Wait* below.)
  bool WaitForQueued(int n, absl::Duration timeout = absl::Seconds(10)) {
    return WaitUntil([this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      int q = 0;
      for (const Event& e : events_) q += e.batch.has_value() ? 1 : 0;
      return q >= n;
    }, timeout);
  }
  bool WaitForSent(int n, absl::Duration timeout = absl::Seconds(10)) {
    return WaitUntil(
        [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return sent_ >= n; },
        timeout);
  }
  bool WaitForDelivered(int n, absl::Duration timeout = absl::Seconds(10)) {
    return WaitUntil(
        [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return delivered_ >= n; },
        timeout);
  }
  bool WaitForSessions(int n, absl::Duration timeout = absl::Seconds(10)) {
    return WaitUntil(
        [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return opened_ >= n; },
        timeout);
  }

  // --- MirrorTransport ---

  bool LinkUp() const override {
    absl::MutexLock l(&mu_);
    return link_up_;
  }

  absl::StatusOr<std::unique_ptr<Session>> Open(
      const interconnect::NvlogResyncRequest& request,
      SessionCallbacks callbacks) override {
    {
      absl::MutexLock l(&mu_);
      if (!link_up_) return absl::UnavailableError("link down");
      if (fail_next_open_.has_value()) {
        absl::Status s = std::move(*fail_next_open_);
        fail_next_open_.reset();
        return s;
      }
    }
    absl::StatusOr<interconnect::NvlogSnapshot> snap =
        replica_.ApplyResync(request);
    if (!snap.ok()) return snap.status();
    auto state = std::make_shared<State>();
    state->callbacks = std::move(callbacks);
    absl::MutexLock l(&mu_);
    opened_++;
    current_ = state;
    return std::unique_ptr<Session>(new FakeSession(*this, state));
  }

 private:
  struct State {
    SessionCallbacks callbacks;
    bool closing = false;  // no more sends; a close event is queued
    bool closed = false;   // on_closed has run
  };
  struct Event {
    std::shared_ptr<State> session;
    std::optional<interconnect::NvlogBatch> batch;  // empty: close
    absl::Status close_status;
    absl::Time ready;
  };

  class FakeSession final : public Session {
   public:
    FakeSession(FakeMirrorTransport& t, std::shared_ptr<State> s)
        : t_(t), s_(std::move(s)) {}
    ~FakeSession() override {
      absl::MutexLock l(&t_.mu_);
      if (!s_->closing) {
        t_.CloseLocked(s_, absl::CancelledError("session destroyed"));
      }
      State* s = s_.get();
      auto closed = [s]() { return s->closed; };
      t_.mu_.Await(absl::Condition(&closed));
    }
    void Send(nvlog::OutgoingBatch batch) override {
      interconnect::NvlogBatch whole = batch.Materialize();
      absl::MutexLock l(&t_.mu_);
      if (s_->closing) return;
      t_.sent_++;
      t_.events_.push_back(
          Event{s_, std::move(whole), absl::OkStatus(), absl::Now() + t_.delay_});
    }
    void Close() override {
      absl::MutexLock l(&t_.mu_);
      if (!s_->closing) t_.CloseLocked(s_, absl::CancelledError("closed"));
    }

   private:
    FakeMirrorTransport& t_;
    std::shared_ptr<State> s_;
  };

  void CloseLocked(const std::shared_ptr<State>& s, absl::Status why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    s->closing = true;
    std::deque<Event> keep;
    for (Event& e : events_) {
      if (e.session != s) keep.push_back(std::move(e));
    }
    events_ = std::move(keep);
    events_.push_front(Event{s, std::nullopt, std::move(why), absl::Now()});
    if (current_ == s) current_ = nullptr;
  }

  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_) return true;
    if (events_.empty()) return false;
    const Event& e = events_.front();
    if (!e.batch.has_value()) return true;
    return (!hold_ || released_ > 0) && absl::Now() >= e.ready;
  }

  void Loop() {
    absl::MutexLock l(&mu_);
    while (true) {
      absl::Time deadline = absl::InfiniteFuture();
      if (!events_.empty() && events_.front().batch.has_value()) {
        deadline = events_.front().ready;
      }
      mu_.AwaitWithDeadline(absl::Condition(this, &FakeMirrorTransport::ReadyLocked),
                            deadline);
      if (stopping_) return;
      if (!ReadyLocked()) continue;
      Event e = std::move(events_.front());
      events_.pop_front();
      if (e.batch.has_value()) {
        if (hold_) released_--;
        mu_.Unlock();
        absl::StatusOr<interconnect::NvlogAck> ack = replica_.ApplyBatch(*std::move(e.batch));
        if (ack.ok()) e.session->callbacks.on_ack(*ack);
        mu_.Lock();
        delivered_++;
        if (!ack.ok() && !e.session->closing) {
          // The replica refused it: the stream ends with its status.
          CloseLocked(e.session, ack.status());
        }
      } else {
        mu_.Unlock();
        e.session->callbacks.on_closed(e.close_status);
        mu_.Lock();
        e.session->closed = true;
      }
    }
  }

  nvlog::NvlogReplica& replica_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool link_up_ ABSL_GUARDED_BY(mu_) = true;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  int released_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  std::optional<absl::Status> fail_next_open_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<State> current_ ABSL_GUARDED_BY(mu_);
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  int sent_ ABSL_GUARDED_BY(mu_) = 0;
  int delivered_ ABSL_GUARDED_BY(mu_) = 0;
  int opened_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace nvlog_test

#endif  // TESTS_NVLOG_FAKE_MIRROR_TRANSPORT_H_
