// A RAM-disk scsi::TaskRouter for the virtual adapter tests: READ/WRITE(10/16)
// on 512-byte blocks of one LUN per number, with residual fields, sense for
// bad LBAs and opcodes, and a "hold" mode that parks commands until released
// or aborted by task management (ABORT TASK by nexus+tag, ABORT TASK SET, LU
// reset, I_T nexus loss). Deterministic: calling it directly gives the
// reference answer a proxied command must reproduce.
#ifndef TESTS_VADAPTER_RAM_DISK_ROUTER_H_
#define TESTS_VADAPTER_RAM_DISK_ROUTER_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "target/scsi/bytes.h"
#include "target/scsi/sense.h"
#include "target/scsi/task.h"

namespace vadapter_test {

class RamDiskRouter : public scsi::TaskRouter {
 public:
  static constexpr uint32_t kBlockSize = 512;

  explicit RamDiskRouter(uint64_t blocks = 64 * 1024) : blocks_(blocks) {}

  // While true, commands are parked (not executed) until ReleaseHeld() or a
  // TMF aborts them.
  void set_hold(bool hold) {
    absl::MutexLock l(&mu_);
    hold_ = hold;
  }
  size_t held() {
    absl::MutexLock l(&mu_);
    return held_.size();
  }
  // Waits until at least n commands are parked.
  bool WaitForHeld(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  void ReleaseHeld() {
    std::deque<Held> work;
    {
      absl::MutexLock l(&mu_);
      work.swap(held_);
    }
    for (auto& h : work) std::move(h.done)(Execute(*h.task));
  }
  std::vector<scsi::TmfRequest> tmfs() {
    absl::MutexLock l(&mu_);
    return tmfs_;
  }
  bool WaitForTmfs(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return tmfs_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  uint64_t submitted() const { return submitted_.load(); }
  // Every distinct nexus object seen (to check the partner shares them).
  std::vector<const scsi::ItNexus*> nexus_objects() {
    absl::MutexLock l(&mu_);
    return nexus_objects_;
  }

  void Submit(std::unique_ptr<scsi::Task> task, scsi::TaskCompletion done) override {
    submitted_++;
    {
      absl::MutexLock l(&mu_);
      const scsi::ItNexus* n = task->nexus.get();
      if (std::find(nexus_objects_.begin(), nexus_objects_.end(), n) ==
          nexus_objects_.end()) {
        nexus_objects_.push_back(n);
      }
      if (hold_) {
        held_.push_back({std::move(task), std::move(done)});
        return;
      }
    }
    scsi::TaskResponse r = Execute(*task);
    std::move(done)(std::move(r));
  }

  void ManageTasks(scsi::TmfRequest request, scsi::TmfCompletion done) override {
    std::vector<Held> aborted;
    {
      absl::MutexLock l(&mu_);
      tmfs_.push_back(request);
      for (auto it = held_.begin(); it != held_.end();) {
        if (Affects(request, *it->task)) {
          aborted.push_back(std::move(*it));
          it = held_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& h : aborted) {
      scsi::TaskResponse r;
      r.aborted = true;
      std::move(h.done)(std::move(r));
    }
    if (request.function == scsi::TmfFunction::kAbortTask && aborted.empty()) {
      std::move(done)(scsi::TmfResult::kTaskDoesNotExist);
    } else {
      std::move(done)(scsi::TmfResult::kComplete);
    }
  }

  // The reference execution (no hold).
  scsi::TaskResponse Execute(const scsi::Task& t) {
    scsi::TaskResponse r;
    if (t.cdb.empty()) return Check(r, scsi::IllegalRequest(scsi::asc::kInvalidCommandOperationCode));
    const uint8_t op = t.cdb[0];
    uint64_t lba = 0;
    uint32_t count = 0;
    bool write = false;
    if ((op == 0x28 || op == 0x2A) && t.cdb.size() >= 10) {
      lba = scsi::GetBe32(&t.cdb[2]);
      count = scsi::GetBe16(&t.cdb[7]);
      write = op == 0x2A;
    } else if ((op == 0x88 || op == 0x8A) && t.cdb.size() >= 16) {
      lba = scsi::GetBe64(&t.cdb[2]);
      count = scsi::GetBe32(&t.cdb[10]);
      write = op == 0x8A;
    } else if (op == 0x00 && t.cdb.size() >= 6) {  // TEST UNIT READY
      return r;
    } else {
      return Check(r, scsi::IllegalRequest(scsi::asc::kInvalidCommandOperationCode));
    }
    if (lba + count > blocks_) return Check(r, scsi::LbaOutOfRange());
    const uint64_t bytes = uint64_t{count} * kBlockSize;
    absl::MutexLock l(&disk_mu_);
    if (write) {
      r.wanted_data_out_length = static_cast<uint32_t>(bytes);
      const uint64_t whole = std::min<uint64_t>(bytes, t.data_out.size()) /
                             kBlockSize * kBlockSize;
      for (uint64_t off = 0; off < whole; off += kBlockSize) {
        auto& blk = disk_[lba + off / kBlockSize];
        blk.assign(t.data_out.begin() + off, t.data_out.begin() + off + kBlockSize);
      }
      return r;
    }
    r.wanted_data_in_length = static_cast<uint32_t>(bytes);
    const uint64_t n = std::min<uint64_t>(bytes, t.expected_data_in_length);
    r.data_in.resize(n);
    for (uint64_t off = 0; off < n; off += kBlockSize) {
      auto it = disk_.find(lba + off / kBlockSize);
      const size_t len = static_cast<size_t>(std::min<uint64_t>(kBlockSize, n - off));
      if (it != disk_.end()) std::memcpy(&r.data_in[off], it->second.data(), len);
    }
    return r;
  }

 private:
  struct Held {
    std::unique_ptr<scsi::Task> task;
    scsi::TaskCompletion done;
  };

  static scsi::TaskResponse& Check(scsi::TaskResponse& r, const scsi::SenseData& s) {
    r.status = scsi::ScsiStatus::kCheckCondition;
    r.sense = scsi::BuildSense(s, scsi::SenseFormat::kFixed);
    return r;
  }

  static bool Affects(const scsi::TmfRequest& r, const scsi::Task& t) {
    const bool same_nexus = r.nexus && t.nexus && *r.nexus == *t.nexus;
    switch (r.function) {
      case scsi::TmfFunction::kAbortTask:
        return same_nexus && t.tag == r.referenced_tag;
      case scsi::TmfFunction::kAbortTaskSet:
        return same_nexus && t.lun == r.lun;
      case scsi::TmfFunction::kClearTaskSet:
      case scsi::TmfFunction::kLogicalUnitReset:
        return t.lun == r.lun;
      case scsi::TmfFunction::kTargetWarmReset:
      case scsi::TmfFunction::kTargetColdReset:
        return true;
      case scsi::TmfFunction::kItNexusLoss:
        return same_nexus;
      case scsi::TmfFunction::kClearAca:
        return false;
    }
    return false;
  }

  const uint64_t blocks_;
  std::atomic<uint64_t> submitted_{0};
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Held> held_ ABSL_GUARDED_BY(mu_);
  std::vector<scsi::TmfRequest> tmfs_ ABSL_GUARDED_BY(mu_);
  std::vector<const scsi::ItNexus*> nexus_objects_ ABSL_GUARDED_BY(mu_);
  absl::Mutex disk_mu_;
  std::map<uint64_t, std::vector<uint8_t>> disk_ ABSL_GUARDED_BY(disk_mu_);
};

// Collects one task completion; Wait() blocks until it arrives.
class ResponseCatcher {
 public:
  scsi::TaskCompletion Callback() {
    return [this](scsi::TaskResponse r) {
      absl::MutexLock l(&mu_);
      calls_++;
      response_ = std::move(r);
    };
  }
  bool Wait(absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock l(&mu_);
    auto arrived = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
  }
  scsi::TaskResponse response() {
    absl::MutexLock l(&mu_);
    return response_;
  }
  int calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  scsi::TaskResponse response_ ABSL_GUARDED_BY(mu_);
};

// Task builders.
inline std::shared_ptr<const scsi::ItNexus> TestNexus(int isid = 1, uint16_t rtpi = 3) {
  auto n = std::make_shared<scsi::ItNexus>();
  n->initiator_port_name =
      "iqn.2024-01.test:host,i,0x00023d00000" + std::to_string(isid);
  n->target_port_name = "iqn.2024-01.test:pair,t,0x0003";
  n->relative_target_port_id = rtpi;
  n->target_port_group = rtpi;
  return n;
}

inline std::unique_ptr<scsi::Task> ReadTask(uint64_t lba, uint32_t blocks,
                                            uint32_t expected, uint64_t tag,
                                            std::shared_ptr<const scsi::ItNexus> nexus = TestNexus()) {
  auto t = std::make_unique<scsi::Task>();
  t->nexus = std::move(nexus);
  t->lun = 1;
  t->tag = tag;
  t->cdb.assign(16, 0);
  t->cdb[0] = 0x88;
  scsi::PutBe64(&t->cdb[2], lba);
  scsi::PutBe32(&t->cdb[10], blocks);
  t->expected_data_in_length = expected;
  return t;
}

inline std::unique_ptr<scsi::Task> WriteTask(uint64_t lba, std::vector<uint8_t> data,
                                             uint64_t tag,
                                             std::shared_ptr<const scsi::ItNexus> nexus = TestNexus()) {
  auto t = std::make_unique<scsi::Task>();
  t->nexus = std::move(nexus);
  t->lun = 1;
  t->tag = tag;
  t->cdb.assign(10, 0);
  t->cdb[0] = 0x2A;
  scsi::PutBe32(&t->cdb[2], static_cast<uint32_t>(lba));
  scsi::PutBe16(&t->cdb[7], static_cast<uint16_t>(data.size() / RamDiskRouter::kBlockSize));
  t->data_out = std::move(data);
  return t;
}

inline std::unique_ptr<scsi::Task> CopyTask(const scsi::Task& t) {
  return std::make_unique<scsi::Task>(t);
}

inline std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

}  // namespace vadapter_test

#endif  // TESTS_VADAPTER_RAM_DISK_ROUTER_H_
