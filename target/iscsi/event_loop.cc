#include "target/iscsi/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/defer_scope.h"
#include "common/thread_name.h"

namespace iscsi {

Poster::~Poster() { close(event_fd_); }

bool Poster::Post(absl::AnyInvocable<void() &&> fn) {
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    // Only the first item of a batch signals: the loop drains the eventfd
    // before it takes the queue, so an item queued after a Take() always
    // finds the queue empty and signals again. A burst of completions (one
    // interconnect message, one I/O round) then costs one write(2) and at most
    // one wake-up instead of one each.
    wake = queue_.empty();
    queue_.push_back(std::move(fn));
  }
  if (wake) {
    const uint64_t one = 1;
    ssize_t n = write(event_fd_, &one, sizeof(one));
    (void)n;  // EAGAIN: the counter is already non-zero, the loop wakes up
  }
  return true;
}

std::vector<absl::AnyInvocable<void() &&>> Poster::Take() {
  absl::MutexLock lock(&mu_);
  return std::move(queue_);
}

void Poster::CloseQueue() {
  std::vector<absl::AnyInvocable<void() &&>> dropped;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    dropped = std::move(queue_);
  }
  // dropped is destroyed here, outside the lock.
}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ev < 0) {
    close(ep);
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = 0;  // id 0 is the eventfd
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) {
    close(ep);
    close(ev);
    return absl::InternalError("epoll_ctl(eventfd)");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(ep, ev));
}

EventLoop::EventLoop(int epoll_fd, int event_fd)
    : epoll_fd_(epoll_fd), event_fd_(event_fd),
      poster_(std::make_shared<Poster>(event_fd)) {}

EventLoop::~EventLoop() {
  Stop();
  close(epoll_fd_);
  // event_fd_ is owned by the poster, which may outlive us.
}

void EventLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void EventLoop::Stop() {
  if (!thread_.joinable()) return;
  poster_->Post([this]() { stop_ = true; });
  thread_.join();
}

absl::StatusOr<uint64_t> EventLoop::Watch(int fd, uint32_t events,
                                          std::shared_ptr<FdHandler> handler) {
  const uint64_t id = next_id_++;
  epoll_event e{};
  e.events = events;
  e.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl ADD: ", strerror(errno)));
  }
  handlers_[id] = std::move(handler);
  return id;
}

void EventLoop::Modify(uint64_t id, int fd, uint32_t events) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e);
}

void EventLoop::Unwatch(uint64_t id, int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(id);
}

void EventLoop::Run() {
  common::SetThreadName("iscsi-loop");
  thread_id_ = std::this_thread::get_id();
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  absl::Time next_tick = absl::Now() + absl::Milliseconds(250);
  while (!stop_) {
    const absl::Duration wait = next_tick - absl::Now();
    const int timeout_ms =
        wait <= absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1;
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    // One round: what handlers put off (the proxy path's stream writes) is
    // done once, after every ready descriptor has been handled.
    common::DeferScope round;
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == 0) {
        uint64_t count;
        while (read(event_fd_, &count, sizeof(count)) > 0) {
        }
        for (auto& fn : poster_->Take()) std::move(fn)();
        continue;
      }
      auto it = handlers_.find(id);
      if (it == handlers_.end()) continue;  // unwatched earlier in this batch
      std::shared_ptr<FdHandler> h = it->second;
      h->OnEvents(events[i].events);
    }
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      next_tick = now + absl::Milliseconds(250);
      std::vector<std::shared_ptr<FdHandler>> all;
      all.reserve(handlers_.size());
      for (auto& [id, h] : handlers_) all.push_back(h);
      for (auto& h : all) h->OnTick(now);
    }
  }
  // Shut down: handlers release their fds; queued work is dropped.
  std::vector<std::shared_ptr<FdHandler>> all;
  for (auto& [id, h] : handlers_) all.push_back(h);
  for (auto& h : all) h->OnShutdown();
  handlers_.clear();
  poster_->CloseQueue();
}

}  // namespace iscsi
