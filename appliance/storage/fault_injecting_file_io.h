// FaultInjectingFileIo: a FileIo wrapper that injects programmable faults.
//
// Tests (and fault-injection drills) wrap a real engine with it to make the layer
// above meet failing media, full file systems, short transfers and slow I/O, in
// the style of RocksDB's FaultInjectionTestFS. Without rules it forwards every
// call unchanged. Rules:
//  - FailNext: the next N matching operations (or every one) fail with -error
//    without touching the file; the completion still runs on an I/O thread.
//  - ShortenNext: the next N matching reads/writes really transfer at most
//    max_bytes through the inner FileIo and report that short count.
//  - SetLatency: every asynchronous operation is held back a random time in
//    [min, max] before it goes to the inner FileIo, so operations submitted
//    together may complete in any order.
// A rule may be limited to operations overlapping a byte range (FDataSync has
// no range and matches any rule for kSync). Rules are checked in the order they
// were added; the first one that matches and still has a count fires.
//
// Thread-safe. Optionally records what reached the inner FileIo and what
// completed, for tests that check ordering.
#ifndef APPLIANCE_STORAGE_FAULT_INJECTING_FILE_IO_H_
#define APPLIANCE_STORAGE_FAULT_INJECTING_FILE_IO_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appliance/storage/file_io.h"

namespace appliance::storage {

enum class FileIoOp { kRead, kWrite, kSync, kPunch };

// Bytes [offset, offset + length). The default covers everything.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = std::numeric_limits<uint64_t>::max();
};

// One operation seen by FaultInjectingFileIo, when event recording is on.
struct FileIoEvent {
  enum class Kind {
    kSubmitted,  // handed to the inner FileIo (after any latency)
    kCompleted,  // completion about to run (result is what the caller gets)
  };
  Kind kind = Kind::kSubmitted;
  FileIoOp op = FileIoOp::kRead;
  uint64_t offset = 0;  // 0 for kSync
  uint64_t length = 0;  // bytes asked of the inner FileIo; 0 for kSync
  int64_t result = 0;   // kCompleted only
  bool injected = false;  // the result came from a FailNext rule
};

class FaultInjectingFileIo : public FileIo {
 public:
  // Count meaning "every matching operation from now on".
  static constexpr int kForever = -1;

  explicit FaultInjectingFileIo(std::unique_ptr<FileIo> inner);
  // Sends operations still held back by latency to the inner FileIo at once,
  // then destroys it (which waits for everything in flight).
  ~FaultInjectingFileIo() override;

  FaultInjectingFileIo(const FaultInjectingFileIo&) = delete;
  FaultInjectingFileIo& operator=(const FaultInjectingFileIo&) = delete;

  // Makes the next count operations of kind op that overlap range fail with
  // -error (a positive errno such as EIO or ENOSPC).
  void FailNext(FileIoOp op, int error, int count = 1, ByteRange range = {});
  // Makes the next count reads or writes that overlap range transfer at most
  // max_bytes (>= 1) and report the short count.
  void ShortenNext(FileIoOp op, uint64_t max_bytes, int count = 1,
                   ByteRange range = {});
  // Holds every later asynchronous operation back by a uniformly random delay
  // in [min, max]. Zero (the default) forwards at once.
  void SetLatency(absl::Duration min, absl::Duration max);
  // Removes every rule and the latency.
  void ClearFaults();

  // Starts or stops recording events (off by default; memory grows while on).
  void RecordEvents(bool on);
  std::vector<FileIoEvent> events() const;
  // How many times a FailNext or ShortenNext rule has fired.
  int faults_fired() const;

  absl::string_view name() const override { return "fault_injecting"; }
  FileIo& inner() { return *inner_; }

  void PRead(int fd, absl::Span<uint8_t> buf, uint64_t offset,
             Completion done) override;
  void PWrite(int fd, absl::Span<const uint8_t> data, uint64_t offset,
              Completion done) override;
  void FDataSync(int fd, Completion done) override;
  void Post(Completion done) override;
  int PunchHole(int fd, uint64_t offset, uint64_t length) override;
  int64_t SeekData(int fd, uint64_t offset) override;
  int64_t SeekHole(int fd, uint64_t offset) override;

 private:
  struct Rule {
    FileIoOp op;
    bool shorten;        // ShortenNext rather than FailNext
    int error;           // FailNext
    uint64_t max_bytes;  // ShortenNext
    int remaining;       // kForever or > 0
    ByteRange range;
  };
  // What the first matching rule says to do with one operation.
  struct Decision {
    int error = 0;  // > 0: fail with -error
    uint64_t max_bytes = std::numeric_limits<uint64_t>::max();
  };
  using Work = absl::AnyInvocable<void() &&>;

  Decision Decide(FileIoOp op, uint64_t offset, uint64_t length);
  // Runs dispatch now or, with latency set, later on the delay thread.
  void Dispatch(Work dispatch);
  // Wraps done so the completion is recorded before it runs.
  Completion Recorded(FileIoOp op, uint64_t offset, uint64_t length,
                      bool injected, Completion done);
  void Record(FileIoEvent event);
  void DelayLoop();

  std::unique_ptr<FileIo> inner_;

  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
  int faults_fired_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration min_latency_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Duration max_latency_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  bool record_events_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<FileIoEvent> events_ ABSL_GUARDED_BY(mu_);
  // Operations held back by latency, by due time then arrival.
  std::multimap<std::pair<absl::Time, uint64_t>, Work> delayed_
      ABSL_GUARDED_BY(mu_);
  uint64_t delayed_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread delay_thread_;
};

}  // namespace appliance::storage

#endif  // APPLIANCE_STORAGE_FAULT_INJECTING_FILE_IO_H_
