#include "interconnect/slices.h"

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace interconnect {

using google::protobuf::internal::WireFormatLite;

namespace {

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  return google::protobuf::io::CodedOutputStream::VarintSize64(v);
}

}  // namespace

uint32_t LengthDelimitedTag(int field) {
  return WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
}

size_t LengthDelimitedSize(int field, size_t length) {
  return VarintSize(LengthDelimitedTag(field)) + VarintSize(length) + length;
}

void AppendFieldHead(int field, size_t length, std::string* out) {
  AppendVarint(LengthDelimitedTag(field), out);
  AppendVarint(length, out);
}

void AppendMessage(const google::protobuf::MessageLite& message, size_t bytes,
                   std::string* out) {
  const size_t at = out->size();
  out->resize(at + bytes);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&(*out)[at]));
}

void SliceBuilder::FlushHeads() {
  if (heads_.empty()) return;
  slices_.push_back(OwningSlice(std::move(heads_)));
  heads_ = std::string();
}

grpc::ByteBuffer SliceBuilder::Build() {
  FlushHeads();
  return grpc::ByteBuffer(slices_.data(), slices_.size());
}

}  // namespace interconnect
