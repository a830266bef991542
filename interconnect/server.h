// The node's interconnect endpoint: one gRPC server on the interconnect
// address hosting every interconnect service (proxy, heartbeat, later NVLOG
// mirror, config replication, takeover control), with message limits that fit
// the largest data transfer and keepalives that notice a dead peer in seconds.
#ifndef INTERCONNECT_SERVER_H_
#define INTERCONNECT_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/async_unary_call.h"
#include "grpcpp/support/channel_arguments.h"

namespace interconnect {

// The largest data-out or data-in one command moves (iSCSI MaxBurstLength
// caps a sequence at 16 MiB; the engine never produces more for one task).
inline constexpr int kMaxDataTransferBytes = 16 * 1024 * 1024;
// Room for the envelope's other fields (CDB, nexus names, sense, framing).
inline constexpr int kEnvelopeOverheadBytes = 64 * 1024;

// Keepalive and size settings shared by both ends of a connection.
struct TransportOptions {
  // Largest gRPC message accepted or sent, either direction.
  int max_message_bytes = kMaxDataTransferBytes + kEnvelopeOverheadBytes;
  // HTTP/2 PING interval on an idle-or-busy connection, and how long a PING
  // may stay unanswered before the connection is declared dead. A dead partner
  // is noticed within keepalive_time + keepalive_timeout.
  std::chrono::milliseconds keepalive_time{1000};
  std::chrono::milliseconds keepalive_timeout{1000};
};

// gRPC channel arguments for TransportOptions (client side).
grpc::ChannelArguments ClientChannelArguments(const TransportOptions& options);

// A tag for gRPC's completion-queue (async) API: the operation it was given to
// runs on_done(ok) on the thread that takes it from the queue.
struct QueueTag {
  explicit QueueTag(std::function<void(bool ok)> on_done)
      : on_done(std::move(on_done)) {}
  std::function<void(bool ok)> on_done;
};

// Takes tags from cq and runs them until cq is shut down and drained. The
// thread that calls it also polls gRPC's sockets while it waits, so the
// socket event, the transport's work and the tag's reaction happen on it
// without a hand-off to another thread (what gRPC's callback API costs: its
// shared threads wake each other several times per stream message).
void RunCompletionQueue(grpc::CompletionQueue* cq);

// A completion queue and the one thread that polls it (RunCompletionQueue).
// The node's interconnect runs everything on one (the daemon's): the
// interconnect server's calls and every client call to the partner
// (PartnerChannel::Options::queue), so a single thread polls all of the
// node's interconnect sockets and gRPC never hands their events from one
// polling thread to another (a wake-up each time). It is a
// ServerCompletionQueue, usable by clients at once; InterconnectServer::Create
// can build its server on it once, later. Every call on it (and the server
// built on it) must be gone before it is destroyed.
class NodeQueue {
 public:
  explicit NodeQueue(std::string thread_name = "interconnect");
  // Shuts the queue down, lets the thread drain it and joins the thread.
  ~NodeQueue();
  NodeQueue(const NodeQueue&) = delete;
  NodeQueue& operator=(const NodeQueue&) = delete;

  grpc::CompletionQueue* get() const { return cq_.get(); }

 private:
  friend class InterconnectServer;
  // The queue belongs to a server builder; consumed by the server built on it.
  std::unique_ptr<grpc::ServerBuilder> builder_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
};

// Guards the start of operations on a completion queue that shuts down on its
// own schedule (the server's, after its calls were cancelled): once Close()
// has returned, Post() starts nothing and returns false. Starting an
// operation on a shut-down queue aborts the process.
class QueueGate {
 public:
  void Open();
  void Close();
  // Runs start (which starts one operation on the queue) if the gate is open.
  bool Post(absl::FunctionRef<void()> start);

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

// A service served through gRPC's completion-queue (async) API. Every such
// service given to InterconnectServer::Create is served on the server's
// NodeQueue: a message's socket event, the transport's work and the service's
// reaction happen on its one thread, with none of the hand-offs between the
// callback API's shared threads (several per stream message).
//
// gRPC lets an async service serve one server in its life: a restarted server
// needs fresh service objects.
class PolledService {
 public:
  virtual ~PolledService() = default;
  // The server has started: request calls on cq (the server's; valid until
  // StopServing returns).
  virtual void StartServing(grpc::ServerCompletionQueue* cq) = 0;
  // The server has shut down (its calls are cancelled; their last tags may
  // still wait in cq, and are still delivered): start no more operations.
  // The server then shuts cq down and drains it.
  virtual void StopServing() = 0;
};

// Serves one unary method of a PolledService on the completion-queue API:
// each call, from its acceptance to its Finish, is an object of its own that
// deletes itself; every accepted call first asks for the next one. request
// starts the wait for a call (the generated Request<Method> with the given
// context, request, responder and tag, on the service's queue); answer fills
// the reply and returns the status the call finishes with. Nothing is started
// once gate is closed (the server has shut down).
template <class Request, class Reply>
class UnaryCall {
 public:
  using Responder = grpc::ServerAsyncResponseWriter<Reply>;
  using Requester = std::function<void(grpc::ServerContext*, Request*,
                                       Responder*, void* tag)>;
  using Answerer = std::function<grpc::Status(const Request&, Reply*)>;

