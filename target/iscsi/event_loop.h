// A single-threaded epoll event loop. File descriptors are watched from the
// loop's own thread; work from other threads (SCSI completions, login
// hand-offs) arrives through a Poster, an eventfd-signalled queue that stays
// valid after the loop has stopped (posts are then dropped), so a late
// completion never touches freed memory.
#ifndef TARGET_ISCSI_EVENT_LOOP_H_
#define TARGET_ISCSI_EVENT_LOOP_H_

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iscsi {

class Poster {
 public:
  Poster(int event_fd) : event_fd_(event_fd) {}
  ~Poster();
  // Queues fn to run on the loop thread. Returns false (and destroys fn) once
  // the loop has stopped.
  bool Post(absl::AnyInvocable<void() &&> fn);

 private:
  friend class EventLoop;
  std::vector<absl::AnyInvocable<void() &&>> Take();
  void CloseQueue();

  absl::Mutex mu_;
  int event_fd_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
};

class FdHandler {
 public:
  virtual ~FdHandler() = default;
  virtual void OnEvents(uint32_t epoll_events) = 0;
  // Called about every 250 ms on the loop thread (timeouts, pings).
  virtual void OnTick(absl::Time now) {}
  // The loop is shutting down: release the fd. Called on the loop thread.
  virtual void OnShutdown() = 0;
};

class EventLoop {
 public:
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  void Start();
  // Stops the thread; every handler gets OnShutdown() on the loop thread first.
  void Stop();

  const std::shared_ptr<Poster>& poster() const { return poster_; }
  bool Post(absl::AnyInvocable<void() &&> fn) { return poster_->Post(std::move(fn)); }

  // Loop thread only. The loop keeps handler alive until Unwatch.
  absl::StatusOr<uint64_t> Watch(int fd, uint32_t events,
                                 std::shared_ptr<FdHandler> handler);
  void Modify(uint64_t id, int fd, uint32_t events);
  void Unwatch(uint64_t id, int fd);
  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  EventLoop(int epoll_fd, int event_fd);
  void Run();

  int epoll_fd_;
  int event_fd_;
  std::shared_ptr<Poster> poster_;
  std::thread thread_;
  std::thread::id thread_id_;
  bool stop_ = false;  // loop thread only
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<FdHandler>> handlers_;
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_EVENT_LOOP_H_
