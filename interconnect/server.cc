#include "interconnect/server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/thread_name.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "grpcpp/server_builder.h"

namespace interconnect {

grpc::ChannelArguments ClientChannelArguments(const TransportOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return args;
}

void RunCompletionQueue(grpc::CompletionQueue* cq) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) static_cast<QueueTag*>(tag)->on_done(ok);
}

NodeQueue::NodeQueue(std::string thread_name)
    : builder_(std::make_unique<grpc::ServerBuilder>()),
      cq_(builder_->AddCompletionQueue()),
      thread_([cq = cq_.get(), name = std::move(thread_name)] {
        common::SetThreadName(name);
        RunCompletionQueue(cq);
      }) {}

NodeQueue::~NodeQueue() {
  cq_->Shutdown();
  thread_.join();
}

void QueueGate::Open() {
  absl::MutexLock l(&mu_);
  open_ = true;
}

void QueueGate::Close() {
  absl::MutexLock l(&mu_);
  open_ = false;
}

bool QueueGate::Post(absl::FunctionRef<void()> start) {
  absl::ReaderMutexLock l(&mu_);
  if (!open_) return false;
  start();
  return true;
}

InterconnectServer::InterconnectServer(std::unique_ptr<NodeQueue> own_queue,
                                       std::unique_ptr<grpc::Server> server,
                                       int port, std::string address,
                                       TransportOptions transport,
                                       std::vector<PolledService*> polled)
    : own_queue_(std::move(own_queue)),
      server_(std::move(server)),
      polled_(std::move(polled)),
      port_(port),
      address_(std::move(address)),
      transport_(transport) {}

absl::StatusOr<std::unique_ptr<InterconnectServer>> InterconnectServer::Create(
    Options options, const std::vector<grpc::Service*>& services,
    NodeQueue* queue) {
  if (!options.credentials) {
    return absl::InvalidArgumentError("InterconnectServer needs credentials");
  }
  std::unique_ptr<NodeQueue> own_queue;
  if (queue == nullptr) {
    own_queue = std::make_unique<NodeQueue>("interconnect");
    queue = own_queue.get();
  }
  if (queue->builder_ == nullptr) {
    return absl::FailedPreconditionError("NodeQueue already has a server");
  }
  std::unique_ptr<grpc::ServerBuilder> builder = std::move(queue->builder_);
  int port = 0;
  builder->AddListeningPort(options.address, options.credentials, &port);
  std::vector<PolledService*> polled;
  for (grpc::Service* s : services) {
    builder->RegisterService(s);
    if (auto* p = dynamic_cast<PolledService*>(s)) polled.push_back(p);
  }
  const TransportOptions& t = options.transport;
  builder->SetMaxReceiveMessageSize(t.max_message_bytes);
  builder->SetMaxSendMessageSize(t.max_message_bytes);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                              static_cast<int>(t.keepalive_time.count()));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              static_cast<int>(t.keepalive_timeout.count()));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(options.min_client_ping_interval.count()));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Server> server = builder->BuildAndStart();
  if (!server || port == 0) {
    if (server) server->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address));
  }
  for (PolledService* p : polled) p->StartServing(queue->cq_.get());
  std::string host = options.address.substr(0, options.address.rfind(':'));
  std::string address = absl::StrCat(host, ":", port);
  return std::unique_ptr<InterconnectServer>(new InterconnectServer(
      std::move(own_queue), std::move(server), port, std::move(address),
      options.transport, std::move(polled)));
}

InterconnectServer::~InterconnectServer() { Shutdown(); }

std::shared_ptr<grpc::Channel> InterconnectServer::InProcessChannel() const {
  return server_->InProcessChannel(ClientChannelArguments(transport_));
}

void InterconnectServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // The queue's thread keeps running while the server shuts down.
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  for (PolledService* p : polled_) p->StopServing();
  // A queue of the server's own is drained now: the last tags of the
  // cancelled calls run before the server goes. (A shared queue drains them
  // on its own thread; the calls keep gRPC's core server alive meanwhile.)
  own_queue_.reset();
  server_->Wait();
}

}  // namespace interconnect
