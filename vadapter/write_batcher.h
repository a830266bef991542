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
    // With one batch queued, that batch is in flight: never append to it.
    if (queue_.size() <= 1 ||
        back_bytes_ + bytes > max_batch_bytes_) {
      queue_.emplace_back();
      back_bytes_ = 0;
    }
    *queue_.back().add_items() = std::move(item);
    back_bytes_ += bytes;
    return queue_.size() == 1 ? &queue_.front() : nullptr;
  }

  // The in-flight write finished (ok: it reached gRPC's transport). Returns
  // the next batch to write, or nullptr when nothing waits (or !ok: the call
  // is over and what waited is dropped).
  Batch* WriteDone(bool ok) {
    if (!queue_.empty()) queue_.pop_front();
    if (!ok) queue_.clear();
    return queue_.empty() ? nullptr : &queue_.front();
  }

  // Drops everything not yet handed to gRPC (the in-flight batch stays until
  // WriteDone).
  void DropQueued() {
    if (!queue_.empty()) queue_.resize(1);
  }

  // Whether a write is in flight (the front batch).
  bool writing() const { return !queue_.empty(); }
  // Items queued or in flight.
  size_t items() const {
    size_t n = 0;
    for (const Batch& b : queue_) n += b.items_size();
    return n;
  }

 private:
  const size_t max_batch_bytes_;
  // Front: in flight; the rest wait. Empty: no write in flight.
  std::deque<Batch> queue_;
  size_t back_bytes_ = 0;  // of queue_.back()
};

}  // namespace vadapter

#endif  // VADAPTER_WRITE_BATCHER_H_
