// The Exchange wire codec against protobuf's own: what WireBatch writes,
// protobuf parses to the same messages (payload in its field); what protobuf
// writes, DecodeBatch reads (payload taken out of its field); and a message
// cut short, oversized or garbled is refused as a whole, never a crash.
#include "vadapter/wire.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "interconnect/proxy.pb.h"
#include "tests/interconnect/byte_buffers.h"

namespace vadapter {
namespace {

using interconnect_test::Flatten;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

std::string Bytes(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), v.end());
}

// bytes as gRPC might deliver them: cut into slices of slice_bytes.
grpc::ByteBuffer Sliced(const std::string& bytes, size_t slice_bytes) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += slice_bytes) {
    const size_t n = std::min(slice_bytes, bytes.size() - at);
    slices.emplace_back(bytes.data() + at, n);
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

interconnect::Completion ScsiCompletion(uint64_t id, uint32_t status) {
  interconnect::Completion c;
  c.set_request_id(id);
  c.mutable_scsi()->set_status(status);
  c.mutable_scsi()->set_wanted_data_in_length(4096);
  return c;
}

interconnect::Envelope Command(uint64_t id) {
  interconnect::Envelope e;
  e.set_request_id(id);
  interconnect::ScsiCommand* c = e.mutable_scsi_command();
  c->mutable_nexus()->set_initiator_port_name("iqn.1994-05.com.example:h,i,0x1");
  c->mutable_nexus()->set_target_port_name("iqn.t,t,0x1");
  c->mutable_nexus()->set_relative_target_port_id(2);
  c->mutable_nexus()->set_target_port_group(1);
  c->set_lun(3);
  c->set_cdb(std::string(10, '\x2a'));
  c->set_tag(id * 10);
  return e;
}

// Three completions: a large payload (its own slice), a small one (inlined)
// and a TMF answer (no payload).
struct Sample {
  WireBatch batch;
  interconnect::CompletionBatch expected;  // with data_in in its field
  std::vector<size_t> item_bytes;          // encoded size of each item
};

void Add(Sample* s, WireItem item) {
  s->item_bytes.push_back(item.size());
  s->batch.Add(std::move(item));
}

void MakeSample(Sample* s) {
  const std::vector<uint8_t> big = Pattern(300 * 1024, 1);
  const std::vector<uint8_t> small = Pattern(512, 2);
  interconnect::Completion a = ScsiCompletion(1, 0);
  Add(s, EncodeItem(a, kDataIn, big));
  a.mutable_scsi()->set_data_in(Bytes(big));
  *s->expected.add_items() = a;
  interconnect::Completion b = ScsiCompletion(2, 2);
  b.mutable_scsi()->set_sense(std::string(18, 's'));
  Add(s, EncodeItem(b, kDataIn, small));
  b.mutable_scsi()->set_data_in(Bytes(small));
  *s->expected.add_items() = b;
  interconnect::Completion t;
  t.set_request_id(3);
  t.mutable_tmf()->set_result(1);
  Add(s, EncodeItem(t, kDataIn, {}));
  *s->expected.add_items() = t;
}

TEST(WireTest, WhatWireBatchWritesProtobufReadsAsTheSameMessages) {
  Sample s;
  MakeSample(&s);
  EXPECT_EQ(s.batch.items_size(), 3);
  const grpc::ByteBuffer& message = s.batch.Seal();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(message.Dump(&slices).ok());
  // The large payload is a slice of its own (not copied into the heads).
  EXPECT_GE(slices.size(), 3u);
  interconnect::CompletionBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(message)));
  EXPECT_EQ(parsed.SerializeAsString(), s.expected.SerializeAsString());
  EXPECT_EQ(message.Length(), s.batch.bytes());
}

TEST(WireTest, DecodeBatchTakesThePayloadOutOfItsField) {
  Sample s;
  MakeSample(&s);
  // Both our encoding and protobuf's, delivered in small slices.
  for (const std::string& bytes :
       {Flatten(s.batch.Seal()), s.expected.SerializeAsString()}) {
    for (size_t slice_bytes : {size_t{7}, size_t{8192}, bytes.size()}) {
      grpc::ByteBuffer message = Sliced(bytes, slice_bytes);
      std::vector<DecodedItem<interconnect::Completion>> items;
      ASSERT_TRUE(DecodeBatch(&message, kDataIn, 1 << 20, &items).ok());
      ASSERT_EQ(items.size(), 3u);
      for (int i = 0; i < 3; ++i) {
        interconnect::Completion want = s.expected.items(i);
        const std::string data = want.scsi().data_in();
        if (want.has_scsi()) want.mutable_scsi()->clear_data_in();
        EXPECT_EQ(Bytes(items[i].payload), data) << i;
        EXPECT_EQ(items[i].message.SerializeAsString(), want.SerializeAsString())
            << i;
      }
    }
  }
}

