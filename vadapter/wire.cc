#include "vadapter/wire.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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

using interconnect::LengthDelimitedTag;

absl::Status Malformed(const char* what, const char* how) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed interconnect message: ", what, " ", how));
}

}  // namespace

WireItem EncodeItem(const google::protobuf::MessageLite& message,
                    PayloadField field, std::vector<uint8_t> payload) {
  WireItem item;
  // Sizes once (AppendMessage reuses the cached sizes).
  const size_t message_bytes = message.ByteSizeLong();
  const size_t sub_bytes =
      interconnect::LengthDelimitedSize(field.payload_field, payload.size());
  const size_t item_bytes =
      message_bytes +
      (payload.empty() ? 0
                       : interconnect::LengthDelimitedSize(field.message_field, sub_bytes));
  std::string& head = item.head;
  interconnect::AppendFieldHead(kItemsField, item_bytes, &head);
  interconnect::AppendMessage(message, message_bytes, &head);
  // An empty payload is left out (proto3 leaves empty bytes out too).
  if (payload.empty()) return item;
  interconnect::AppendFieldHead(field.message_field, sub_bytes, &head);
  interconnect::AppendFieldHead(field.payload_field, payload.size(), &head);
  item.payload = std::move(payload);
  return item;
}

void WireBatch::Add(WireItem item) {
  items_++;
  builder_.Append(item.head);
  builder_.AppendContainer(std::move(item.payload));
}

const grpc::ByteBuffer& WireBatch::Seal() {
  buffer_ = builder_.Build();
  return buffer_;
}

namespace {

// Reads the protobuf fields of one message after another, each nested message
// bounded by its declared length and that length by what is really left.
class FieldReader {
 public:
  FieldReader(google::protobuf::io::ZeroCopyInputStream* stream, size_t total)
      : in_(stream), total_(total) {}

  CodedInputStream& in() { return in_; }

  // Reads the fields up to the current limit (or the end of the input):
  // those with tag go to special (positioned after the tag), the rest are
  // copied to out (or dropped when out is null). what names the message.
  absl::Status ReadFields(uint32_t tag, CodedOutputStream* out, const char* what,
                          absl::FunctionRef<absl::Status()> special) {
    while (const uint32_t t = in_.ReadTag()) {
      if (t == tag) {
        if (absl::Status s = special(); !s.ok()) return s;
      } else if (!(out != nullptr ? WireFormatLite::SkipField(&in_, t, out)
                                  : WireFormatLite::SkipField(&in_, t))) {
        return Malformed(what, "field");
      }
    }
    if (!in_.ConsumedEntireMessage()) return Malformed(what, "end");
    return absl::OkStatus();
  }

  // Reads a length-delimited field's length: at most max, and within what is
  // left of the enclosing message.
  absl::Status ReadLength(uint32_t max, const char* what, uint32_t* n) {
    if (!in_.ReadVarint32(n)) return Malformed(what, "length");
    if (*n > max) return Malformed(what, "too large");
    const int until_limit = in_.BytesUntilLimit();
    const size_t left = until_limit >= 0
                            ? static_cast<size_t>(until_limit)
                            : total_ - static_cast<size_t>(in_.CurrentPosition());
    if (*n > left) return Malformed(what, "beyond its message");
    return absl::OkStatus();
  }

  // Reads a nested message of a length-delimited field: body runs with the
  // input limited to it.
  absl::Status ReadNested(const char* what, absl::FunctionRef<absl::Status()> body) {
    uint32_t n = 0;
    if (absl::Status s = ReadLength(UINT32_MAX, what, &n); !s.ok()) return s;
    const CodedInputStream::Limit limit = in_.PushLimit(static_cast<int>(n));
    if (absl::Status s = body(); !s.ok()) return s;
    in_.PopLimit(limit);
    return absl::OkStatus();
  }

