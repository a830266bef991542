// The client side of the interconnect to the partner node: one gRPC channel
// (mTLS, message limits, keepalive, tuned reconnect backoff), a watcher that
// keeps a cheap connected() view current, and a heartbeat client.
//
// connected() is true while the channel is READY and heartbeats are answered.
// It turns false as soon as gRPC sees the transport close (partner process
// died: immediately; partner host or link died: within the keepalive time +
// timeout) or heartbeat_misses consecutive beats fail (partner hung). gRPC
// reconnects by itself with exponential backoff between min and max; the
// watcher asks it to, so the view turns true again soon after the partner is
// back. Listeners hear every change.
//
// The heartbeat here is the interconnect link's; appliance/ha combines it with
// the mailbox heartbeat on shared storage before declaring the partner dead.
#ifndef INTERCONNECT_PARTNER_CHANNEL_H_
#define INTERCONNECT_PARTNER_CHANNEL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "interconnect/proxy.grpc.pb.h"
#include "interconnect/server.h"

namespace interconnect {

// Serves Heartbeat.Beat: answers with this node's name and state, and records
// when the partner last beat (the partner's view of the link, seen from here).
// Served on the interconnect server's polling thread (PolledService).
class HeartbeatService final : public Heartbeat::AsyncService,
                               public PolledService {
 public:
  // state (may be empty) returns this node's HA state ("active", ...); it must
  // be thread-safe and non-blocking.
  explicit HeartbeatService(std::string node_name,
                            std::function<std::string()> state = nullptr);

  // PolledService
  void StartServing(grpc::ServerCompletionQueue* cq) override;
  void StopServing() override;

  // absl::InfinitePast() until the first beat.
  absl::Time last_beat_received() const;
  std::string last_peer_name() const;
  uint64_t beats_received() const { return beats_.load(); }

 private:
  // Records the beat and builds its answer.
  HeartbeatReply Answer(const HeartbeatRequest& request);

  const std::string node_name_;
  const std::function<std::string()> state_;
  QueueGate gate_;
  std::atomic<uint64_t> beats_{0};
  mutable absl::Mutex mu_;
  absl::Time last_beat_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_peer_ ABSL_GUARDED_BY(mu_);
};

class PartnerChannel {
 public:
  struct Options {
    // This node's name (sent in heartbeats).
    std::string node_name;
    // The partner's interconnect address, "IP:port" (its certificate's SAN
    // must hold that IP).
    std::string partner_address;
    // MakeChannelCredentials() (grpc::InsecureChannelCredentials() in tests).
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    TransportOptions transport;
    // gRPC's reconnect backoff after a failed connection attempt: starts at
    // min, grows exponentially to max.
    std::chrono::milliseconds min_reconnect_backoff{100};
    std::chrono::milliseconds max_reconnect_backoff{1000};
    // Beat period; zero disables the heartbeat client (connected() then
    // follows the channel alone).
    std::chrono::milliseconds heartbeat_interval{500};
    // Deadline of one Beat.
    std::chrono::milliseconds heartbeat_timeout{1000};
    // Consecutive failed beats after which connected() turns false.
    int heartbeat_misses = 3;
    // This node's HA state for heartbeats (may be empty: "active").
    std::function<std::string()> local_state;
    // The node's interconnect queue (the daemon's, shared with its
    // InterconnectServer; must outlive the channel). Null: a queue and
    // thread of the channel's own.
    NodeQueue* queue = nullptr;
  };

  // Creates the channel to options.partner_address and starts watching it. It
  // does not wait for the partner: connected() is false until it answers.
  static absl::StatusOr<std::unique_ptr<PartnerChannel>> Create(Options options);

  // Wraps an existing channel (tests: InterconnectServer::InProcessChannel()).
  // An in-process channel has no connectivity state: connected() then follows
  // the heartbeat, or stays true when heartbeat_interval is zero.
  static std::unique_ptr<PartnerChannel> CreateForInProcessChannel(
      std::shared_ptr<grpc::Channel> channel, Options options);

