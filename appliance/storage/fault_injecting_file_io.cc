#include "appliance/storage/fault_injecting_file_io.h"

#include <algorithm>
#include <utility>

namespace appliance::storage {
namespace {

uint64_t SaturatingEnd(uint64_t offset, uint64_t length) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  return length > max - offset ? max : offset + length;
}

bool Overlaps(const ByteRange& range, uint64_t offset, uint64_t length) {
  const uint64_t end = SaturatingEnd(offset, std::max<uint64_t>(length, 1));
  return offset < SaturatingEnd(range.offset, range.length) &&
         range.offset < end;
}

}  // namespace

FaultInjectingFileIo::FaultInjectingFileIo(std::unique_ptr<FileIo> inner)
    : inner_(std::move(inner)) {
  delay_thread_ = std::thread([this] { DelayLoop(); });
}

FaultInjectingFileIo::~FaultInjectingFileIo() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  delay_thread_.join();
  // Before the members go: completions of the inner FileIo record into them.
  inner_.reset();
}

void FaultInjectingFileIo::FailNext(FileIoOp op, int error, int count,
                                    ByteRange range) {
  absl::MutexLock lock(&mu_);
  rules_.push_back(Rule{op, /*shorten=*/false, error, 0, count, range});
}

void FaultInjectingFileIo::ShortenNext(FileIoOp op, uint64_t max_bytes,
                                       int count, ByteRange range) {
  absl::MutexLock lock(&mu_);
  rules_.push_back(Rule{op, /*shorten=*/true, 0, std::max<uint64_t>(max_bytes, 1),
                        count, range});
}

void FaultInjectingFileIo::SetLatency(absl::Duration min, absl::Duration max) {
  absl::MutexLock lock(&mu_);
  min_latency_ = min;
  max_latency_ = std::max(min, max);
}

void FaultInjectingFileIo::ClearFaults() {
  absl::MutexLock lock(&mu_);
  rules_.clear();
  min_latency_ = max_latency_ = absl::ZeroDuration();
}

void FaultInjectingFileIo::RecordEvents(bool on) {
  absl::MutexLock lock(&mu_);
  record_events_ = on;
}

std::vector<FileIoEvent> FaultInjectingFileIo::events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

int FaultInjectingFileIo::faults_fired() const {
  absl::MutexLock lock(&mu_);
  return faults_fired_;
}

FaultInjectingFileIo::Decision FaultInjectingFileIo::Decide(FileIoOp op,
                                                            uint64_t offset,
                                                            uint64_t length) {
  absl::MutexLock lock(&mu_);
  Decision decision;
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->op != op || it->remaining == 0) continue;
    if (op != FileIoOp::kSync && !Overlaps(it->range, offset, length)) continue;
    if (it->shorten) {
      decision.max_bytes = it->max_bytes;
    } else {
      decision.error = it->error;
    }
    ++faults_fired_;
    if (it->remaining != kForever && --it->remaining == 0) rules_.erase(it);
    break;
  }
  return decision;
}

void FaultInjectingFileIo::Record(FileIoEvent event) {
  absl::MutexLock lock(&mu_);
  if (record_events_) events_.push_back(event);
}

FileIo::Completion FaultInjectingFileIo::Recorded(FileIoOp op, uint64_t offset,
                                                  uint64_t length,
                                                  bool injected,
                                                  Completion done) {
  return [this, op, offset, length, injected,
          done = std::move(done)](int64_t result) mutable {
    FileIoEvent event;
    event.kind = FileIoEvent::Kind::kCompleted;
    event.op = op;
    event.offset = offset;
    event.length = length;
    event.result = result;
    event.injected = injected;
    Record(event);
    std::move(done)(result);
  };
}

void FaultInjectingFileIo::Dispatch(Work dispatch) {
  {
    absl::MutexLock lock(&mu_);
    if (max_latency_ > absl::ZeroDuration() && !stopping_) {
      const int64_t min_ns = absl::ToInt64Nanoseconds(min_latency_);
      const int64_t max_ns = absl::ToInt64Nanoseconds(max_latency_);
      const int64_t delay_ns =
          absl::Uniform<int64_t>(absl::IntervalClosed, bitgen_, min_ns, max_ns);
      delayed_.emplace(std::make_pair(absl::Now() + absl::Nanoseconds(delay_ns),
                                      delayed_seq_++),
                       std::move(dispatch));
      return;
    }
  }
  std::move(dispatch)();
}

