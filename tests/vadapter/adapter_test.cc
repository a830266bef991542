// LocalVirtualAdapter -> gRPC (in-process channel) -> PartnerVirtualAdapter ->
// RAM-disk router: proxied commands give the answers the router gives
// directly; concurrency, large transfers, task management, timeouts, flow
// control, malformed envelopes from a raw client, and unreadable answers from
// a fake owner.
#include <atomic>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "interconnect/partner_channel.h"
#include "interconnect/server.h"
#include "target/scsi/sense.h"
#include "tests/vadapter/ram_disk_router.h"
#include "vadapter/local_virtual_adapter.h"
#include "vadapter/partner_virtual_adapter.h"

namespace vadapter {
namespace {

using vadapter_test::CopyTask;
using vadapter_test::Pattern;
using vadapter_test::RamDiskRouter;
using vadapter_test::ReadTask;
using vadapter_test::ResponseCatcher;
using vadapter_test::TestNexus;
using vadapter_test::WriteTask;

void ExpectSameResponse(const scsi::TaskResponse& got,
                        const scsi::TaskResponse& want) {
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.sense, want.sense);
  EXPECT_EQ(got.data_in, want.data_in);
  EXPECT_EQ(got.wanted_data_in_length, want.wanted_data_in_length);
  EXPECT_EQ(got.wanted_data_out_length, want.wanted_data_out_length);
  EXPECT_EQ(got.aborted, want.aborted);
}

void ExpectUnavailable(const scsi::TaskResponse& r) {
  EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
  auto sense = scsi::ParseSense(r.sense);
  ASSERT_TRUE(sense.ok());
  EXPECT_EQ(r.sense[0] & 0x7f, 0x70) << "fixed format";
  EXPECT_EQ(sense->key, scsi::SenseKey::kNotReady);
  EXPECT_EQ(sense->code,
            scsi::asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState);
}

class AdapterTest : public ::testing::Test {
 protected:
  void Start(LocalVirtualAdapter::Options options = {}) {
    partner_ = std::make_unique<PartnerVirtualAdapter>(router_);
    interconnect::InterconnectServer::Options so;
    so.credentials = grpc::InsecureServerCredentials();
    auto server = interconnect::InterconnectServer::Create(so, {partner_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    interconnect::PartnerChannel::Options co;
    co.node_name = "node-a";
    co.heartbeat_interval = std::chrono::milliseconds(0);
    channel_ = interconnect::PartnerChannel::CreateForInProcessChannel(
        server_->InProcessChannel(), co);
    auto local = LocalVirtualAdapter::Create(*channel_, options);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(*local);
  }

  void TearDown() override {
    local_.reset();
    channel_.reset();
    server_.reset();
    partner_.reset();
  }

  scsi::TaskResponse Run(std::unique_ptr<scsi::Task> task) {
    ResponseCatcher c;
    local_->Forward(std::move(task), c.Callback());
    EXPECT_TRUE(c.Wait());
    EXPECT_EQ(c.calls(), 1);
    return c.response();
  }

  scsi::TmfResult Tmf(scsi::TmfFunction f, uint64_t tag = 0,
                      std::shared_ptr<const scsi::ItNexus> nexus = TestNexus()) {
    absl::Mutex mu;
    std::optional<scsi::TmfResult> result;
    scsi::TmfRequest r;
    r.nexus = std::move(nexus);
    r.function = f;
    r.lun = 1;
    r.referenced_tag = tag;
    local_->ForwardTaskManagement(std::move(r), [&](scsi::TmfResult res) {
      absl::MutexLock l(&mu);
      result = res;
    });
    absl::MutexLock l(&mu);
    auto done = [&]() { return result.has_value(); };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20)));
    return result.value_or(scsi::TmfResult::kRejected);
  }

  RamDiskRouter router_;
  std::unique_ptr<PartnerVirtualAdapter> partner_;
  std::unique_ptr<interconnect::InterconnectServer> server_;
  std::unique_ptr<interconnect::PartnerChannel> channel_;
  std::unique_ptr<LocalVirtualAdapter> local_;
};

