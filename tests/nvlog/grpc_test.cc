// The NVLOG over real gRPC on 127.0.0.1:0: plaintext, and with the
// interconnect's mutual TLS. Partner restart (resync over the wire), and a
// hostile stream that cannot break the service.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "appliance/nvlog/grpc_mirror_transport.h"
#include "appliance/nvlog/nvlog.h"
#include "appliance/nvlog/nvlog_replica.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"
#include "tests/interconnect/byte_buffers.h"
#include "tests/interconnect/test_pki.h"
#include "tests/nvlog/test_util.h"

namespace nvlog {
namespace {

using nvlog_test::AppendDone;
using nvlog_test::Bytes;

std::shared_ptr<grpc::Channel> Channel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args =
      interconnect::ClientChannelArguments(interconnect::TransportOptions());
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, creds, args);
}

std::unique_ptr<interconnect::InterconnectServer> Serve(
    NvlogReplica& replica, std::shared_ptr<grpc::ServerCredentials> creds,
    const std::string& address = "127.0.0.1:0") {
  interconnect::InterconnectServer::Options options;
  options.address = address;
  options.credentials = std::move(creds);
  auto server = interconnect::InterconnectServer::Create(options, {&replica});
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

Nvlog::Options LogOptions() {
  Nvlog::Options o;
  o.node_name = "node-a";
  o.reconnect_interval = absl::Milliseconds(20);
  return o;
}

// Appends writers x per_writer 4 KiB entries concurrently; every one must
// complete mirrored. Returns the sequences.
std::vector<uint64_t> AppendConcurrently(Nvlog& log, int writers,
                                         int per_writer) {
  std::vector<AppendDone> done(writers * per_writer);
  std::vector<uint64_t> seqs(done.size());
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; ++i) {
        const int k = w * per_writer + i;
        auto seq = log.Append(1, k * 8, 8, Bytes('a' + k % 26),
                              done[k].Callback());
        ASSERT_TRUE(seq.ok()) << seq.status();
        seqs[k] = *seq;
        ASSERT_TRUE(done[k].Wait());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& d : done) {
    EXPECT_TRUE(d.result.ok()) << d.result.status();
    if (d.result.ok()) {
      EXPECT_TRUE(d.result->mirrored);
    }
  }
  return seqs;
}

TEST(NvlogGrpcTest, MirrorsRetiresAndResyncsAPartnerThatRestarted) {
  auto replica = std::make_unique<NvlogReplica>();
  auto server = Serve(*replica, grpc::InsecureServerCredentials());
  ASSERT_NE(server, nullptr);
  const std::string address = server->address();
  GrpcMirrorTransport transport(
      Channel(address, grpc::InsecureChannelCredentials()));
  auto log_or = Nvlog::Create(transport, LogOptions());
  ASSERT_TRUE(log_or.ok()) << log_or.status();
  std::unique_ptr<Nvlog> log = std::move(*log_or);
  ASSERT_TRUE(log->WaitUntilMirrored(true, absl::Seconds(10)));

  std::vector<uint64_t> seqs = AppendConcurrently(*log, 32, 8);
  EXPECT_EQ(replica->CommittedUnretired().size(), 256u);
  EXPECT_TRUE(replica->CheckConsistency().ok());
  EXPECT_LT(log->stats().batches_sent, 256u) << "group commit";

  // Retire all but the last; the retire mark travels ahead of the next write.
  for (uint64_t s = 1; s < 256; ++s) ASSERT_TRUE(log->Retire(s).ok());
  std::vector<uint64_t> more = AppendConcurrently(*log, 1, 1);
  EXPECT_EQ(replica->Snapshot().retired_through(), 255u);
  EXPECT_EQ(replica->Snapshot().records(), 2u);

  // The partner goes away: unmirrored.
  server->Shutdown();
  ASSERT_TRUE(log->WaitUntilMirrored(false, absl::Seconds(10)));
  AppendDone unmirrored;
  ASSERT_TRUE(log->Append(1, 0, 8, Bytes('u'), unmirrored.Callback()).ok());
  ASSERT_TRUE(unmirrored.Wait());
  EXPECT_FALSE(unmirrored.result->mirrored);
  EXPECT_GE(log->unmirrored_writes(), 1u);

  // It comes back empty (restarted) on the same address: the log resends
  // every unretired entry before reporting mirrored.
  server.reset();
  replica = std::make_unique<NvlogReplica>();
  server = Serve(*replica, grpc::InsecureServerCredentials(), address);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(log->WaitUntilMirrored(true, absl::Seconds(20)));
  std::vector<NvlogEntry> held = replica->Held();
  ASSERT_EQ(held.size(), 3u);
  EXPECT_EQ(held[0].sequence, 256u);
  EXPECT_EQ(held[2].sequence, 258u);
  for (const NvlogEntry& e : held) EXPECT_TRUE(e.committed);
  EXPECT_EQ(held[2].data, nvlog_test::AsString(Bytes('u')));
  EXPECT_TRUE(replica->CheckConsistency().ok());
  log.reset();
}

TEST(NvlogGrpcTest, MirrorsOverMutualTls) {
  NvlogReplica replica;
  auto server = Serve(replica, interconnect::MakeServerCredentials(
                                   interconnect_test::NodeTls("pair", "node-b")));
  ASSERT_NE(server, nullptr);
  GrpcMirrorTransport transport(
      Channel(server->address(),
              interconnect::MakeChannelCredentials(
                  interconnect_test::NodeTls("pair", "node-a"))));
  auto log = Nvlog::Create(transport, LogOptions());
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->WaitUntilMirrored(true, absl::Seconds(10)));
  AppendConcurrently(**log, 32, 4);
  EXPECT_EQ(replica.CommittedUnretired().size(), 128u);
  EXPECT_EQ(replica.Snapshot().owner_node(), "node-a");
  log->reset();
}