void FaultInjectingFileIo::DelayLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (delayed_.empty()) {
      if (stopping_) return;
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !delayed_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      continue;
    }
    const absl::Time due = delayed_.begin()->first.first;
    if (!stopping_ && absl::Now() < due) {
      // Wake at the due time, or earlier if something due sooner arrives.
      auto earlier = [this, due]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || delayed_.empty() ||
               delayed_.begin()->first.first < due;
      };
      mu_.AwaitWithDeadline(absl::Condition(&earlier), due);
      continue;
    }
    Work work = std::move(delayed_.begin()->second);
    delayed_.erase(delayed_.begin());
    mu_.Unlock();
    std::move(work)();  // may block on the inner FileIo's backpressure
    mu_.Lock();
  }
}

void FaultInjectingFileIo::PRead(int fd, absl::Span<uint8_t> buf,
                                 uint64_t offset, Completion done) {
  Dispatch([this, fd, buf, offset, done = std::move(done)]() mutable {
    const Decision d = Decide(FileIoOp::kRead, offset, buf.size());
    if (d.error > 0) {
      inner_->Post(Recorded(FileIoOp::kRead, offset, buf.size(), true,
                            [done = std::move(done), e = d.error](
                                int64_t) mutable { std::move(done)(-e); }));
      return;
    }
    absl::Span<uint8_t> part = buf.subspan(0, std::min<uint64_t>(buf.size(), d.max_bytes));
    Record({FileIoEvent::Kind::kSubmitted, FileIoOp::kRead, offset, part.size(),
            0, false});
    inner_->PRead(fd, part, offset,
                  Recorded(FileIoOp::kRead, offset, part.size(), false,
                           std::move(done)));
  });
}

void FaultInjectingFileIo::PWrite(int fd, absl::Span<const uint8_t> data,
                                  uint64_t offset, Completion done) {
  Dispatch([this, fd, data, offset, done = std::move(done)]() mutable {
    const Decision d = Decide(FileIoOp::kWrite, offset, data.size());
    if (d.error > 0) {
      inner_->Post(Recorded(FileIoOp::kWrite, offset, data.size(), true,
                            [done = std::move(done), e = d.error](
                                int64_t) mutable { std::move(done)(-e); }));
      return;
    }
    absl::Span<const uint8_t> part =
        data.subspan(0, std::min<uint64_t>(data.size(), d.max_bytes));
    Record({FileIoEvent::Kind::kSubmitted, FileIoOp::kWrite, offset,
            part.size(), 0, false});
    inner_->PWrite(fd, part, offset,
                   Recorded(FileIoOp::kWrite, offset, part.size(), false,
                            std::move(done)));
  });
}

void FaultInjectingFileIo::FDataSync(int fd, Completion done) {
  Dispatch([this, fd, done = std::move(done)]() mutable {
    const Decision d = Decide(FileIoOp::kSync, 0, 0);
    if (d.error > 0) {
      inner_->Post(Recorded(FileIoOp::kSync, 0, 0, true,
                            [done = std::move(done), e = d.error](
                                int64_t) mutable { std::move(done)(-e); }));
      return;
    }
    Record({FileIoEvent::Kind::kSubmitted, FileIoOp::kSync, 0, 0, 0, false});
    inner_->FDataSync(fd, Recorded(FileIoOp::kSync, 0, 0, false, std::move(done)));
  });
}

void FaultInjectingFileIo::Post(Completion done) {
  inner_->Post(std::move(done));
}

int FaultInjectingFileIo::PunchHole(int fd, uint64_t offset, uint64_t length) {
  const Decision d = Decide(FileIoOp::kPunch, offset, length);
  if (d.error > 0) return -d.error;
  return inner_->PunchHole(fd, offset, length);
}

int64_t FaultInjectingFileIo::SeekData(int fd, uint64_t offset) {
  return inner_->SeekData(fd, offset);
}

int64_t FaultInjectingFileIo::SeekHole(int fd, uint64_t offset) {
  return inner_->SeekHole(fd, offset);
}

}  // namespace appliance::storage