TEST_F(AdapterTest, ProxiedCommandsAnswerLikeTheRouterDirectly) {
  Start();
  RamDiskRouter direct;
  std::vector<std::unique_ptr<scsi::Task>> script;
  script.push_back(WriteTask(10, Pattern(4096, 1), 1));           // full write
  script.push_back(ReadTask(8, 12, 6144, 2));                      // read back
  script.push_back(ReadTask(10, 8, 1000, 3));                      // overflow: residual
  script.push_back(ReadTask(10, 2, 4096, 4));                      // underflow
  script.push_back(WriteTask(40, Pattern(1536, 9), 5));
  script.back()->data_out.resize(600);                             // short data-out
  script.push_back(ReadTask(40, 3, 1536, 6));
  script.push_back(ReadTask(1u << 30, 1, 512, 7));                 // LBA out of range
  auto bad_op = ReadTask(0, 1, 512, 8);
  bad_op->cdb[0] = 0xC7;                                           // unsupported opcode
  script.push_back(std::move(bad_op));
  for (auto& t : script) {
    SCOPED_TRACE(testing::Message() << "tag " << t->tag);
    scsi::TaskResponse want = direct.Execute(*t);
    scsi::TaskResponse got = Run(CopyTask(*t));
    ExpectSameResponse(got, want);
  }
  // The partner rebuilt one shared ItNexus for all of them.
  EXPECT_EQ(router_.nexus_objects().size(), 1u);
  EXPECT_EQ(local_->stats().completed, script.size());
}

TEST_F(AdapterTest, AbortedFlagCrossesTheInterconnect) {
  Start();
  router_.set_hold(true);
  ResponseCatcher c;
  local_->Forward(ReadTask(0, 1, 512, 42), c.Callback());
  ASSERT_TRUE(router_.WaitForHeld(1));
  EXPECT_EQ(Tmf(scsi::TmfFunction::kAbortTask, 42), scsi::TmfResult::kComplete);
  ASSERT_TRUE(c.Wait());
  EXPECT_TRUE(c.response().aborted);
  ASSERT_EQ(router_.tmfs().size(), 1u);
  const scsi::TmfRequest seen = router_.tmfs()[0];
  EXPECT_EQ(seen.function, scsi::TmfFunction::kAbortTask);
  EXPECT_EQ(seen.referenced_tag, 42u);
  EXPECT_EQ(seen.lun, 1u);
  EXPECT_EQ(seen.nexus->initiator_port_name, TestNexus()->initiator_port_name);
  EXPECT_EQ(seen.nexus->relative_target_port_id, 3);
  // Abort of a task that is not outstanding: answered here.
  EXPECT_EQ(Tmf(scsi::TmfFunction::kAbortTask, 4242),
            scsi::TmfResult::kTaskDoesNotExist);
}

TEST_F(AdapterTest, AbortTaskSetReachesCommandsOnEveryStream) {
  LocalVirtualAdapter::Options o;
  o.fill_stream_bytes = 0;  // every command to the least loaded stream
  Start(o);
  router_.set_hold(true);
  std::vector<ResponseCatcher> catchers(8);
  for (int i = 0; i < 8; ++i) {
    local_->Forward(ReadTask(i, 1, 512, 100 + i), catchers[i].Callback());
  }
  ASSERT_TRUE(router_.WaitForHeld(8));
  EXPECT_EQ(local_->stats().streams_opened, 4u);
  EXPECT_EQ(Tmf(scsi::TmfFunction::kAbortTaskSet), scsi::TmfResult::kComplete);
  for (auto& c : catchers) {
    ASSERT_TRUE(c.Wait());
    EXPECT_TRUE(c.response().aborted);
  }
  EXPECT_EQ(router_.held(), 0u);
}

