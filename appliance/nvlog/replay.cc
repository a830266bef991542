#include "appliance/nvlog/replay.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace nvlog {
namespace {

// Runs op(callback) and waits for the callback's status.
template <typename Op>
absl::Status Wait(Op op) {
  absl::Notification done;
  absl::Status result;
  op([&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

}  // namespace

absl::StatusOr<ReplayStats> Replay(std::vector<NvlogEntry> entries,
                                   const LunLookup& lookup) {
  absl::Status contiguous = CheckNoGap(entries);
  if (!contiguous.ok()) return contiguous;
  std::sort(entries.begin(), entries.end(),
            [](const NvlogEntry& a, const NvlogEntry& b) {
              return a.sequence < b.sequence;
            });

  ReplayStats stats;
  std::vector<std::pair<const NvlogEntry*, blockstore::BlockStore*>> writes;
  for (const NvlogEntry& e : entries) {
    if (e.retired) {
      stats.skipped_retired++;
      continue;
    }
    if (!e.committed) {
      stats.dropped_uncommitted++;
      continue;
    }
    blockstore::BlockStore* store = lookup(e.lun);
    if (store == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("NVLOG entry ", e.sequence, ": unknown LUN ", e.lun));
    }
    if (e.data.size() != uint64_t{e.block_count} * store->block_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NVLOG entry ", e.sequence, ": ", e.data.size(), " bytes for ",
          e.block_count, " blocks of ", store->block_size()));
    }
    if (e.lba > store->num_blocks() ||
        e.block_count > store->num_blocks() - e.lba) {
      return absl::OutOfRangeError(absl::StrCat(
          "NVLOG entry ", e.sequence, ": LBA ", e.lba, "+", e.block_count,
          " beyond LUN ", e.lun));
    }
    writes.emplace_back(&e, store);
  }

  std::set<blockstore::BlockStore*> touched;
  for (auto& [e, store] : writes) {
    absl::Span<const uint8_t> data(
        reinterpret_cast<const uint8_t*>(e->data.data()), e->data.size());
    absl::Status s = Wait([&](auto done) {
      store->Write(e->lba, e->block_count, data, /*fua=*/false, std::move(done));
    });
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("replaying NVLOG entry ",
                                                 e->sequence, ": ", s.message()));
    }
    stats.written++;
    touched.insert(store);
  }
  for (blockstore::BlockStore* store : touched) {
    absl::Status s = Wait([&](auto done) { store->Flush(std::move(done)); });
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("flushing after replay: ", s.message()));
    }
    stats.luns_flushed++;
  }
  return stats;
}

}  // namespace nvlog
