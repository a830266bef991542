#include "interconnect/server.h"

#include <utility>

#include "absl/strings/str_cat.h"
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

InterconnectServer::InterconnectServer(std::unique_ptr<grpc::Server> server,
                                       int port, std::string address,
                                       TransportOptions transport)
    : server_(std::move(server)),
      port_(port),
      address_(std::move(address)),
      transport_(transport) {}

absl::StatusOr<std::unique_ptr<InterconnectServer>> InterconnectServer::Create(
    Options options, const std::vector<grpc::Service*>& services) {
  if (!options.credentials) {
    return absl::InvalidArgumentError("InterconnectServer needs credentials");
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.address, options.credentials, &port);
  for (grpc::Service* s : services) builder.RegisterService(s);
  const TransportOptions& t = options.transport;
  builder.SetMaxReceiveMessageSize(t.max_message_bytes);
  builder.SetMaxSendMessageSize(t.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(t.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(t.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(options.min_client_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address));
  }
  std::string host = options.address.substr(0, options.address.rfind(':'));
  std::string address = absl::StrCat(host, ":", port);
  return std::unique_ptr<InterconnectServer>(new InterconnectServer(
      std::move(server), port, std::move(address), options.transport));
}

InterconnectServer::~InterconnectServer() { Shutdown(); }

std::shared_ptr<grpc::Channel> InterconnectServer::InProcessChannel() const {
  return server_->InProcessChannel(ClientChannelArguments(transport_));
}

void InterconnectServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
}

}  // namespace interconnect
