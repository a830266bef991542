#include "target/iscsi/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "target/iscsi/connection.h"
#include "target/iscsi/event_loop.h"

namespace iscsi {

// Accepts connections on loop 0 and hands each to a loop, round robin.
class Listener : public FdHandler, public std::enable_shared_from_this<Listener> {
 public:
  Listener(int fd, PortalConfig config, std::shared_ptr<ServerContext> context,
           std::vector<EventLoop*> loops, std::shared_ptr<std::atomic<uint32_t>> next,
           EventLoop* home)
      : fd_(fd), config_(std::move(config)), context_(std::move(context)),
        loops_(std::move(loops)), next_(std::move(next)), home_(home) {}
  ~Listener() override {
    if (fd_ >= 0) close(fd_);
  }

  void Start() {
    auto id = home_->Watch(fd_, EPOLLIN, shared_from_this());
    if (id.ok()) id_ = *id;
  }
  void Stop() {
    if (fd_ < 0) return;
    home_->Unwatch(id_, fd_);
    close(fd_);
    fd_ = -1;
  }

  void OnEvents(uint32_t) override {
    while (fd_ >= 0) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;  // EAGAIN, or a transient error: try on the next event
      if (context_->connection_count.fetch_add(1) >= context_->options.max_connections) {
        context_->connection_count--;
        close(c);
        continue;
      }
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      EventLoop* loop = loops_[next_->fetch_add(1) % loops_.size()];
      auto context = context_;
      PortalConfig config = config_;
      const bool posted = loop->Post([c, loop, context, config]() {
        auto conn = std::make_shared<Connection>(c, loop, context, config);
        conn->Start();
      });
      if (!posted) {
        close(c);
        context_->connection_count--;
      }
    }
  }
  void OnShutdown() override { Stop(); }

 private:
  int fd_;
  uint64_t id_ = 0;
  PortalConfig config_;
  std::shared_ptr<ServerContext> context_;
  std::vector<EventLoop*> loops_;
  std::shared_ptr<std::atomic<uint32_t>> next_;
  EventLoop* home_;
};

namespace {

absl::StatusOr<int> BindListen(PortalConfig* config) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (config->address.find(':') != std::string::npos) {
    family = AF_INET6;
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(config->port);
    if (inet_pton(AF_INET6, config->address.c_str(), &a->sin6_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad address ", config->address));
    }
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(config->port);
    if (inet_pton(AF_INET, config->address.c_str(), &a->sin_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad address ", config->address));
    }
    len = sizeof(*a);
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 128) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind/listen ", config->address, ":",
                                               config->port, ": ", strerror(err)));
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  config->port = ntohs(family == AF_INET6
                           ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

// Runs fn on loop and waits for it (used for setup/teardown only).
void RunOnLoop(EventLoop* loop, absl::AnyInvocable<void() &&> fn) {
  absl::Notification done;
  const bool posted = loop->Post([&]() {
    std::move(fn)();
    done.Notify();
  });
  if (posted) done.WaitForNotification();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(
    TargetOptions options, std::shared_ptr<PortalDirectory> directory,
    scsi::TaskRouter& router) {
  if (directory == nullptr) return absl::InvalidArgumentError("directory is null");
  for (const auto& t : directory->Targets()) {
    if (absl::Status s = ValidateTargetConfig(t); !s.ok()) return s;
  }
  if (options.event_loop_threads < 1) options.event_loop_threads = 1;
  if (options.queue_depth < 1) return absl::InvalidArgumentError("queue_depth < 1");
  if (options.negotiation.max_recv_data_segment_length < 512 ||
      options.negotiation.max_recv_data_segment_length > kMaxDataSegmentLength) {
    return absl::InvalidArgumentError("max_recv_data_segment_length out of range");
  }
  std::vector<std::unique_ptr<EventLoop>> loops;
  for (int i = 0; i < options.event_loop_threads; ++i) {
    auto loop = EventLoop::Create();
    if (!loop.ok()) return loop.status();
    loops.push_back(std::move(*loop));
  }
  auto context = std::make_shared<ServerContext>(std::move(options), std::move(directory),
                                                 router);
  for (auto& l : loops) l->Start();
  return std::unique_ptr<Server>(new Server(std::move(context), std::move(loops)));
}

Server::Server(std::shared_ptr<ServerContext> context,
               std::vector<std::unique_ptr<EventLoop>> loops)
    : context_(std::move(context)), loops_(std::move(loops)),
      next_loop_(std::make_shared<std::atomic<uint32_t>>(0)) {}

Server::~Server() { Shutdown(); }

absl::StatusOr<const Portal*> Server::AddPortal(const PortalConfig& config) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::FailedPreconditionError("server is shut down");
  for (const auto& p : portals_) {
    if (p->config_.portal_group_tag == config.portal_group_tag) {
      return absl::AlreadyExistsError("portal group tag already listening");
    }
  }
  auto portal = std::make_unique<Portal>();
  portal->config_ = config;
  auto fd = BindListen(&portal->config_);
  if (!fd.ok()) return fd.status();
  std::vector<EventLoop*> loops;
  for (auto& l : loops_) loops.push_back(l.get());
  portal->loop_ = loops_[0].get();
  portal->listener_ = std::make_shared<Listener>(*fd, portal->config_, context_, loops,
                                                 next_loop_, portal->loop_);
  auto listener = portal->listener_;
  RunOnLoop(portal->loop_, [listener]() { listener->Start(); });
  context_->directory->UpsertPortal(portal->config_);
  portals_.push_back(std::move(portal));
  return portals_.back().get();
}

absl::Status Server::RemovePortal(uint16_t tag, bool remove_from_directory) {
  absl::MutexLock lock(&mu_);
  for (auto it = portals_.begin(); it != portals_.end(); ++it) {
    if ((*it)->config_.portal_group_tag != tag) continue;
    auto listener = (*it)->listener_;
    RunOnLoop((*it)->loop_, [listener]() { listener->Stop(); });
    portals_.erase(it);
    if (remove_from_directory) context_->directory->RemovePortal(tag);
    return absl::OkStatus();
  }
  return absl::NotFoundError("no such portal");
}

void Server::RequestLogout(uint16_t tag, uint16_t seconds) {
  std::vector<ServerContext::LiveConnection> targets;
  {
    absl::MutexLock lock(&context_->mu);
    for (const auto& [ptr, live] : context_->live) {
      if (live.portal_group_tag == tag) targets.push_back(live);
    }
  }
  for (auto& live : targets) {
    std::weak_ptr<Connection> weak = live.connection;
    live.poster->Post([weak, seconds]() {
      if (auto c = weak.lock()) c->RequestLogout(seconds);
    });
  }
}

Server::Stats Server::stats() const {
  Stats s;
  s.logins_completed = context_->logins_completed.load();
  s.header_digest_logins = context_->header_digest_logins.load();
  s.data_digest_logins = context_->data_digest_logins.load();
  return s;
}

size_t Server::session_count() const { return context_->sessions.size(); }

size_t Server::connection_count() const { return context_->connection_count.load(); }

void Server::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& p : portals_) {
      auto listener = p->listener_;
      RunOnLoop(p->loop_, [listener]() { listener->Stop(); });
    }
  }
  for (auto& l : loops_) l->Stop();
}

}  // namespace iscsi
