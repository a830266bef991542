// The Exchange stream's messages on the wire, without copying payloads.
//
// A stream message is the protobuf encoding of an EnvelopeBatch or a
// CompletionBatch (interconnect/proxy.proto), so any protobuf peer can read
// and write it; but a command's data-out and a completion's data-in are not
// copied into protobuf `bytes` and out again. The sender hands the task's
// buffer to gRPC as a slice that owns it (EncodeItem, WireBatch), the receiver
// reads that field straight from gRPC's slices into the buffer the task will
// keep (DecodeBatch). Every other field is encoded and parsed by protobuf.
//
// How: an item is its message (the Envelope or Completion, payload field
// empty) followed by a second occurrence of the sub-message field (field 2:
// Envelope.scsi_command, Completion.scsi) holding only the payload field.
// Protobuf merges repeated occurrences of a message field, so a standard
// parser reads the same message (tests/vadapter/wire_test.cc checks both
// directions against the generated code).
#ifndef VADAPTER_WIRE_H_
#define VADAPTER_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "interconnect/slices.h"

namespace vadapter {

// Where an item's payload lives: field payload_field of the sub-message at
// field message_field of the item's message.
struct PayloadField {
  int message_field;
  int payload_field;
};
// Envelope.scsi_command.data_out and Completion.scsi.data_in.
inline constexpr PayloadField kDataOut{2, 7};
inline constexpr PayloadField kDataIn{2, 3};

// One encoded batch item: `head` is the item's tag and length, its message's
// protobuf encoding and the payload's field headers; `payload` follows it.
struct WireItem {
  std::string head;
  std::vector<uint8_t> payload;
  size_t size() const { return head.size() + payload.size(); }
};

// message (its payload field empty) with payload at field. An empty payload is
// left out (proto3 leaves empty bytes out too).
WireItem EncodeItem(const google::protobuf::MessageLite& message,
                    PayloadField field, std::vector<uint8_t> payload);

// The items of one stream message, in order. Small payloads are copied next to
// their heads (one slice for many items); larger ones go as slices that own
// their buffer (interconnect::SliceBuilder).
class WireBatch {
 public:
  void Add(WireItem item);
  int items_size() const { return items_; }
  size_t bytes() const { return builder_.bytes(); }
  // The stream message of every item added so far (its slices share the
  // batch's buffers; gRPC keeps its own references once handed a copy).
  const grpc::ByteBuffer& Seal();

 private:
  interconnect::SliceBuilder builder_;
  grpc::ByteBuffer buffer_;
  int items_ = 0;
};

// One item of a received stream message: its message (payload field empty)
// and its payload.
template <typename Message>
struct DecodedItem {
  Message message;
  std::vector<uint8_t> payload;
};

// Parses a stream message (a batch whose `items` are field 1) into items, in
// order: each item's payload field is read straight into its payload, the rest
// parsed by protobuf. A payload longer than max_payload_bytes, or any encoding
// error, makes the whole message InvalidArgument (items is then not to be
// used). items is cleared first (its capacity is reused).
template <typename Message>
absl::Status DecodeBatch(grpc::ByteBuffer* buffer, PayloadField field,
                         size_t max_payload_bytes,
                         std::vector<DecodedItem<Message>>* items);

// The untyped core of DecodeBatch: next_item returns the message to parse the
// next item into and sets *payload to where its payload goes.
absl::Status DecodeBatchItems(
    grpc::ByteBuffer* buffer, PayloadField field, size_t max_payload_bytes,
    absl::FunctionRef<google::protobuf::MessageLite*(std::vector<uint8_t>** payload)>
        next_item);

template <typename Message>
absl::Status DecodeBatch(grpc::ByteBuffer* buffer, PayloadField field,
                         size_t max_payload_bytes,
                         std::vector<DecodedItem<Message>>* items) {
  items->clear();
  return DecodeBatchItems(
      buffer, field, max_payload_bytes,
      [items](std::vector<uint8_t>** payload) -> google::protobuf::MessageLite* {
        DecodedItem<Message>& item = items->emplace_back();
        *payload = &item.payload;
        return &item.message;
      });
}

}  // namespace vadapter

#endif  // VADAPTER_WIRE_H_