TEST_F(AdapterTest, NexusLossIsForwarded) {
  Start();
  EXPECT_EQ(Tmf(scsi::TmfFunction::kItNexusLoss), scsi::TmfResult::kComplete);
  ASSERT_EQ(router_.tmfs().size(), 1u);
  EXPECT_EQ(router_.tmfs()[0].function, scsi::TmfFunction::kItNexusLoss);
}

TEST_F(AdapterTest, ManyConcurrentCommandsCompleteExactlyOnce) {
  LocalVirtualAdapter::Options o;
  o.max_outstanding_requests_per_stream = 8;  // forces queueing
  o.fill_stream_bytes = 0;                    // and the use of every stream
  Start(o);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::atomic<int>> calls(kThreads * kPerThread);
  std::atomic<int> good{0};
  absl::Mutex mu;
  int done = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto nexus = TestNexus(t + 1);
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * kPerThread + i;
        local_->Forward(ReadTask(n % 1000, 1, 512, n, nexus),
                        [&, n](scsi::TaskResponse r) {
                          calls[n]++;
                          if (r.status == scsi::ScsiStatus::kGood &&
                              r.data_in.size() == 512) {
                            good++;
                          }
                          absl::MutexLock l(&mu);
                          done++;
                        });
      }
    });
  }
  for (auto& th : threads) th.join();
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return done >= kThreads * kPerThread; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)));
  }
  EXPECT_EQ(good.load(), kThreads * kPerThread);
  for (auto& c : calls) EXPECT_EQ(c.load(), 1);
  auto s = local_->stats();
  EXPECT_EQ(s.completed, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.streams_opened, 4u);
  EXPECT_EQ(s.outstanding, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(router_.nexus_objects().size(), static_cast<size_t>(kThreads));
}

TEST_F(AdapterTest, SmallCommandsShareOneStreamLargeOnesSpread) {
  Start();  // 4 streams, fill bound 256 KiB
  router_.set_hold(true);
  std::vector<ResponseCatcher> small(16);
  for (int i = 0; i < 16; ++i) {
    local_->Forward(ReadTask(i, 8, 4096, i), small[i].Callback());
  }
  ASSERT_TRUE(router_.WaitForHeld(16));
  EXPECT_EQ(local_->stats().streams_opened, 1u) << "64 KiB outstanding: one stream";
  router_.ReleaseHeld();
  for (auto& c : small) {
    ASSERT_TRUE(c.Wait());
    EXPECT_EQ(c.response().status, scsi::ScsiStatus::kGood);
  }
  // 256 KiB each: the first fills stream 0, each next one opens the next.
  std::vector<ResponseCatcher> large(4);
  for (int i = 0; i < 4; ++i) {
    local_->Forward(ReadTask(i * 512, 512, 256 * 1024, 100 + i), large[i].Callback());
  }
  ASSERT_TRUE(router_.WaitForHeld(4));
  EXPECT_EQ(local_->stats().streams_opened, 4u);
  router_.ReleaseHeld();
  for (auto& c : large) {
    ASSERT_TRUE(c.Wait());
    EXPECT_EQ(c.response().status, scsi::ScsiStatus::kGood);
    EXPECT_EQ(c.response().data_in.size(), 256u * 1024);
  }
}

TEST_F(AdapterTest, EightMebibyteTransfers) {
  Start();
  const std::vector<uint8_t> data = Pattern(8 << 20, 5);
  scsi::TaskResponse w = Run(WriteTask(0, data, 1));
  EXPECT_EQ(w.status, scsi::ScsiStatus::kGood);
  EXPECT_EQ(w.wanted_data_out_length, 8u << 20);
  scsi::TaskResponse r = Run(ReadTask(0, (8 << 20) / 512, 8 << 20, 2));
  EXPECT_EQ(r.status, scsi::ScsiStatus::kGood);
  EXPECT_TRUE(r.data_in == data);
}