  static void Serve(QueueGate& gate, Requester request, Answerer answer) {
    (new UnaryCall(gate, std::move(request), std::move(answer)))->Accept();
  }

 private:
  UnaryCall(QueueGate& gate, Requester request, Answerer answer)
      : gate_(gate),
        request_fn_(std::move(request)),
        answer_fn_(std::move(answer)),
        accepted_([this](bool ok) { OnAccepted(ok); }),
        finished_([this](bool) { delete this; }) {}

  void Accept() {
    if (!gate_.Post([this] {
          request_fn_(&context_, &request_, &responder_, &accepted_);
        })) {
      delete this;
    }
  }

  void OnAccepted(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    Serve(gate_, request_fn_, answer_fn_);
    const grpc::Status status = answer_fn_(request_, &reply_);
    const bool posted = gate_.Post([&] {
      if (status.ok()) {
        responder_.Finish(reply_, grpc::Status::OK, &finished_);
      } else {
        responder_.FinishWithError(status, &finished_);
      }
    });
    if (!posted) delete this;
  }

  QueueGate& gate_;
  const Requester request_fn_;
  const Answerer answer_fn_;
  grpc::ServerContext context_;
  Request request_;
  Reply reply_;
  Responder responder_{&context_};
  QueueTag accepted_, finished_;
};

class InterconnectServer {
 public:
  struct Options {
    // "IP:port" to listen on; port 0 lets the kernel choose (see port()).
    std::string address = "127.0.0.1:0";
    // Usually MakeServerCredentials(); grpc::InsecureServerCredentials() only
    // in tests.
    std::shared_ptr<grpc::ServerCredentials> credentials;
    TransportOptions transport;
    // Smallest interval between client PINGs the server tolerates (must be
    // below the clients' keepalive_time, or the server drops them).
    std::chrono::milliseconds min_client_ping_interval{200};
  };

  // Builds and starts the server hosting services (not owned; they must
  // outlive the server) on queue (not owned; it must outlive the server; each
  // queue takes one server), or on a queue of the server's own when null.
  // Fails when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<InterconnectServer>> Create(
      Options options, const std::vector<grpc::Service*>& services,
      NodeQueue* queue = nullptr);

  // Shuts down (cancelling in-flight calls after a short grace period).
  ~InterconnectServer();

  // The port bound (the chosen one when Options::address had port 0).
  int port() const { return port_; }
  // "IP:port" as bound.
  const std::string& address() const { return address_; }

  // A channel into this server without sockets or TLS (tests, benchmarks).
  std::shared_ptr<grpc::Channel> InProcessChannel() const;

  // Stops accepting and cancels calls still running after grace. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

 private:
  InterconnectServer(std::unique_ptr<NodeQueue> own_queue,
                     std::unique_ptr<grpc::Server> server, int port,
                     std::string address, TransportOptions transport,
                     std::vector<PolledService*> polled);

  // Declared before server_: destroyed after it.
  std::unique_ptr<NodeQueue> own_queue_;
  std::unique_ptr<grpc::Server> server_;
  const std::vector<PolledService*> polled_;
  const int port_;
  const std::string address_;
  const TransportOptions transport_;
  bool shut_down_ = false;
};

}  // namespace interconnect

#endif  // INTERCONNECT_SERVER_H_