  // Appends the next n bytes of the input to out (n already checked against
  // what is left by ReadLength).
  absl::Status AppendRaw(uint32_t n, std::vector<uint8_t>* out) {
    while (n > 0) {
      const void* data = nullptr;
      int size = 0;
      if (!in_.GetDirectBufferPointer(&data, &size) || size <= 0) {
        return Malformed("payload", "truncated");
      }
      const uint32_t take = std::min(n, static_cast<uint32_t>(size));
      const auto* bytes = static_cast<const uint8_t*>(data);
      out->insert(out->end(), bytes, bytes + take);
      if (!in_.Skip(static_cast<int>(take))) return Malformed("payload", "truncated");
      n -= take;
    }
    return absl::OkStatus();
  }

  bool AtEnd() const {
    return static_cast<size_t>(in_.CurrentPosition()) == total_;
  }

 private:
  CodedInputStream in_;
  const size_t total_;
};

}  // namespace

absl::Status DecodeBatchItems(
    grpc::ByteBuffer* buffer, PayloadField field, size_t max_payload_bytes,
    absl::FunctionRef<google::protobuf::MessageLite*(std::vector<uint8_t>** payload)>
        next_item) {
  grpc::ProtoBufferReader stream(buffer);
  if (!stream.status().ok()) return Malformed("buffer", "unreadable");
  FieldReader reader(&stream, buffer->Length());
  const uint32_t sub_tag = LengthDelimitedTag(field.message_field);
  const uint32_t payload_tag = LengthDelimitedTag(field.payload_field);
  const uint32_t max_payload =
      static_cast<uint32_t>(std::min<size_t>(max_payload_bytes, UINT32_MAX));
  std::string rest, sub;

  // The payload field: read straight into the item's payload (a repeated
  // payload field replaces the earlier one, as for bytes).
  std::vector<uint8_t>* payload = nullptr;
  auto read_payload = [&]() -> absl::Status {
    uint32_t n = 0;
    if (absl::Status s = reader.ReadLength(max_payload, "payload", &n); !s.ok()) {
      return s;
    }
    // Appended from gRPC's slices into reserved room: a resize would first
    // zero-fill the whole payload only for the copy to overwrite it.
    payload->clear();
    payload->reserve(n);
    return reader.AppendRaw(n, payload);
  };
  // The sub-message: its other fields are copied to sub, then sub goes into
  // rest as one occurrence of the field.
  CodedOutputStream* rest_out = nullptr;
  auto read_sub = [&]() -> absl::Status {
    return reader.ReadNested("sub-message", [&]() -> absl::Status {
      sub.clear();
      {
        StringOutputStream sub_stream(&sub);
        CodedOutputStream sub_out(&sub_stream);
        if (absl::Status s = reader.ReadFields(payload_tag, &sub_out,
                                               "sub-message", read_payload);
            !s.ok()) {
          return s;
        }
      }
      rest_out->WriteTag(sub_tag);
      rest_out->WriteVarint32(static_cast<uint32_t>(sub.size()));
      rest_out->WriteString(sub);
      return absl::OkStatus();
    });
  };
  // An item: every field but the payload copied to rest, which protobuf
  // parses into the item's message.
  auto read_item = [&]() -> absl::Status {
    return reader.ReadNested("item", [&]() -> absl::Status {
      google::protobuf::MessageLite* message = next_item(&payload);
      rest.clear();
      {
        StringOutputStream rest_stream(&rest);
        CodedOutputStream out(&rest_stream);
        rest_out = &out;
        if (absl::Status s = reader.ReadFields(sub_tag, &out, "item", read_sub);
            !s.ok()) {
          return s;
        }
      }
      if (!message->ParseFromString(rest)) return Malformed("item", "message");
      return absl::OkStatus();
    });
  };
  // Fields of the batch other than its items are skipped, as protobuf skips
  // unknown fields.
  if (absl::Status s = reader.ReadFields(LengthDelimitedTag(kItemsField), nullptr,
                                         "batch", read_item);
      !s.ok()) {
    return s;
  }
  if (!reader.AtEnd()) return Malformed("batch", "end");
  return absl::OkStatus();
}

}  // namespace vadapter