TEST(NvlogGrpcTest, MtlsRefusesAPeerOfAnotherPair) {
  NvlogReplica replica;
  auto server = Serve(replica, interconnect::MakeServerCredentials(
                                   interconnect_test::NodeTls("pair", "node-b")));
  ASSERT_NE(server, nullptr);
  GrpcMirrorTransport transport(
      Channel(server->address(),
              interconnect::MakeChannelCredentials(
                  interconnect_test::NodeTls("other-pair", "node-a"))));
  interconnect::NvlogResyncRequest request;
  request.set_session(1);
  request.set_first_sequence(1);
  auto session = transport.Open(request, {});
  EXPECT_EQ(session.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(replica.stats().resyncs, 0u);
}

TEST(NvlogGrpcTest, MalformedStreamIsRefusedAndTheServiceKeepsServing) {
  NvlogReplica replica;
  auto server = Serve(replica, grpc::InsecureServerCredentials());
  ASSERT_NE(server, nullptr);
  auto stub = interconnect::NvlogMirror::NewStub(
      Channel(server->address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    interconnect::NvlogResyncRequest request;
    request.set_session(5);
    request.set_first_sequence(1);
    interconnect::NvlogSnapshot snapshot;
    ASSERT_TRUE(stub->Resync(&ctx, request, &snapshot).ok());
  }
  auto batch = [](uint64_t seq, size_t bytes) {
    interconnect::NvlogBatch b;
    b.set_session(5);
    interconnect::NvlogRecord* r = b.add_records();
    r->set_sequence(seq);
    r->set_lun(1);
    r->set_block_count(1);
    r->set_data(std::string(bytes, 'x'));
    return b;
  };
  {
    grpc::ClientContext ctx;
    auto stream = stub->Mirror(&ctx);
    ASSERT_TRUE(stream->Write(batch(1, 512)));
    interconnect::NvlogAck ack;
    ASSERT_TRUE(stream->Read(&ack));
    EXPECT_EQ(ack.held_through(), 1u);
    stream->Write(batch(2, 100));  // not a whole block
    EXPECT_FALSE(stream->Read(&ack));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
  }
  {
    grpc::ClientContext ctx;
    auto stream = stub->Mirror(&ctx);
    ASSERT_TRUE(stream->Write(batch(2, 512)));
    interconnect::NvlogAck ack;
    ASSERT_TRUE(stream->Read(&ack));
    EXPECT_EQ(ack.held_through(), 2u);
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(replica.Snapshot().records(), 2u);
  EXPECT_EQ(replica.stats().rejected, 1u);
}

// The Mirror stream message is the protobuf encoding of the whole batch, and
// a record's data larger than SliceBuilder::kInlineBytes travels in a slice
// over the log's own buffer (kept alive by the message, released with it).
TEST(NvlogGrpcTest, EncodedBatchIsTheProtobufMessageAndSharesLargeData) {
  OutgoingBatch out;
  out.batch.set_session(9);
  out.batch.mutable_commit()->set_through(3);
  out.batch.mutable_retire()->set_through(1);
  const size_t kSizes[] = {512, 16 * 1024, 16 * 1024 + 512, 1024 * 1024, 0};
  uint64_t seq = 2;
  for (size_t bytes : kSizes) {
    interconnect::NvlogRecord* r = out.batch.add_records();
    r->set_sequence(seq);
    r->set_lun(seq * 3);
    r->set_lba(seq << 40);
    r->set_block_count(static_cast<uint32_t>(bytes / 512));
    r->set_flags(seq % 2 == 0 ? interconnect::NVLOG_RECORD_FUA : 0);
    std::string data(bytes, '\0');
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * seq + i / 7);
    out.data.push_back(std::make_shared<const std::string>(std::move(data)));
    seq++;
  }
  const interconnect::NvlogBatch whole = out.Materialize();
  const std::shared_ptr<const std::string> large = out.data[3];
  {
    grpc::ByteBuffer message = EncodeMirrorBatch(out);
    EXPECT_GT(large.use_count(), 2);  // the message keeps a reference
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(message.Dump(&slices).ok());
    bool shared = false;
    for (const grpc::Slice& slice : slices) {
      shared |= slice.begin() == reinterpret_cast<const uint8_t*>(large->data());
    }
    EXPECT_TRUE(shared) << "the 1 MiB record's data was copied";
    interconnect::NvlogBatch parsed;
    ASSERT_TRUE(parsed.ParseFromString(interconnect_test::Flatten(message)));
    EXPECT_EQ(parsed.SerializeAsString(), whole.SerializeAsString());
    ASSERT_EQ(parsed.records_size(), 5);
    EXPECT_EQ(parsed.records(3).data(), *large);
    EXPECT_TRUE(parsed.has_commit());
    EXPECT_EQ(parsed.retire().through(), 1u);
  }
  EXPECT_EQ(large.use_count(), 2);  // out.data and large: the message let go

  // A batch of marks only, and a record whose data was left in the message.
  OutgoingBatch marks;
  marks.batch.set_session(9);
  marks.batch.mutable_retire()->set_through(4);
  interconnect::NvlogRecord* inline_record = marks.batch.add_records();
  inline_record->set_sequence(5);
  inline_record->set_data(std::string(512, 'q'));
  interconnect::NvlogBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(interconnect_test::Flatten(EncodeMirrorBatch(marks))));
  EXPECT_EQ(parsed.SerializeAsString(), marks.batch.SerializeAsString());
}

}  // namespace
}  // namespace nvlog
