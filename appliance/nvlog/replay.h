// Replay: what a takeover does with the partner's NVLOG (ARCHITECTURE.md §2
// "Takeover"): write every committed, not yet retired entry to its LUN in
// sequence order, then flush each LUN written. Uncommitted entries are
// dropped (the host never got an acknowledgement and resends); retired ones
// are already on stable storage.
#ifndef APPLIANCE_NVLOG_REPLAY_H_
#define APPLIANCE_NVLOG_REPLAY_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "appliance/nvlog/nvlog_entry.h"
#include "blockstore/block_store.h"

namespace nvlog {

// The BlockStore of a LUN, or null when this node cannot reach it.
using LunLookup = std::function<blockstore::BlockStore*(uint64_t lun)>;

struct ReplayStats {
  uint64_t written = 0;              // committed entries written
  uint64_t dropped_uncommitted = 0;
  uint64_t skipped_retired = 0;
  uint64_t luns_flushed = 0;
};

// Checks everything first and writes nothing when any check fails:
// kFailedPrecondition for a gap or duplicate among the entries' sequences
// (the log cannot be trusted), kNotFound for an entry whose LUN lookup does
// not know, kInvalidArgument / kOutOfRange for an entry that does not fit its
// LUN (block size, capacity). Then writes one entry at a time (overlapping
// writes land in order) and flushes; the first BlockStore error stops it and
// is returned. Blocks the calling thread until done.
absl::StatusOr<ReplayStats> Replay(std::vector<NvlogEntry> entries,
                                   const LunLookup& lookup);

}  // namespace nvlog

#endif  // APPLIANCE_NVLOG_REPLAY_H_
