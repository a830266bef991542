#include "appliance/nvlog/journal.h"

#include <atomic>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/thread_name.h"

namespace nvlog {
namespace {

// Runs f(callback) and waits for the callback's status.
absl::Status Wait(
    const std::function<void(blockstore::BlockStore::Callback)>& f) {
  absl::Notification done;
  absl::Status result;
  f([&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

}  // namespace

// The wrapper given to the SCSI engine for one LUN.
class Journal::Store final : public blockstore::BlockStore {
 public:
  Store(Journal& journal, uint64_t lun,
        std::shared_ptr<blockstore::BlockStore> inner)
      : journal_(journal), lun_(lun), inner_(std::move(inner)) {}

  uint32_t block_size() const override { return inner_->block_size(); }
  uint64_t num_blocks() const override { return inner_->num_blocks(); }
  const blockstore::LunIdentity& identity() const override {
    return inner_->identity();
  }
  void Read(uint64_t lba, uint32_t num_blocks, absl::Span<uint8_t> out,
            Callback done) override {
    inner_->Read(lba, num_blocks, out, std::move(done));
  }
  void Flush(Callback done) override { inner_->Flush(std::move(done)); }
  absl::StatusOr<blockstore::AllocationExtent> QueryAllocation(
      uint64_t lba) override {
    return inner_->QueryAllocation(lba);
  }

  void Write(uint64_t lba, uint32_t num_blocks, absl::Span<const uint8_t> data,
             bool fua, Callback done) override;
  void Unmap(uint64_t lba, uint64_t num_blocks, Callback done) override;

 private:
  // One write: the log's completion and the store's, in either order.
  struct Op {
    Journal* journal = nullptr;
    std::shared_ptr<blockstore::BlockStore> inner;
    Callback done;
    bool fua = false;
    std::atomic<int> pending{2};
    absl::Status store_status;
    absl::StatusOr<AppendResult> mirror =
        absl::UnavailableError("NVLOG append did not complete");

    void Arrive(const std::shared_ptr<Op>& self) {
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) Finish(self);
    }
    void Finish(const std::shared_ptr<Op>& self) {
      if (!store_status.ok()) {
        journal->Count(false, false);
        std::move(done)(store_status);
        return;
      }
      if (!mirror.ok()) {
        journal->Count(false, false);
        std::move(done)(absl::UnavailableError(absl::StrCat(
            "write not journaled: ", mirror.status().message())));
        return;
      }
      if (mirror->mirrored || fua) {
        journal->Count(true, mirror->mirrored);
        std::move(done)(absl::OkStatus());
        return;
      }
      // Only this node has it: durable before the host hears of it.
      inner->Flush([self](absl::Status s) {
        self->journal->Count(s.ok(), false);
        std::move(self->done)(std::move(s));
      });
    }
  };

  Journal& journal_;
  const uint64_t lun_;
  const std::shared_ptr<blockstore::BlockStore> inner_;
};

void Journal::Store::Write(uint64_t lba, uint32_t num_blocks,
                           absl::Span<const uint8_t> data, bool fua,
                           Callback done) {
  auto op = std::make_shared<Op>();
  op->journal = &journal_;
  op->inner = inner_;
  journal_.Started(lun_);
  op->done = [journal = &journal_, lun = lun_,
              done = std::move(done)](absl::Status s) mutable {
    journal->Ended(lun);
    std::move(done)(std::move(s));
  };
  op->fua = fua;
  absl::StatusOr<uint64_t> sequence = journal_.log_.Append(
      lun_, lba, num_blocks, data,
      [op](absl::StatusOr<AppendResult> result) {
        op->mirror = std::move(result);
        op->Arrive(op);
      },
      fua);
  if (!sequence.ok()) {
    // The log refused it (and will not call back): nothing was written.
    journal_.Count(false, false);
    std::move(op->done)(sequence.status());
    return;
  }
  const uint64_t seq = *sequence;
  const size_t bytes = data.size();
  inner_->Write(lba, num_blocks, data, fua,
                [op, seq, bytes](absl::Status s) {
                  op->journal->WriteFinished(seq, bytes, op->inner);
                  op->store_status = std::move(s);
                  op->Arrive(op);
                });
}

void Journal::Store::Unmap(uint64_t lba, uint64_t num_blocks, Callback done) {
  // Earlier writes of the range must not be replayed over the deallocation:
  // retire them first; then deallocate and make it durable.
  auto callback = std::make_shared<Callback>(std::move(done));
  std::shared_ptr<blockstore::BlockStore> inner = inner_;
  Journal* journal = &journal_;
  journal_.RequestRetire([journal, inner, lba, num_blocks,
                          callback](absl::Status retired) {
    if (!retired.ok()) {
      std::move (*callback)(std::move(retired));
      return;
    }
    inner->Unmap(lba, num_blocks, [journal, inner, callback](absl::Status s) {
      if (!s.ok()) {
        std::move (*callback)(std::move(s));
        return;
      }
      inner->Flush([journal, callback](absl::Status f) {
        if (f.ok()) {
          absl::MutexLock l(&journal->mu_);
          journal->stats_.unmaps++;
        }
        std::move (*callback)(std::move(f));
      });
    });
  });
}

Journal::Journal(Nvlog& log, Options options)
    : log_(log), options_(options) {
  flusher_ = std::thread([this] { FlusherLoop(); });
}

Journal::~Journal() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  flusher_.join();
}

std::shared_ptr<blockstore::BlockStore> Journal::Wrap(
    uint64_t lun, std::shared_ptr<blockstore::BlockStore> inner) {
  return std::make_shared<Store>(*this, lun, std::move(inner));
}

void Journal::WriteFinished(uint64_t sequence, size_t bytes,
                            std::shared_ptr<blockstore::BlockStore> store) {
  absl::MutexLock l(&mu_);
  written_.push_back(Written{sequence, bytes, std::move(store)});
  written_bytes_ += bytes;
}

void Journal::Count(bool ok, bool mirrored) {
  absl::MutexLock l(&mu_);
  if (!ok) {
    stats_.failed_writes++;
    return;
  }
  stats_.writes++;
  (mirrored ? stats_.mirrored_writes : stats_.unmirrored_writes)++;
}

absl::Status Journal::RetireAll() {
  absl::Notification done;
  absl::Status result;
  RequestRetire([&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

void Journal::RequestRetire(std::function<void(absl::Status)> done) {
  absl::MutexLock l(&mu_);
  requests_.push_back(std::move(done));
}

void Journal::Started(uint64_t lun) {
  absl::MutexLock l(&mu_);
  in_flight_[lun]++;
}

void Journal::Ended(uint64_t lun) {
  absl::MutexLock l(&mu_);
  if (--in_flight_[lun] == 0) in_flight_.erase(lun);
}

int Journal::InFlight(uint64_t lun) const {
  absl::MutexLock l(&mu_);
  auto it = in_flight_.find(lun);
  return it == in_flight_.end() ? 0 : it->second;
}

bool Journal::WaitIdle(uint64_t lun, absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto idle = [this, lun]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_.count(lun) == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

Journal::Stats Journal::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

absl::Status Journal::RetirePass(std::vector<Written> batch) {
  if (batch.empty()) return absl::OkStatus();
  // Every store written by the batch, flushed once.
  std::map<blockstore::BlockStore*, std::shared_ptr<blockstore::BlockStore>>
      stores;
  for (const Written& w : batch) stores.emplace(w.store.get(), w.store);
  absl::Status flushed;
  for (const auto& [raw, store] : stores) {
    absl::Status s = Wait([&store](blockstore::BlockStore::Callback cb) {
      store->Flush(std::move(cb));
    });
    if (!s.ok() && flushed.ok()) flushed = s;
  }
  absl::MutexLock l(&mu_);
  if (!flushed.ok()) {
    // Not durable: keep them for the next pass (the log holds them meanwhile).
    stats_.flush_errors += batch.size();
    for (Written& w : batch) {
      written_bytes_ += w.bytes;
      written_.push_back(std::move(w));
    }
    return flushed;
  }
  stats_.retire_passes++;
  for (const Written& w : batch) {
    if (log_.Retire(w.sequence).ok()) stats_.retired++;
  }
  return absl::OkStatus();
}

void Journal::FlusherLoop() {
  common::SetThreadName("nvlog-flush");
  absl::MutexLock l(&mu_);
  auto urgent = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !requests_.empty() ||
           written_bytes_ >= options_.flush_bytes;
  };
  auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !requests_.empty() || !written_.empty();
  };
  while (true) {
    // Idle until something was written; then gather for flush_interval
    // unless a request or enough bytes make it urgent.
    mu_.Await(absl::Condition(&work));
    mu_.AwaitWithDeadline(absl::Condition(&urgent),
                          absl::Now() + options_.flush_interval);
    std::vector<Written> batch = std::move(written_);
    written_.clear();
    written_bytes_ = 0;
    std::vector<std::function<void(absl::Status)>> requests =
        std::move(requests_);
    requests_.clear();
    const bool stopping = stopping_;
    mu_.Unlock();
    absl::Status status = RetirePass(std::move(batch));
    for (auto& request : requests) request(status);
    mu_.Lock();
    if (stopping) break;  // the last pass ran (no writer is left)
  }
}

}  // namespace nvlog
