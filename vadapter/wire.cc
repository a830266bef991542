#include "vadapter/wire.h"

#include <utility>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace vadapter {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::io::StringOutputStream;

constexpr int kItemsField = 1;  // EnvelopeBatch.items, CompletionBatch.items

uint32_t LengthDelimitedTag(int field) {
  return WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
}

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) { return CodedOutputStream::VarintSize64(v); }

// A slice that owns c (deleted when gRPC lets go of the slice).
template <typename Container>
grpc::Slice OwningSlice(Container c) {
  auto* owned = new Container(std::move(c));
  return grpc::Slice(
      owned->data(), owned->size(),
      [](void* p) { delete static_cast<Container*>(p); }, owned);
}

absl::Status Malformed(const char* what) {
  return absl::InvalidArgumentError(
      std::string("malformed interconnect message: ") + what);
}

}  // namespace

WireItem EncodeItem(const google::protobuf::MessageLite& message,
                    PayloadField field, std::vector<uint8_t> payload) {
  WireItem item;
  const size_t message_bytes = message.ByteSizeLong();
  if (payload.empty()) {
    AppendVarint(LengthDelimitedTag(kItemsField), &item.head);
    AppendVarint(message_bytes, &item.head);
    message.AppendToString(&item.head);
    return item;
  }
  const uint32_t sub_tag = LengthDelimitedTag(field.message_field);
  const uint32_t payload_tag = LengthDelimitedTag(field.payload_field);
  const size_t sub_bytes =
      VarintSize(payload_tag) + VarintSize(payload.size()) + payload.size();
  const size_t item_bytes =
      message_bytes + VarintSize(sub_tag) + VarintSize(sub_bytes) + sub_bytes;
  AppendVarint(LengthDelimitedTag(kItemsField), &item.head);
  AppendVarint(item_bytes, &item.head);
  message.AppendToString(&item.head);
  AppendVarint(sub_tag, &item.head);
  AppendVarint(sub_bytes, &item.head);
  AppendVarint(payload_tag, &item.head);
  AppendVarint(payload.size(), &item.head);
  item.payload = std::move(payload);
  return item;
}

void WireBatch::Add(WireItem item) {
  items_++;
  bytes_ += item.size();
  heads_ += item.head;
  if (item.payload.size() <= kInlinePayloadBytes) {
    heads_.append(reinterpret_cast<const char*>(item.payload.data()),
                  item.payload.size());
    return;
  }
  FlushHeads();
  slices_.push_back(OwningSlice(std::move(item.payload)));
}

void WireBatch::FlushHeads() {
  if (heads_.empty()) return;
  slices_.push_back(OwningSlice(std::move(heads_)));
  heads_ = std::string();
}

const grpc::ByteBuffer& WireBatch::Seal() {
  FlushHeads();
  buffer_ = grpc::ByteBuffer(slices_.data(), slices_.size());
  return buffer_;
}

absl::Status DecodeBatchItems(
    grpc::ByteBuffer* buffer, PayloadField field, size_t max_payload_bytes,
    absl::FunctionRef<google::protobuf::MessageLite*(std::vector<uint8_t>** payload)>
        next_item) {
  const size_t total = buffer->Length();
  grpc::ProtoBufferReader reader(buffer);
  if (!reader.status().ok()) return Malformed("unreadable buffer");
  CodedInputStream in(&reader);
  const uint32_t sub_tag = LengthDelimitedTag(field.message_field);
  const uint32_t payload_tag = LengthDelimitedTag(field.payload_field);
  std::string rest, sub;
  while (const uint32_t tag = in.ReadTag()) {
    if (tag != LengthDelimitedTag(kItemsField)) {
      // Not an item: skipped, as protobuf skips unknown fields.
      if (!WireFormatLite::SkipField(&in, tag)) return Malformed("batch field");
      continue;
    }
    uint32_t item_bytes = 0;
    if (!in.ReadVarint32(&item_bytes)) return Malformed("item length");
    if (item_bytes > total - static_cast<size_t>(in.CurrentPosition())) {
      return Malformed("item beyond the message");
    }
    const CodedInputStream::Limit item_limit = in.PushLimit(item_bytes);
    std::vector<uint8_t>* payload = nullptr;
    google::protobuf::MessageLite* message = next_item(&payload);
    rest.clear();
    {
      StringOutputStream rest_stream(&rest);
      CodedOutputStream rest_out(&rest_stream);
      while (const uint32_t item_tag = in.ReadTag()) {
        if (item_tag != sub_tag) {
          if (!WireFormatLite::SkipField(&in, item_tag, &rest_out)) {
            return Malformed("item field");
          }
          continue;
        }
        uint32_t sub_bytes = 0;
        if (!in.ReadVarint32(&sub_bytes)) return Malformed("sub-message length");
        if (static_cast<int64_t>(sub_bytes) > in.BytesUntilLimit()) {
          return Malformed("sub-message beyond its item");
        }
        const CodedInputStream::Limit sub_limit = in.PushLimit(sub_bytes);
        sub.clear();
        {
          StringOutputStream sub_stream(&sub);
          CodedOutputStream sub_out(&sub_stream);
          while (const uint32_t sub_field_tag = in.ReadTag()) {
            if (sub_field_tag != payload_tag) {
              if (!WireFormatLite::SkipField(&in, sub_field_tag, &sub_out)) {
                return Malformed("sub-message field");
              }
              continue;
            }
            uint32_t n = 0;
            if (!in.ReadVarint32(&n)) return Malformed("payload length");
            if (n > max_payload_bytes) return Malformed("payload too large");
            if (static_cast<int64_t>(n) > in.BytesUntilLimit()) {
              return Malformed("payload beyond its message");
            }
            // A repeated payload field replaces the earlier one (as for bytes).
            payload->resize(n);
            if (n > 0 && !in.ReadRaw(payload->data(), static_cast<int>(n))) {
              return Malformed("payload truncated");
            }
          }
        }
        if (!in.ConsumedEntireMessage()) return Malformed("sub-message end");
        in.PopLimit(sub_limit);
        rest_out.WriteTag(sub_tag);
        rest_out.WriteVarint32(static_cast<uint32_t>(sub.size()));
        rest_out.WriteString(sub);
      }
    }
    if (!in.ConsumedEntireMessage()) return Malformed("item end");
    in.PopLimit(item_limit);
    if (!message->ParseFromString(rest)) return Malformed("item");
  }
  if (!in.ConsumedEntireMessage() ||
      static_cast<size_t>(in.CurrentPosition()) != total) {
    return Malformed("batch end");
  }
  return absl::OkStatus();
}

}  // namespace vadapter