TEST_F(AdapterTest, TimeoutAnswersUnavailableAndAbortsOnTheOwner) {
  LocalVirtualAdapter::Options o;
  o.command_timeout = absl::Milliseconds(200);
  Start(o);
  router_.set_hold(true);
  ResponseCatcher c;
  local_->Forward(ReadTask(0, 1, 512, 77), c.Callback());
  ASSERT_TRUE(c.Wait());
  ExpectUnavailable(c.response());
  ASSERT_TRUE(router_.WaitForTmfs(1));
  EXPECT_EQ(router_.tmfs()[0].function, scsi::TmfFunction::kAbortTask);
  EXPECT_EQ(router_.tmfs()[0].referenced_tag, 77u);
  EXPECT_EQ(router_.held(), 0u);
  EXPECT_EQ(local_->stats().timed_out, 1u);
  EXPECT_EQ(c.calls(), 1);
}

TEST_F(AdapterTest, BoundedQueueNeverDropsAndOverflowsWithTaskSetFull) {
  LocalVirtualAdapter::Options o;
  o.streams = 1;
  o.max_outstanding_requests_per_stream = 1;
  o.max_queued_requests = 2;
  Start(o);
  router_.set_hold(true);
  std::vector<ResponseCatcher> c(4);
  for (int i = 0; i < 4; ++i) local_->Forward(ReadTask(i, 1, 512, i), c[i].Callback());
  // The fourth finds the queue full.
  ASSERT_TRUE(c[3].Wait());
  EXPECT_EQ(c[3].response().status, scsi::ScsiStatus::kTaskSetFull);
  ASSERT_TRUE(router_.WaitForHeld(1));
  EXPECT_EQ(local_->stats().queued, 2u);
  // Each release lets the next queued command through.
  for (size_t released = 0; released < 3; ++released) {
    ASSERT_TRUE(router_.WaitForHeld(1));
    router_.ReleaseHeld();
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c[i].Wait());
    EXPECT_EQ(c[i].response().status, scsi::ScsiStatus::kGood);
  }
}

TEST_F(AdapterTest, QueuedCommandIsAbortedLocally) {
  LocalVirtualAdapter::Options o;
  o.streams = 1;
  o.max_outstanding_requests_per_stream = 1;
  Start(o);
  router_.set_hold(true);
  ResponseCatcher first, second;
  local_->Forward(ReadTask(0, 1, 512, 1), first.Callback());
  local_->Forward(ReadTask(1, 1, 512, 2), second.Callback());
  ASSERT_TRUE(router_.WaitForHeld(1));
  EXPECT_EQ(Tmf(scsi::TmfFunction::kAbortTask, 2), scsi::TmfResult::kComplete);
  ASSERT_TRUE(second.Wait());
  EXPECT_TRUE(second.response().aborted);
  EXPECT_TRUE(router_.tmfs().empty()) << "never reached the owner";
  router_.ReleaseHeld();
  ASSERT_TRUE(first.Wait());
  EXPECT_EQ(first.response().status, scsi::ScsiStatus::kGood);
}

TEST_F(AdapterTest, InvalidLocalTaskIsAnsweredWithoutSending) {
  Start();
  auto t = ReadTask(0, 1, 512, 1);
  t->cdb.resize(3);
  scsi::TaskResponse r = Run(std::move(t));
  EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
  auto sense = scsi::ParseSense(r.sense);
  ASSERT_TRUE(sense.ok());
  EXPECT_EQ(sense->code, scsi::asc::kInvalidFieldInCdb);
  EXPECT_EQ(router_.submitted(), 0u);
}

TEST_F(AdapterTest, ShutdownCompletesOutstandingCommands) {
  Start();
  router_.set_hold(true);
  ResponseCatcher c;
  local_->Forward(ReadTask(0, 1, 512, 5), c.Callback());
  ASSERT_TRUE(router_.WaitForHeld(1));
  local_.reset();
  ASSERT_TRUE(c.Wait());
  ExpectUnavailable(c.response());
  // The owner aborts what the closed stream left behind.
  ASSERT_TRUE(router_.WaitForTmfs(1));
  EXPECT_EQ(router_.tmfs()[0].referenced_tag, 5u);
}