TEST(WireTest, EnvelopesRoundTripWithDataOut) {
  WireBatch batch;
  const std::vector<uint8_t> data = Pattern(64 * 1024, 9);
  batch.Add(EncodeItem(Command(1), kDataOut, data));
  batch.Add(EncodeItem(Command(2), kDataOut, {}));
  grpc::ByteBuffer message = Sliced(Flatten(batch.Seal()), 8192);
  std::vector<DecodedItem<interconnect::Envelope>> items;
  ASSERT_TRUE(DecodeBatch(&message, kDataOut, 1 << 20, &items).ok());
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].payload, data);
  EXPECT_TRUE(items[1].payload.empty());
  EXPECT_EQ(items[0].message.SerializeAsString(), Command(1).SerializeAsString());
  EXPECT_EQ(items[1].message.SerializeAsString(), Command(2).SerializeAsString());
}

TEST(WireTest, APayloadOverTheLimitRefusesTheWholeMessage) {
  WireBatch batch;
  batch.Add(EncodeItem(ScsiCompletion(1, 0), kDataIn, Pattern(100, 0)));
  batch.Add(EncodeItem(ScsiCompletion(2, 0), kDataIn, Pattern(5000, 0)));
  grpc::ByteBuffer message = batch.Seal();
  std::vector<DecodedItem<interconnect::Completion>> items;
  const absl::Status status = DecodeBatch(&message, kDataIn, 4096, &items);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("payload too large"), std::string::npos);
}

TEST(WireTest, CutShortMessagesAreRefusedUnlessCutBetweenItems) {
  Sample s;
  MakeSample(&s);
  const std::string bytes = Flatten(s.batch.Seal());
  // Where each item ends (a cut there leaves a whole, shorter batch).
  std::vector<size_t> ends;
  size_t at = 0;
  for (size_t n : s.item_bytes) ends.push_back(at += n);
  // Every cut inside the small items, and a sample of cuts inside the large one.
  for (size_t cut = 0; cut < bytes.size(); cut += (cut > 64 && cut + 1000 < ends[0]) ? 997 : 1) {
    grpc::ByteBuffer message = Sliced(bytes.substr(0, cut), 8192);
    std::vector<DecodedItem<interconnect::Completion>> items;
    const bool boundary = cut == 0 || cut == ends[0] || cut == ends[1];
    EXPECT_EQ(DecodeBatch(&message, kDataIn, 1 << 20, &items).ok(), boundary)
        << "cut at " << cut;
  }
}

TEST(WireTest, HugeDeclaredLengthsAllocateNothing) {
  // Item of 2 GiB declared; sub-message and payload lengths of 4 GiB - 1.
  const std::string cases[] = {
      std::string("\x0a\x80\x80\x80\x80\x08", 6),
      std::string("\x0a\x0c\x12\x0a\x1a\xff\xff\xff\xff\x0f", 10),
      std::string("\x0a\x0c\x12\xff\xff\xff\xff\x0f\x1a\x01\x00", 11),
  };
  for (const std::string& bytes : cases) {
    grpc::ByteBuffer message = Sliced(bytes, 3);
    std::vector<DecodedItem<interconnect::Completion>> items;
    EXPECT_FALSE(DecodeBatch(&message, kDataIn, 16u << 20, &items).ok());
  }
}

TEST(WireTest, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  Sample s;
  MakeSample(&s);
  const std::string good = Flatten(s.batch.Seal()).substr(0, 4096);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes = good.substr(0, rng() % 600);
    // Flip a few bytes of a valid prefix, or use noise outright.
    if (round % 2 == 0) {
      for (int i = 0; i < 3 && !bytes.empty(); ++i) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    } else {
      for (char& c : bytes) c = static_cast<char>(rng());
    }
    grpc::ByteBuffer message = Sliced(bytes.empty() ? std::string() : bytes, 5);
    std::vector<DecodedItem<interconnect::Completion>> items;
    // Whatever is accepted keeps within the payload limit.
    if (DecodeBatch(&message, kDataIn, 256, &items).ok()) {
      for (const auto& item : items) EXPECT_LE(item.payload.size(), 256u);
    }
  }
}

}  // namespace
}  // namespace vadapter
