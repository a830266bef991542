#include "interconnect/partner_channel.h"

#include <utility>

#include "grpcpp/create_channel.h"

namespace interconnect {

// ---------------------------------------------------------------------------
// HeartbeatService

HeartbeatService::HeartbeatService(std::string node_name,
                                   std::function<std::string()> state)
    : node_name_(std::move(node_name)), state_(std::move(state)) {}

void HeartbeatService::StartServing(grpc::ServerCompletionQueue* cq) {
  gate_.Open();
  using BeatCall = UnaryCall<HeartbeatRequest, HeartbeatReply>;
  BeatCall::Serve(
      gate_,
      [this, cq](grpc::ServerContext* context, HeartbeatRequest* request,
                 BeatCall::Responder* responder, void* tag) {
        RequestBeat(context, request, responder, cq, cq, tag);
      },
      [this](const HeartbeatRequest& request, HeartbeatReply* reply) {
        *reply = Answer(request);
        return grpc::Status::OK;
      });
}

void HeartbeatService::StopServing() { gate_.Close(); }

HeartbeatReply HeartbeatService::Answer(const HeartbeatRequest& request) {
  beats_++;
  {
    absl::MutexLock l(&mu_);
    last_beat_ = absl::Now();
    last_peer_ = request.node_name();
  }
  HeartbeatReply reply;
  reply.set_node_name(node_name_);
  reply.set_sequence(request.sequence());
  reply.set_state(state_ ? state_() : "active");
  return reply;
}

absl::Time HeartbeatService::last_beat_received() const {
  absl::MutexLock l(&mu_);
  return last_beat_;
}

std::string HeartbeatService::last_peer_name() const {
  absl::MutexLock l(&mu_);
  return last_peer_;
}

// ---------------------------------------------------------------------------
// PartnerChannel

PartnerChannel::PartnerChannel(std::shared_ptr<grpc::Channel> channel,
                               Options options, bool in_process)
    : options_(std::move(options)),
      in_process_(in_process),
      channel_(std::move(channel)),
      heartbeat_stub_(Heartbeat::NewStub(channel_)),
      own_queue_(options_.queue == nullptr
                     ? std::make_unique<NodeQueue>("interconnect-cl")
                     : nullptr),
      queue_(options_.queue != nullptr ? options_.queue : own_queue_.get()) {}

absl::StatusOr<std::unique_ptr<PartnerChannel>> PartnerChannel::Create(
    Options options) {
  if (!options.credentials) {
    return absl::InvalidArgumentError("PartnerChannel needs credentials");
  }
  if (options.partner_address.empty()) {
    return absl::InvalidArgumentError("PartnerChannel needs partner_address");
  }
  grpc::ChannelArguments args = ClientChannelArguments(options.transport);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.min_reconnect_backoff.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.min_reconnect_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.max_reconnect_backoff.count()));
  // Our own subchannels: never share a connection with another channel of the
  // process (different credentials or a test's second "node").
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // An IP literal resolves without DNS; the authority (checked against the
  // partner certificate's SAN) is that IP.
  auto channel = grpc::CreateCustomChannel(options.partner_address,
                                           options.credentials, args);
  std::unique_ptr<PartnerChannel> pc(
      new PartnerChannel(std::move(channel), std::move(options), false));
  pc->Start();
  return pc;
}

std::unique_ptr<PartnerChannel> PartnerChannel::CreateForInProcessChannel(
    std::shared_ptr<grpc::Channel> channel, Options options) {
  std::unique_ptr<PartnerChannel> pc(
      new PartnerChannel(std::move(channel), std::move(options), true));
  pc->Start();
  return pc;
}

void PartnerChannel::Start() {
  if (in_process_) {
    {
      absl::MutexLock l(&mu_);
      channel_ready_ = true;
    }
    Recompute();
  } else {
    {
      absl::MutexLock l(&mu_);
      const grpc_connectivity_state state =
          channel_->GetState(/*try_to_connect=*/true);
      observed_ready_ = state == GRPC_CHANNEL_READY;
      watch_armed_ = true;
      ArmStateWatch(state);
    }
    watcher_ = std::thread([this] { WatchLoop(); });
  }
  if (options_.heartbeat_interval.count() > 0) {
    heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  }
}

