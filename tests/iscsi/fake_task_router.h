// A minimal RAM-disk TaskRouter for iSCSI tests: one LUN (0) answering the
// commands real initiators send at login and for I/O. It is a test fake, not a
// SCSI implementation: just enough of SPC/SBC for libiscsi tools and qemu-img.
#ifndef TESTS_ISCSI_FAKE_TASK_ROUTER_H_
#define TESTS_ISCSI_FAKE_TASK_ROUTER_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "target/scsi/task.h"

namespace iscsi_test {

class FakeTaskRouter : public scsi::TaskRouter {
 public:
  static constexpr uint32_t kBlockSize = 512;

  explicit FakeTaskRouter(uint64_t blocks = 32 * 1024) : disk_(blocks * kBlockSize) {}

  // When true, tasks are parked until CompleteParked() (tests of late
  // completion); otherwise they complete inline.
  void set_park_tasks(bool park) {
    absl::MutexLock l(&mu_);
    park_ = park;
  }
  size_t parked() {
    absl::MutexLock l(&mu_);
    return parked_.size();
  }
  // Completes every parked task (call from any thread).
  void CompleteParked() {
    std::deque<Parked> work;
    {
      absl::MutexLock l(&mu_);
      work.swap(parked_);
    }
    for (auto& p : work) Run(std::move(p.task), std::move(p.done));
  }

  std::vector<scsi::TmfRequest> tmfs() {
    absl::MutexLock l(&mu_);
    return tmfs_;
  }
  std::vector<std::string> nexus_names() {
    absl::MutexLock l(&mu_);
    return nexus_names_;
  }
  uint64_t commands() const { return commands_.load(); }

  void Submit(std::unique_ptr<scsi::Task> task, scsi::TaskCompletion done) override {
    commands_++;
    {
      absl::MutexLock l(&mu_);
      if (task->nexus) {
        const std::string n = task->nexus->initiator_port_name + " " +
                              task->nexus->target_port_name + " " +
                              std::to_string(task->nexus->relative_target_port_id);
        if (std::find(nexus_names_.begin(), nexus_names_.end(), n) == nexus_names_.end()) {
          nexus_names_.push_back(n);
        }
      }
      if (park_) {
        parked_.push_back({std::move(task), std::move(done)});
        return;
      }
    }
    Run(std::move(task), std::move(done));
  }