  // Stops the watcher and heartbeat threads (waits for them).
  ~PartnerChannel();

  PartnerChannel(const PartnerChannel&) = delete;
  PartnerChannel& operator=(const PartnerChannel&) = delete;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // The completion queue every async client of the partner (the local virtual
  // adapter's proxy streams, the NVLOG mirror) runs its calls on:
  // Options::queue (in the daemon the same queue the interconnect server runs
  // on: one polling thread per node). Those clients must be destroyed before
  // this channel.
  grpc::CompletionQueue* completion_queue() const { return queue_->get(); }

  // Cheap, thread-safe.
  bool connected() const { return connected_.load(std::memory_order_acquire); }

  // When a heartbeat was last answered (absl::InfinitePast() if never) and the
  // partner's name/state from that answer.
  absl::Time last_heartbeat_reply() const;
  std::string partner_state() const;
  uint64_t heartbeats_answered() const { return answered_.load(); }

  // Calls listener(connected) once at once, from this call, with the current
  // view (the link may be up before anyone listens), then on every change of
  // connected(), from an internal thread, never under a lock of the caller. A
  // listener must not block or call Add/RemoveStateListener, and the caller of
  // AddStateListener must not hold a lock the listener takes. Returns an id
  // for RemoveStateListener, which returns only when no call of that listener
  // is running.
  int AddStateListener(std::function<void(bool connected)> listener);
  void RemoveStateListener(int id);

  // Blocks until connected() == want or timeout passes; returns whether it
  // got there (start-up code and tests).
  bool WaitUntil(bool want, absl::Duration timeout) const;
  // Blocks until count heartbeats have been answered (or timeout).
  bool WaitForHeartbeats(uint64_t count, absl::Duration timeout) const;

 private:
  PartnerChannel(std::shared_ptr<grpc::Channel> channel, Options options,
                 bool in_process);
  void Start();
  // Asks the queue's thread to run OnStateWatch when the channel leaves state
  // (or after a short while).
  void ArmStateWatch(grpc_connectivity_state state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStateWatch();
  // Turns what OnStateWatch saw into the view and tells listeners, off the
  // queue's thread (listeners may take a while).
  void WatchLoop();
  void HeartbeatLoop();
  void Recompute();

  const Options options_;
  const bool in_process_;
  const std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Heartbeat::Stub> heartbeat_stub_;

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> answered_{0};

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool channel_ready_ ABSL_GUARDED_BY(mu_) = false;
  // What the last state watch saw, and whether one is pending.
  bool observed_ready_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_armed_ ABSL_GUARDED_BY(mu_) = false;
  int consecutive_misses_ ABSL_GUARDED_BY(mu_) = 0;
  bool heartbeat_ok_ ABSL_GUARDED_BY(mu_) = true;
  bool view_ ABSL_GUARDED_BY(mu_) = false;  // last value given to listeners
  absl::Time last_reply_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string partner_state_ ABSL_GUARDED_BY(mu_);

  // Held while listeners run, so RemoveStateListener can wait them out.
  absl::Mutex listeners_mu_;
  std::map<int, std::function<void(bool)>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
  int next_listener_id_ ABSL_GUARDED_BY(listeners_mu_) = 1;

  std::thread watcher_;
  std::thread heartbeat_;
  // Destroyed before channel_, once no call or watch is left on it.
  const std::unique_ptr<NodeQueue> own_queue_;
  NodeQueue* const queue_;
  QueueTag state_changed_{[this](bool) { OnStateWatch(); }};
  // The heartbeat thread's Beat has come back.
  bool beat_answered_ ABSL_GUARDED_BY(mu_) = false;
  QueueTag beat_done_{[this](bool) {
    absl::MutexLock l(&mu_);
    beat_answered_ = true;
  }};
};

}  // namespace interconnect

#endif  // INTERCONNECT_PARTNER_CHANNEL_H_