PartnerChannel::~PartnerChannel() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    // The pending watch comes back within its 200 ms deadline.
    auto unarmed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !watch_armed_;
    };
    mu_.Await(absl::Condition(&unarmed));
  }
  if (watcher_.joinable()) watcher_.join();
  if (heartbeat_.joinable()) heartbeat_.join();
}

void PartnerChannel::ArmStateWatch(grpc_connectivity_state state) {
  // Expires after a short while too, so the destructor never waits long for
  // the last one.
  channel_->NotifyOnStateChange(
      state, std::chrono::system_clock::now() + std::chrono::milliseconds(200),
      queue_->get(), &state_changed_);
}

void PartnerChannel::OnStateWatch() {
  absl::MutexLock l(&mu_);
  if (stopping_) {
    watch_armed_ = false;
    return;
  }
  // try_to_connect: an IDLE channel (after the partner closed the
  // connection) starts connecting again; gRPC applies the backoff.
  const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  observed_ready_ = state == GRPC_CHANNEL_READY;
  ArmStateWatch(state);
}

void PartnerChannel::WatchLoop() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto news = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || observed_ready_ != channel_ready_;
      };
      mu_.Await(absl::Condition(&news));
      if (stopping_) return;
      channel_ready_ = observed_ready_;
    }
    Recompute();
  }
}

void PartnerChannel::HeartbeatLoop() {
  uint64_t sequence = 0;
  for (;;) {
    HeartbeatRequest request;
    request.set_node_name(options_.node_name);
    request.set_sequence(++sequence);
    request.set_sent_unix_micros(absl::ToUnixMicros(absl::Now()));
    request.set_state(options_.local_state ? options_.local_state() : "active");
    HeartbeatReply reply;
    grpc::Status status;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         options_.heartbeat_timeout);
    {
      // On the node's queue (a blocking call would make this thread one more
      // poller of the node's sockets while it waits); the deadline bounds
      // the wait.
      std::unique_ptr<grpc::ClientAsyncResponseReader<HeartbeatReply>> call =
          heartbeat_stub_->AsyncBeat(&context, request, queue_->get());
      absl::MutexLock l(&mu_);
      beat_answered_ = false;
      call->Finish(&reply, &status, &beat_done_);
      mu_.Await(absl::Condition(&beat_answered_));
    }
    const bool ok = status.ok() && reply.sequence() == sequence;
    {
      absl::MutexLock l(&mu_);
      if (ok) {
        consecutive_misses_ = 0;
        heartbeat_ok_ = true;
        answered_++;
        last_reply_ = absl::Now();
        partner_state_ = reply.state();
      } else if (++consecutive_misses_ >= options_.heartbeat_misses) {
        heartbeat_ok_ = false;
      }
    }
    Recompute();
    absl::MutexLock l(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop),
                         absl::FromChrono(options_.heartbeat_interval));
    if (stopping_) return;
  }
}

void PartnerChannel::Recompute() {
  absl::MutexLock listeners_lock(&listeners_mu_);
  bool now;
  {
    absl::MutexLock l(&mu_);
    now = channel_ready_ && heartbeat_ok_;
    if (now == view_) return;
    view_ = now;
    connected_.store(now, std::memory_order_release);
  }
  for (auto& [id, listener] : listeners_) listener(now);
}

absl::Time PartnerChannel::last_heartbeat_reply() const {
  absl::MutexLock l(&mu_);
  return last_reply_;
}

std::string PartnerChannel::partner_state() const {
  absl::MutexLock l(&mu_);
  return partner_state_;
}

int PartnerChannel::AddStateListener(std::function<void(bool)> listener) {
  // Under listeners_mu_, which Recompute holds from reading the view to the
  // last listener call: the listener hears the view at registration and then
  // every change after it, none missed (the link may well be up already).
  absl::MutexLock l(&listeners_mu_);
  bool now;
  {
    absl::MutexLock state_lock(&mu_);
    now = view_;
  }
  listener(now);
  const int id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void PartnerChannel::RemoveStateListener(int id) {
  absl::MutexLock l(&listeners_mu_);
  listeners_.erase(id);
}

bool PartnerChannel::WaitForHeartbeats(uint64_t count,
                                       absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto reached = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return answered_.load() >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

bool PartnerChannel::WaitUntil(bool want, absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto reached = [this, want]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return view_ == want;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

}  // namespace interconnect
