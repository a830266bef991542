// Building interconnect stream messages from gRPC slices without copying
// large buffers (the proxy's Exchange payloads, the NVLOG mirror's records).
//
// A SliceBuilder collects a message's bytes in order: small runs (protobuf
// heads, tags, lengths, small payloads) are copied together into shared
// slices; a large buffer becomes a slice of its own that keeps the buffer's
// owner alive until gRPC lets go of it (after the bytes are on the wire).
#ifndef INTERCONNECT_SLICES_H_
#define INTERCONNECT_SLICES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace interconnect {

// Protobuf encoding pieces for messages written by hand around payloads
// that travel as slices of their own.
//
// The protobuf tag of a length-delimited field.
uint32_t LengthDelimitedTag(int field);
// Bytes of a length-delimited field whose content is length bytes (tag,
// length, content).
size_t LengthDelimitedSize(int field, size_t length);
// Appends a length-delimited field's tag and length; its content follows.
void AppendFieldHead(int field, size_t length, std::string* out);
// Appends message's encoding. bytes is message.ByteSizeLong(), computed by
// the caller for the enclosing length (the serialization reuses the sizes it
// cached, so the message is sized once).
void AppendMessage(const google::protobuf::MessageLite& message, size_t bytes,
                   std::string* out);

// A slice over [data, data + size) that keeps owner (moved in) until gRPC
// releases the slice.
template <typename Owner>
grpc::Slice SliceKeeping(Owner owner, const void* data, size_t size) {
  auto* kept = new Owner(std::move(owner));
  return grpc::Slice(
      const_cast<void*>(data), size,
      [](void* p) { delete static_cast<Owner*>(p); }, kept);
}

// A slice over container's bytes (a std::vector<uint8_t> or std::string,
// moved in) that owns it.
template <typename Container>
grpc::Slice OwningSlice(Container container) {
  auto* owned = new Container(std::move(container));
  return grpc::Slice(
      owned->data(), owned->size(),
      [](void* p) { delete static_cast<Container*>(p); }, owned);
}

class SliceBuilder {
 public:
  // Buffers up to this size are copied rather than given a slice of their own.
  static constexpr size_t kInlineBytes = 16 * 1024;

  // Copies bytes to the end of the message.
  void Append(absl::string_view bytes) {
    heads_.append(bytes.data(), bytes.size());
    bytes_ += bytes.size();
  }
  // Adds container's bytes (a std::vector<uint8_t> or std::string, moved in):
  // copied when small, else a slice owning it.
  template <typename Container>
  void AppendContainer(Container container) {
    if (container.size() <= kInlineBytes) {
      Append(AsView(container.data(), container.size()));
      return;
    }
    FlushHeads();
    bytes_ += container.size();
    slices_.push_back(OwningSlice(std::move(container)));
  }
  // Adds [data, data + size), which owner keeps alive: copied when small,
  // else a slice keeping owner.
  template <typename Owner>
  void AppendShared(Owner owner, const void* data, size_t size) {
    if (size <= kInlineBytes) {
      Append(AsView(data, size));
      return;
    }
    FlushHeads();
    bytes_ += size;
    slices_.push_back(SliceKeeping(std::move(owner), data, size));
  }

  // Bytes added so far.
  size_t bytes() const { return bytes_; }
  // The message of everything added so far; the builder may be used again
  // (its slices are shared with the buffer).
  grpc::ByteBuffer Build();

 private:
  static absl::string_view AsView(const void* data, size_t size) {
    return absl::string_view(static_cast<const char*>(data), size);
  }
  void FlushHeads();

  std::string heads_;  // small runs not yet in slices_
  std::vector<grpc::Slice> slices_;
  size_t bytes_ = 0;
};

}  // namespace interconnect

#endif  // INTERCONNECT_SLICES_H_
