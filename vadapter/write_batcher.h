// The write side of one Proxy.Exchange stream, on either end. gRPC takes one
// message at a time per stream; a message handed over while another is in
// flight has to wait for OnWriteDone. Instead of a queue of single messages,
// everything queued while a write is in flight goes out as the next write, in
// one batch (EnvelopeBatch or CompletionBatch): at queue depth 32 a round trip
// then costs a few gRPC messages instead of 32, and the first message of an
// idle stream still leaves at once (no added latency).
//
// A batch stays under max_batch_bytes (its items' encoded sizes), so it fits
// the interconnect's message limit; a single item larger than that goes alone.
//
// Not thread-safe: the stream's lock guards it. Batch is a protobuf message
// with `repeated Item items`.
#ifndef VADAPTER_WRITE_BATCHER_H_
#define VADAPTER_WRITE_BATCHER_H_

#include <cstddef>
#include <deque>
#include <utility>

namespace vadapter {

template <typename Batch>
class WriteBatcher {
 public:
  explicit WriteBatcher(size_t max_batch_bytes)
      : max_batch_bytes_(max_batch_bytes) {}

  // Queues item. Returns the batch to hand to StartWrite now, or nullptr when
  // a write is already in flight (item goes in a later batch).
  template <typename Item>
  Batch* Add(Item item) {
    // Encoded size inside the batch: the item, its tag and length prefix.
    const size_t bytes = item.ByteSizeLong() + 11;
    const bool back_is_in_flight = writing_ && queue_.size() == 1;
    if (queue_.empty() || back_is_in_flight ||
        back_bytes_ + bytes > max_batch_bytes_) {
      queue_.emplace_back();
      back_bytes_ = 0;
    }
    *queue_.back().add_items() = std::move(item);
    back_bytes_ += bytes;
    items_++;
    if (writing_) return nullptr;
    writing_ = true;
    return &queue_.front();
  }

  // The in-flight write finished (ok: it reached gRPC's transport). Returns
  // the next batch to write, or nullptr when nothing waits (or !ok: the call
  // is over and what waited is dropped).
  Batch* WriteDone(bool ok) {
    if (!queue_.empty()) {
      items_ -= queue_.front().items_size();
      queue_.pop_front();
    }
    if (!ok) Clear();
    if (queue_.empty()) {
      writing_ = false;
      return nullptr;
    }
    return &queue_.front();
  }

  // Drops everything not yet handed to gRPC (the in-flight batch stays until
  // WriteDone).
  void DropQueued() {
    while (queue_.size() > (writing_ ? 1u : 0u)) {
      items_ -= queue_.back().items_size();
      queue_.pop_back();
    }
  }

  bool writing() const { return writing_; }
  // Items queued or in flight.
  size_t items() const { return items_; }

 private:
  void Clear() {
    queue_.clear();
    items_ = 0;
  }

  const size_t max_batch_bytes_;
  std::deque<Batch> queue_;  // front: in flight while writing_
  size_t back_bytes_ = 0;
  size_t items_ = 0;
  bool writing_ = false;
};

}  // namespace vadapter

#endif  // VADAPTER_WRITE_BATCHER_H_