  void ManageTasks(scsi::TmfRequest request, scsi::TmfCompletion done) override {
    std::deque<Parked> aborted;
    {
      absl::MutexLock l(&mu_);
      tmfs_.push_back(request);
      for (auto it = parked_.begin(); it != parked_.end();) {
        const bool match =
            request.function == scsi::TmfFunction::kAbortTask
                ? it->task->tag == request.referenced_tag
                : true;
        if (match) {
          aborted.push_back(std::move(*it));
          it = parked_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& p : aborted) {
      scsi::TaskResponse r;
      r.aborted = true;
      std::move(p.done)(std::move(r));
    }
    std::move(done)(scsi::TmfResult::kComplete);
  }

 private:
  struct Parked {
    std::unique_ptr<scsi::Task> task;
    scsi::TaskCompletion done;
  };

  static scsi::TaskResponse Check(uint8_t key, uint8_t asc, uint8_t ascq) {
    scsi::TaskResponse r;
    r.status = scsi::ScsiStatus::kCheckCondition;
    r.sense.assign(18, 0);
    r.sense[0] = 0x70;
    r.sense[2] = key;
    r.sense[7] = 10;
    r.sense[12] = asc;
    r.sense[13] = ascq;
    return r;
  }

  static uint64_t Be(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
  }
  static void PutBe(uint8_t* p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
  }

  void Run(std::unique_ptr<scsi::Task> task, scsi::TaskCompletion done) {
    scsi::TaskResponse r = Execute(*task);
    if (r.data_in.size() > task->expected_data_in_length) {
      r.data_in.resize(task->expected_data_in_length);
    }
    std::move(done)(std::move(r));
  }

  scsi::TaskResponse Execute(scsi::Task& t) {
    const auto& c = t.cdb;
    const uint64_t blocks = disk_.size() / kBlockSize;
    if (t.lun != 0 && c[0] != 0xa0 && c[0] != 0x12) return Check(0x05, 0x25, 0x00);
    scsi::TaskResponse r;
    switch (c[0]) {
      case 0x00:  // TEST UNIT READY
        return r;
      case 0x12: {  // INQUIRY
        if (t.lun != 0) {
          r.data_in.assign(36, 0);
          r.data_in[0] = 0x7f;  // no LU
          return r;
        }
        if (c[1] & 1) {
          const uint8_t page = c[2];
          if (page == 0x00) {
            r.data_in = {0x00, 0x00, 0x00, 0x03, 0x00, 0x80, 0x83};
          } else if (page == 0x80) {
            r.data_in = {0x00, 0x80, 0x00, 0x04, 'F', 'A', 'K', 'E'};
          } else if (page == 0x83) {
            r.data_in = {0x00, 0x83, 0x00, 0x0c, 0x01, 0x03, 0x00, 0x08,
                         0x60, 0x01, 0x40, 0x50, 0x00, 0x00, 0x00, 0x01};
          } else {
            return Check(0x05, 0x24, 0x00);
          }
          return r;
        }
        r.data_in.assign(36, 0);
        r.data_in[2] = 0x06;  // SPC-4
        r.data_in[3] = 0x02;
        r.data_in[4] = 31;
        r.data_in[7] = 0x02;  // CmdQue
        std::memcpy(&r.data_in[8], "APPLIANC", 8);
        std::memcpy(&r.data_in[16], "FAKE RAM DISK   ", 16);
        std::memcpy(&r.data_in[32], "0001", 4);
        return r;
      }
      case 0x25: {  // READ CAPACITY(10)
        r.data_in.assign(8, 0);
        PutBe(&r.data_in[0], std::min<uint64_t>(blocks - 1, 0xffffffff), 4);
        PutBe(&r.data_in[4], kBlockSize, 4);
        return r;
      }
      case 0x9e: {  // SERVICE ACTION IN(16)
        if ((c[1] & 0x1f) != 0x10) return Check(0x05, 0x24, 0x00);
        r.data_in.assign(32, 0);
        PutBe(&r.data_in[0], blocks - 1, 8);
        PutBe(&r.data_in[8], kBlockSize, 4);
        return r;
      }
      case 0xa0: {  // REPORT LUNS
        r.data_in.assign(16, 0);
        PutBe(&r.data_in[0], 8, 4);
        return r;
      }
      case 0x1a: {  // MODE SENSE(6): header only
        r.data_in = {3, 0, 0, 0};
        return r;
      }
      case 0x35:  // SYNCHRONIZE CACHE(10)
      case 0x91:  // SYNCHRONIZE CACHE(16)
        return r;
      case 0x28: case 0x88: case 0x2a: case 0x8a: {
        const bool is16 = c[0] == 0x88 || c[0] == 0x8a;
        const bool write = c[0] == 0x2a || c[0] == 0x8a;
        const uint64_t lba = is16 ? Be(&c[2], 8) : Be(&c[2], 4);
        const uint64_t count = is16 ? Be(&c[10], 4) : Be(&c[7], 2);
        if (lba + count > blocks) return Check(0x05, 0x21, 0x00);
        const uint64_t bytes = count * kBlockSize;
        absl::MutexLock l(&disk_mu_);
        // As task.h asks: a write shorter than the CDB writes the whole blocks
        // the initiator sent; a read produces at most what the initiator takes
        // and reports the full length it called for.
        if (write) {
          r.wanted_data_out_length = static_cast<uint32_t>(bytes);
          const size_t n = std::min<size_t>(bytes, t.data_out.size());
          if (n % kBlockSize != 0) {
            scsi::TaskResponse partial = Check(0x05, 0x0e, 0x03);
            partial.wanted_data_out_length = r.wanted_data_out_length;
            return partial;
          }
          if (n > 0) std::memcpy(disk_.data() + lba * kBlockSize, t.data_out.data(), n);
        } else {
          r.wanted_data_in_length = static_cast<uint32_t>(bytes);
          const size_t n = std::min<size_t>(bytes, t.expected_data_in_length);
          r.data_in.assign(disk_.begin() + lba * kBlockSize,
                           disk_.begin() + lba * kBlockSize + n);
        }
        return r;
      }
      default:
        return Check(0x05, 0x20, 0x00);  // INVALID COMMAND OPERATION CODE
    }
  }

  absl::Mutex mu_;
  bool park_ = false;
  std::deque<Parked> parked_;
  std::vector<scsi::TmfRequest> tmfs_;
  std::vector<std::string> nexus_names_;
  std::atomic<uint64_t> commands_{0};
  absl::Mutex disk_mu_;
  std::vector<uint8_t> disk_;
};

}  // namespace iscsi_test

#endif  // TESTS_ISCSI_FAKE_TASK_ROUTER_H_