// --- Malformed envelopes from a raw client ---

interconnect::Envelope GoodRead(uint64_t id) {
  interconnect::Envelope e;
  e.set_request_id(id);
  auto t = ReadTask(0, 1, 512, id);
  EXPECT_TRUE(EncodeScsiCommand(*t, EnvelopeLimits(), e.mutable_scsi_command()).ok());
  return e;
}

using RawStream = grpc::ClientReaderWriter<interconnect::EnvelopeBatch,
                                           interconnect::CompletionBatch>;

// Sends envelopes as one stream message.
bool WriteBatch(RawStream& stream, const std::vector<interconnect::Envelope>& es) {
  interconnect::EnvelopeBatch b;
  for (const auto& e : es) *b.add_items() = e;
  return stream.Write(b);
}

// Reads completions one at a time out of the stream's batches.
class CompletionReader {
 public:
  explicit CompletionReader(RawStream& stream) : stream_(stream) {}
  bool Read(interconnect::Completion* c) {
    while (next_ >= batch_.items_size()) {
      if (!stream_.Read(&batch_)) return false;
      next_ = 0;
    }
    *c = batch_.items(next_++);
    return true;
  }

 private:
  RawStream& stream_;
  interconnect::CompletionBatch batch_;
  int next_ = 0;
};

TEST_F(AdapterTest, MalformedEnvelopesGetErrorCompletions) {
  Start();
  auto stub = interconnect::Proxy::NewStub(server_->InProcessChannel());
  grpc::ClientContext ctx;
  auto stream = stub->Exchange(&ctx);
  std::vector<interconnect::Envelope> bad;
  bad.push_back(GoodRead(1));
  bad.back().mutable_scsi_command()->set_cdb("abc");  // cdb too short
  bad.push_back(GoodRead(2));
  bad.back().mutable_scsi_command()->set_cdb(std::string(261, 'x'));  // too long
  bad.push_back(GoodRead(3));
  bad.back().mutable_scsi_command()->mutable_nexus()->clear_initiator_port_name();
  bad.push_back(GoodRead(4));
  bad.back().mutable_scsi_command()->set_lun(uint64_t{1} << 40);  // huge lun
  bad.push_back(GoodRead(5));
  bad.back().mutable_scsi_command()->set_task_attribute(9);  // unknown attribute
  bad.push_back(GoodRead(6));
  bad.back().mutable_scsi_command()->mutable_nexus()->set_relative_target_port_id(70000);
  bad.push_back(GoodRead(7));
  bad.back().mutable_scsi_command()->mutable_nexus()->set_target_port_group(0);
  bad.push_back(GoodRead(8));
  bad.back().mutable_scsi_command()->mutable_nexus()->set_target_port_name(
      std::string(4096, 'n'));
  bad.push_back(GoodRead(9));
  bad.back().mutable_scsi_command()->set_expected_data_in_length(0xffffffffu);
  interconnect::Envelope empty;
  empty.set_request_id(10);
  bad.push_back(empty);
  const size_t kScsiBad = bad.size();
  interconnect::Envelope tmf;
  tmf.set_request_id(11);
  tmf.mutable_task_management()->set_function(99);
  *tmf.mutable_task_management()->mutable_nexus() =
      GoodRead(0).scsi_command().nexus();
  bad.push_back(tmf);
  interconnect::Envelope tmf_no_nexus;
  tmf_no_nexus.set_request_id(12);
  tmf_no_nexus.mutable_task_management()->set_function(0);
  bad.push_back(tmf_no_nexus);

  // All the bad ones in one batch, an empty batch, then a good one alone.
  ASSERT_TRUE(WriteBatch(*stream, bad));
  ASSERT_TRUE(WriteBatch(*stream, {}));
  ASSERT_TRUE(WriteBatch(*stream, {GoodRead(100)}));
  std::map<uint64_t, interconnect::Completion> got;
  interconnect::Completion c;
  CompletionReader reader(*stream);
  while (got.size() < bad.size() + 1 && reader.Read(&c)) got[c.request_id()] = c;
  ASSERT_EQ(got.size(), bad.size() + 1);
  for (size_t i = 0; i < kScsiBad; ++i) {
    const uint64_t id = bad[i].request_id();
    SCOPED_TRACE(testing::Message() << "request " << id);
    ASSERT_TRUE(got[id].has_scsi());
    EXPECT_EQ(got[id].scsi().status(),
              static_cast<uint32_t>(scsi::ScsiStatus::kCheckCondition));
    const std::string& s = got[id].scsi().sense();
    auto sense = scsi::ParseSense(
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    ASSERT_TRUE(sense.ok());
    EXPECT_EQ(sense->key, scsi::SenseKey::kIllegalRequest);
    EXPECT_EQ(sense->code, scsi::asc::kInvalidFieldInCdb);
  }
  for (uint64_t id : {11, 12}) {
    ASSERT_TRUE(got[id].has_tmf());
    EXPECT_EQ(got[id].tmf().result(),
              static_cast<uint32_t>(scsi::TmfResult::kRejected));
  }
  ASSERT_TRUE(got[100].has_scsi());
  EXPECT_EQ(got[100].scsi().status(), 0u);
  EXPECT_EQ(got[100].scsi().data_in().size(), 512u);
  EXPECT_EQ(router_.submitted(), 1u);
  EXPECT_EQ(partner_->stats().rejected, bad.size());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  // The server still serves the adapter.
  EXPECT_EQ(Run(ReadTask(0, 1, 512, 1)).status, scsi::ScsiStatus::kGood);
}

// Waits for tag on cq; returns the operation's ok.
bool Await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&got, &ok));
  EXPECT_EQ(got, tag);
  return ok;
}

