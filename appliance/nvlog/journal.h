// Journal: puts the NVLOG on a node's write path (ARCHITECTURE.md §2
// "Mirrored write").
//
// Every LUN this node serves gets its BlockStore wrapped (Wrap()). A write
// through the wrapper is appended to the Nvlog (which mirrors it into the
// partner's memory) and written to the backing store at the same time; the
// host is acknowledged when both are done:
//   - mirrored: the partner holds the entry and its commit mark, so a
//     takeover replays it if this node dies before the data is durable;
//   - unmirrored (interconnect down, partner dead): the partner cannot
//     replay it, so the wrapper makes it durable first (Flush after the
//     write) and counts it.
// A write is never acknowledged when its store write failed (the host gets
// the error) or when the log shut down before mirroring it.
//
// Retire: a flusher thread periodically (Options::flush_interval, sooner when
// Options::flush_bytes of written data wait) takes the entries whose store
// write has finished, flushes (fdatasync) every store they went to, and only
// then retires them, here and, through the next batch's retire mark, on the
// partner. RetireAll() does one such pass at once and waits for it (giveback,
// UNMAP ordering, shutdown).
//
// UNMAP is not journaled: it first waits for a retire pass (so no earlier
// write of that range can be replayed over it later), then deallocates and
// flushes before completing. Reads go straight to the store (its writes are
// issued at once, so reads see them).
#ifndef APPLIANCE_NVLOG_JOURNAL_H_
#define APPLIANCE_NVLOG_JOURNAL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/nvlog/nvlog.h"
#include "blockstore/block_store.h"

namespace nvlog {

class Journal {
 public:
  struct Options {
    // A retire pass runs this often while written entries wait...
    absl::Duration flush_interval = absl::Milliseconds(50);
    // ...and at once when this many data bytes wait.
    size_t flush_bytes = 8u * 1024 * 1024;
  };

  struct Stats {
    uint64_t writes = 0;             // journaled writes completed
    uint64_t mirrored_writes = 0;    // acknowledged after the partner held them
    uint64_t unmirrored_writes = 0;  // made durable before acknowledging
    uint64_t failed_writes = 0;      // store or log error reported to the host
    uint64_t retire_passes = 0;
    uint64_t retired = 0;
    uint64_t flush_errors = 0;       // entries stay held after a failed flush
    uint64_t unmaps = 0;
  };

  // log must outlive the journal. Starts the flusher thread.
  Journal(Nvlog& log, Options options);
  explicit Journal(Nvlog& log) : Journal(log, Options()) {}
  // Runs a last retire pass and stops the flusher. Every wrapped store must
  // be gone (no write in flight) by then.
  ~Journal();

  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // The store to give the SCSI engine for LUN lun: journals writes to inner.
  std::shared_ptr<blockstore::BlockStore> Wrap(
      uint64_t lun, std::shared_ptr<blockstore::BlockStore> inner);

  // Flushes every store written since the last pass and retires every entry
  // whose write had finished when it was called; returns the flush error, if
  // any (the entries then stay held).
  absl::Status RetireAll();
  // Asynchronous form: done runs on the flusher thread after such a pass.
  void RequestRetire(std::function<void(absl::Status)> done);

  // Writes to lun accepted and not yet answered (giveback waits for 0).
  int InFlight(uint64_t lun) const;
  // Blocks until InFlight(lun) == 0 or timeout passes; returns whether it got
  // there.
  bool WaitIdle(uint64_t lun, absl::Duration timeout) const;

  Stats stats() const;
  Nvlog& log() { return log_; }

 private:
  class Store;
  struct Written {
    uint64_t sequence;
    size_t bytes;
    std::shared_ptr<blockstore::BlockStore> store;  // kept open until flushed
  };

  // The store write of sequence finished (successfully or not).
  void WriteFinished(uint64_t sequence, size_t bytes,
                     std::shared_ptr<blockstore::BlockStore> store);
  void Count(bool ok, bool mirrored);
  void Started(uint64_t lun);
  void Ended(uint64_t lun);
  void FlusherLoop();
  // One pass over batch; returns the first flush error.
  absl::Status RetirePass(std::vector<Written> batch);

  Nvlog& log_;
  const Options options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Written> written_ ABSL_GUARDED_BY(mu_);
  size_t written_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void(absl::Status)>> requests_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, int> in_flight_ ABSL_GUARDED_BY(mu_);
  std::thread flusher_;
};

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_JOURNAL_H_
