// The write side of one Proxy.Exchange stream, on either end. gRPC takes one
// message at a time per stream; a message handed over while another is in
// flight has to wait for OnWriteDone. Instead of a queue of single messages,
// everything queued while a write is in flight goes out as the next write, in
// one batch (one EnvelopeBatch or CompletionBatch message, vadapter/wire.h):
// at queue depth 32 a round trip then costs a few gRPC messages instead of 32,
// and the first message of an idle stream still leaves at once (no added
// latency).
//
// A sender that knows more items follow at once (a DeferScope is open: the
// iSCSI event loop is still handling the commands of one round) adds with
// hold: an idle stream then gathers items in its first batch too, and
// Release() hands that batch over when the round ends.
//
// A batch stays under max_batch_bytes (its items' encoded sizes), so it fits
// the interconnect's message limit; a single item larger than that goes alone.
//
// Not thread-safe: the stream's lock guards it.
#ifndef VADAPTER_WRITE_BATCHER_H_
#define VADAPTER_WRITE_BATCHER_H_

#include <cstddef>
#include <deque>
#include <utility>

#include "vadapter/wire.h"

namespace vadapter {

class WriteBatcher {
 public:
  explicit WriteBatcher(size_t max_batch_bytes)
      : max_batch_bytes_(max_batch_bytes) {}

  // Queues item. Returns the batch to hand to StartWrite now, or nullptr when
  // a write is already in flight or hold is set (item goes in a later batch,
  // or in the one Release() returns).
  WireBatch* Add(WireItem item, bool hold = false) {
    // The in-flight batch is never appended to.
    const bool back_in_flight = in_flight_ && queue_.size() == 1;
    if (queue_.empty() || back_in_flight ||
        queue_.back().bytes() + item.size() > max_batch_bytes_) {
      queue_.emplace_back();
    }
    queue_.back().Add(std::move(item));
    return hold ? nullptr : Release();
  }

  // Returns the front batch to hand to StartWrite now, or nullptr when a
  // write is in flight or nothing waits.
  WireBatch* Release() {
    if (in_flight_ || queue_.empty()) return nullptr;
    in_flight_ = true;
    return &queue_.front();
  }

  // The in-flight write finished (ok: it reached gRPC's transport). Returns
  // the next batch to write, or nullptr when nothing waits (or !ok: the call
  // is over and what waited is dropped).
  WireBatch* WriteDone(bool ok) {
    if (in_flight_) queue_.pop_front();
    in_flight_ = false;
    if (!ok) queue_.clear();
    return Release();
  }

  // Drops everything not yet handed to gRPC (the in-flight batch stays until
  // WriteDone).
  void DropQueued() { queue_.resize(in_flight_ ? 1 : 0); }

  // Whether a write is in flight (the front batch).
  bool writing() const { return in_flight_; }
  // Items queued or in flight.
  size_t items() const {
    size_t n = 0;
    for (const WireBatch& b : queue_) n += b.items_size();
    return n;
  }

 private:
  const size_t max_batch_bytes_;
  // Front: in flight when in_flight_; the rest wait.
  std::deque<WireBatch> queue_;
  bool in_flight_ = false;
};

}  // namespace vadapter

#endif  // VADAPTER_WRITE_BATCHER_H_