TEST_F(AdapterTest, UnreadableMessageEndsTheStreamAndAbortsItsCommands) {
  Start();
  router_.set_hold(true);
  grpc::GenericStub stub(server_->InProcessChannel());
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto call = stub.PrepareCall(&ctx, "/interconnect.Proxy/Exchange", &cq);
  int started, wrote, read, finished;
  call->StartCall(&started);
  ASSERT_TRUE(Await(cq, &started));
  // A good read, held on the engine; then bytes that are no EnvelopeBatch
  // (an item whose length runs past the message).
  interconnect::EnvelopeBatch good;
  *good.add_items() = GoodRead(5);
  const std::string good_bytes = good.SerializeAsString();
  grpc::Slice good_slice(good_bytes.data(), good_bytes.size());
  call->Write(grpc::ByteBuffer(&good_slice, 1), &wrote);
  ASSERT_TRUE(Await(cq, &wrote));
  ASSERT_TRUE(router_.WaitForHeld(1));
  const std::string garbage("\x0a\x7f\x08\x01", 4);
  grpc::Slice bad_slice(garbage.data(), garbage.size());
  call->Write(grpc::ByteBuffer(&bad_slice, 1), &wrote);
  Await(cq, &wrote);
  // The owner ends the stream without an answer and aborts the held read.
  grpc::ByteBuffer answer;
  call->Read(&answer, &read);
  EXPECT_FALSE(Await(cq, &read));
  grpc::Status status;
  call->Finish(&status, &finished);
  ASSERT_TRUE(Await(cq, &finished));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_NE(status.error_message().find("malformed"), std::string::npos);
  ASSERT_TRUE(router_.WaitForTmfs(1));
  EXPECT_EQ(router_.tmfs()[0].function, scsi::TmfFunction::kAbortTask);
  EXPECT_EQ(router_.tmfs()[0].referenced_tag, 5u);
  EXPECT_EQ(partner_->stats().malformed_messages, 1u);
  router_.ReleaseHeld();
  router_.set_hold(false);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }

  // The server still serves the adapter.
  EXPECT_EQ(Run(ReadTask(0, 1, 512, 1)).status, scsi::ScsiStatus::kGood);
}

TEST_F(AdapterTest, DuplicateRequestIdIsRejected) {
  Start();
  router_.set_hold(true);
  auto stub = interconnect::Proxy::NewStub(server_->InProcessChannel());
  grpc::ClientContext ctx;
  auto stream = stub->Exchange(&ctx);
  ASSERT_TRUE(WriteBatch(*stream, {GoodRead(5)}));
  ASSERT_TRUE(router_.WaitForHeld(1));
  ASSERT_TRUE(WriteBatch(*stream, {GoodRead(5)}));
  interconnect::Completion c;
  CompletionReader reader(*stream);
  ASSERT_TRUE(reader.Read(&c));
  EXPECT_EQ(c.request_id(), 5u);
  EXPECT_EQ(c.scsi().status(),
            static_cast<uint32_t>(scsi::ScsiStatus::kCheckCondition));
  router_.ReleaseHeld();
  ASSERT_TRUE(reader.Read(&c));
  EXPECT_EQ(c.scsi().status(), 0u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// An owner whose answers cannot be read: it replies to every stream message
// with bytes that are no CompletionBatch (an item whose declared length runs
// far past the message).
class GarbageOwner final : public grpc::CallbackGenericService {
 public:
  std::atomic<int> messages{0};

 private:
  class Reactor final : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(GarbageOwner& owner) : owner_(owner) { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      owner_.messages++;
      static const std::string kGarbage("\x0a\xff\xff\xff\xff\x0f\x08\x01", 8);
      grpc::Slice slice(kGarbage.data(), kGarbage.size());
      out_ = grpc::ByteBuffer(&slice, 1);
      StartWrite(&out_);
    }
    void OnWriteDone(bool) override { StartRead(&in_); }
    void OnDone() override { delete this; }

   private:
    GarbageOwner& owner_;
    grpc::ByteBuffer in_, out_;
  };

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext*) override {
    return new Reactor(*this);
  }
};

// The requester's side of an unreadable message: the stream's commands fail
// over at once with the ALUA sense multipath hosts retry elsewhere on (never
// hang, never a garbled completion), the call is cancelled, and later commands
// open a new stream and are answered the same way.
TEST(RequesterTest, UnreadableAnswerFailsTheStreamsCommandsOver) {
  GarbageOwner owner;
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&owner);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  interconnect::PartnerChannel::Options co;
  co.node_name = "node-a";
  co.heartbeat_interval = std::chrono::milliseconds(0);
  auto channel = interconnect::PartnerChannel::CreateForInProcessChannel(
      server->InProcessChannel(grpc::ChannelArguments()), co);
  auto local = LocalVirtualAdapter::Create(*channel, {});
  ASSERT_TRUE(local.ok()) << local.status();
  for (uint64_t tag = 1; tag <= 2; ++tag) {
    ResponseCatcher c;
    const absl::Time start = absl::Now();
    (*local)->Forward(ReadTask(0, 1, 512, tag), c.Callback());
    ASSERT_TRUE(c.Wait());
    EXPECT_EQ(c.calls(), 1);
    ExpectUnavailable(c.response());
    EXPECT_TRUE(c.response().data_in.empty());
    // Well before the command timeout: the stream broke, nothing timed out.
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    EXPECT_EQ((*local)->stats().malformed_messages, tag);
  }
  EXPECT_EQ(owner.messages.load(), 2);
  const LocalVirtualAdapter::Stats stats = (*local)->stats();
  EXPECT_EQ(stats.unavailable, 2u);
  EXPECT_EQ(stats.timed_out, 0u);
  EXPECT_EQ(stats.completed, 0u);
  EXPECT_EQ(stats.outstanding, 0u);
  local->reset();
  channel.reset();
  server->Shutdown();
}

}  // namespace
}  // namespace vadapter
