#include "tools/verifyload/session.h"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tools/verifyload/log.h"

namespace verifyload {
namespace {

// Completion of a command the session waits for synchronously (READ
// CAPACITY at login, logout).
struct SyncWait {
  bool done = false;
  int status = -1;
};

void OnSyncDone(iscsi_context*, int status, void*, void* private_data) {
  auto* w = static_cast<SyncWait*>(private_data);
  w->done = true;
  w->status = status;
}

int PollMillis(absl::Duration d) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0, 1000));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Session>> Session::Open(SessionOptions options) {
  std::unique_ptr<Session> session(new Session(std::move(options)));
  absl::Status connected = session->Connect();
  if (!connected.ok()) return connected;
  return session;
}

Session::~Session() { Close(); }

void Session::OnConnected(iscsi_context* ctx, int status, void*,
                          void* private_data) {
  auto* s = static_cast<Session*>(private_data);
  s->connect_done_ = true;
  s->connect_status_ = status;
  // libiscsi replaces the error text on its way out of iscsi_service().
  if (status != SCSI_STATUS_GOOD) s->connect_error_ = iscsi_get_error(ctx);
}

void Session::OnCommandDone(iscsi_context*, int status, void*,
                            void* private_data) {
  auto* p = static_cast<Pending*>(private_data);
  p->session->Complete(p, status);
}

absl::Status Session::Connect() {
  const absl::Time deadline = absl::Now() + options_.reconnect_timeout;
  absl::Duration backoff = absl::Milliseconds(100);
  absl::Time last_log = absl::InfinitePast();
  for (int attempt = 1;; ++attempt) {
    if (options_.should_abort()) {
      return absl::CancelledError("stopped while connecting");
    }
    const absl::Time now = absl::Now();
    // Every attempt gets at least a second, even past the deadline.
    const absl::Time attempt_deadline =
        std::min(now + options_.attempt_timeout,
                 std::max(deadline, now + absl::Seconds(1)));
    absl::Status s = ConnectOnce(attempt_deadline);
    if (s.ok()) {
      if (attempt > 1) {
        LogLine(absl::StrCat("logged in to ", options_.portal, " after ",
                             attempt, " attempts"));
      }
      return s;
    }
    if (absl::IsFailedPrecondition(s)) return s;
    if (absl::Now() - last_log >= absl::Seconds(5)) {
      LogLine(absl::StrCat("login to ", options_.portal, " failed (attempt ",
                           attempt, "): ", s.message(), "; retrying"));
      last_log = absl::Now();
    }
    if (absl::Now() + backoff > deadline) {
      return absl::UnavailableError(
          absl::StrCat("could not log in to ", options_.portal, " ",
                       options_.target, " LUN ", options_.lun, " within ",
                       absl::FormatDuration(options_.reconnect_timeout), " (",
                       attempt, " attempts): ", s.message()));
    }
    const absl::Time wake = absl::Now() + backoff;
    while (absl::Now() < wake) {
      if (options_.should_abort()) {
        return absl::CancelledError("stopped while connecting");
      }
      absl::SleepFor(std::min(absl::Milliseconds(50), wake - absl::Now()));
    }
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

absl::Status Session::ConnectOnce(absl::Time deadline) {
  iscsi_context* ctx = iscsi_create_context(options_.initiator.c_str());
  if (ctx == nullptr) return absl::InternalError("iscsi_create_context failed");
  connect_error_.clear();
  auto fail = [&](const std::string& what) {
    const std::string error = absl::StrCat(
        what, ": ",
        absl::StripAsciiWhitespace(connect_error_.empty()
                                       ? std::string(iscsi_get_error(ctx))
                                       : connect_error_));
    iscsi_destroy_context(ctx);
    return absl::UnavailableError(error);
  };
  iscsi_set_targetname(ctx, options_.target.c_str());
  iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
  // This class reconnects itself (see the header).
  iscsi_set_noautoreconnect(ctx, 1);
  // The same ISID on every connection: a new login reinstates the session.
  iscsi_set_isid_random(ctx, options_.isid_random & 0xffffff, 0);

  connect_done_ = false;
  connect_status_ = -1;
  if (iscsi_full_connect_async(ctx, options_.portal.c_str(), options_.lun,
                               &Session::OnConnected, this) != 0) {
    return fail("connect");
  }
  if (!ServiceUntil(ctx, &connect_done_, deadline)) {
    return fail(connect_done_ ? "login failed" : "login timed out");
  }
  if (connect_status_ != SCSI_STATUS_GOOD) return fail("login failed");

  uint32_t block_size = 0;
  uint64_t num_blocks = 0;
  for (int attempt = 1;; ++attempt) {
    SyncWait wait;
    scsi_task* task =
        iscsi_readcapacity16_task(ctx, options_.lun, &OnSyncDone, &wait);
    if (task == nullptr) return fail("READ CAPACITY(16)");
    if (!ServiceUntil(ctx, &wait.done, deadline)) {
      iscsi_destroy_context(ctx);  // before wait and task go away
      scsi_free_scsi_task(task);
      return absl::UnavailableError("READ CAPACITY(16) unanswered");
    }
    if (wait.status == SCSI_STATUS_GOOD) {
      auto* rc16 =
          static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(task));
      if (rc16 != nullptr) {
        block_size = rc16->block_length;
        num_blocks = rc16->returned_lba + 1;
      }
      scsi_free_scsi_task(task);
      if (rc16 == nullptr) return fail("READ CAPACITY(16) data");
      break;
    }
    const Classified c =
        ClassifyCompletion(wait.status, task->sense.key, task->sense.ascq);
    scsi_free_scsi_task(task);
    if (c.outcome != Outcome::kRetry || attempt >= 20) {
      return fail(absl::StrCat("READ CAPACITY(16) ", c.description));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (block_size_ == 0) {
    block_size_ = block_size;
    num_blocks_ = num_blocks;
  } else if (block_size != block_size_ || num_blocks != num_blocks_) {
    iscsi_destroy_context(ctx);
    return absl::FailedPreconditionError(
        absl::StrFormat("the LUN changed: %d blocks of %d bytes, was %d of %d",
                        num_blocks, block_size, num_blocks_, block_size_));
  }
  ctx_ = ctx;
  broken_ = false;
  broken_reason_.clear();
  return absl::OkStatus();
}

bool Session::ServiceUntil(iscsi_context* ctx, const bool* done,
                           absl::Time deadline) {
  while (!*done) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{};
    pfd.fd = iscsi_get_fd(ctx);
    pfd.events = static_cast<short>(iscsi_which_events(ctx));
    const int rc = poll(&pfd, pfd.fd >= 0 && pfd.events != 0 ? 1 : 0,
                        std::max(1, std::min(PollMillis(left), 100)));
    if (rc < 0) {
      if (errno == EINTR && !options_.should_abort()) continue;
      return false;
    }
    if (iscsi_service(ctx, rc > 0 ? pfd.revents : 0) < 0) return *done;
  }
  return true;
}

void Session::Write(uint64_t lba, std::vector<uint8_t> data, IoCallback done) {
  auto p = std::make_unique<Pending>();
  p->is_write = true;
  p->buffer = std::move(data);
  p->done = std::move(done);
  Submit(std::move(p), lba);
}

void Session::Read(uint64_t lba, uint32_t blocks, IoCallback done) {
  auto p = std::make_unique<Pending>();
  p->expected_bytes = static_cast<size_t>(blocks) * block_size_;
  p->done = std::move(done);
  Submit(std::move(p), lba);
}

void Session::Submit(std::unique_ptr<Pending> p, uint64_t lba) {
  p->session = this;
  p->id = next_id_++;
  p->issued = absl::Now();
  if (ctx_ == nullptr || broken_ || dead()) {
    completed_.emplace_back(
        std::move(p->done),
        IoResult{Outcome::kConnectionLost, "not connected", {}});
    return;
  }
  Pending* raw = p.get();
  scsi_task* task =
      p->is_write
          ? iscsi_write16_task(ctx_, options_.lun, lba, p->buffer.data(),
                               static_cast<uint32_t>(p->buffer.size()),
                               static_cast<int>(block_size_), 0, 0, 0, 0, 0,
                               &Session::OnCommandDone, raw)
          : iscsi_read16_task(ctx_, options_.lun, lba,
                              static_cast<uint32_t>(p->expected_bytes),
                              static_cast<int>(block_size_), 0, 0, 0, 0, 0,
                              &Session::OnCommandDone, raw);
  if (task == nullptr) {
    MarkBroken(absl::StrCat("cannot queue a command: ", iscsi_get_error(ctx_)));
    completed_.emplace_back(
        std::move(p->done),
        IoResult{Outcome::kConnectionLost, "could not be queued", {}});
    return;
  }
  p->task = task;
  pending_.emplace(p->id, std::move(p));
}

void Session::Complete(Pending* p, int status) {
  scsi_task* task = p->task;
  IoResult result;
  const Classified c =
      ClassifyCompletion(status, task != nullptr ? task->sense.key : 0,
                         task != nullptr ? task->sense.ascq : 0);
  result.outcome = c.outcome;
  result.description = c.description;
  if (c.outcome == Outcome::kConnectionLost) {
    MarkBroken(absl::StrCat("a command ended ", c.description));
  } else if (c.outcome == Outcome::kGood && !p->is_write) {
    if (task->datain.size < 0 ||
        static_cast<size_t>(task->datain.size) != p->expected_bytes) {
      result.outcome = Outcome::kHardError;
      result.description = absl::StrFormat(
          "read returned %d of %d bytes", task->datain.size, p->expected_bytes);
    } else {
      result.data.assign(task->datain.data,
                         task->datain.data + task->datain.size);
    }
  }
  if (task != nullptr) scsi_free_scsi_task(task);
  p->task = nullptr;
  completed_.emplace_back(std::move(p->done), std::move(result));
  pending_.erase(p->id);  // destroys *p
}

void Session::MarkBroken(const std::string& reason) {
  if (broken_) return;
  broken_ = true;
  broken_reason_ = reason;
}

void Session::DropConnection() {
  iscsi_context* ctx = ctx_;
  ctx_ = nullptr;
  // Runs the callbacks of what libiscsi still holds (CANCELLED).
  if (ctx != nullptr) iscsi_destroy_context(ctx);
  for (auto& [id, p] : pending_) {
    if (p->task != nullptr) scsi_free_scsi_task(p->task);
    completed_.emplace_back(
        std::move(p->done),
        IoResult{Outcome::kConnectionLost,
                 absl::StrCat("connection lost: ", broken_reason_),
                 {}});
  }
  pending_.clear();
}

absl::Status Session::Poll(absl::Duration max_wait) {
  if (!dead() && !broken_ && ctx_ != nullptr) {
    pollfd pfd{};
    pfd.fd = iscsi_get_fd(ctx_);
    pfd.events = static_cast<short>(iscsi_which_events(ctx_));
    if (pfd.fd < 0) {
      MarkBroken("no socket");
    } else {
      const int rc = poll(&pfd, pfd.events != 0 ? 1 : 0, PollMillis(max_wait));
      if (rc < 0 && errno != EINTR) {
        MarkBroken(absl::StrCat("poll: ", std::strerror(errno)));
      } else if (rc >= 0 && iscsi_service(ctx_, rc > 0 ? pfd.revents : 0) < 0) {
        MarkBroken(
            std::string(absl::StripAsciiWhitespace(iscsi_get_error(ctx_))));
      }
      if (!broken_ && !iscsi_is_logged_in(ctx_)) {
        MarkBroken("the target ended the session");
      }
      const absl::Time now = absl::Now();
      for (const auto& [id, p] : pending_) {
        if (broken_) break;
        if (now - p->issued > options_.io_timeout) {
          MarkBroken(absl::StrCat("a command was unanswered for ",
                                  absl::FormatDuration(now - p->issued)));
        }
      }
    }
  }
  if (broken_ && !dead()) {
    DropConnection();
    size_t lost = 0;
    for (const auto& [done, result] : completed_) {
      if (result.outcome == Outcome::kConnectionLost) ++lost;
    }
    LogLine(absl::StrCat("connection lost (", broken_reason_, "); ", lost,
                         " commands in flight end with unknown outcome; "
                         "reconnecting"));
    absl::Status s = Connect();
    if (s.ok()) {
      ++reconnects_;
      LogLine(absl::StrCat("reconnected (", reconnects_, " so far)"));
    } else {
      dead_status_ = s;
      LogLine(absl::StrCat("giving up: ", s.message()));
    }
  }
  Dispatch();
  return dead_status_;
}

void Session::Dispatch() {
  // One batch: callbacks that queue commands on a dead session complete at
  // the next Poll, not in a loop here.
  std::vector<std::pair<IoCallback, IoResult>> batch;
  batch.swap(completed_);
  for (auto& [done, result] : batch) done(std::move(result));
}

void Session::Abandon() {
  MarkBroken("abandoned");
  DropConnection();
  if (dead_status_.ok()) dead_status_ = absl::CancelledError("abandoned");
  Dispatch();
}

void Session::Close() {
  if (ctx_ != nullptr && !broken_ && iscsi_is_logged_in(ctx_)) {
    SyncWait wait;
    if (iscsi_logout_async(ctx_, &OnSyncDone, &wait) == 0) {
      ServiceUntil(ctx_, &wait.done, absl::Now() + absl::Seconds(2));
    }
    iscsi_context* ctx = ctx_;
    ctx_ = nullptr;
    iscsi_destroy_context(ctx);  // while wait is alive
  }
  if (ctx_ != nullptr) {
    iscsi_context* ctx = ctx_;
    ctx_ = nullptr;
    iscsi_destroy_context(ctx);
  }
  for (auto& [id, p] : pending_) {
    if (p->task != nullptr) scsi_free_scsi_task(p->task);
  }
  pending_.clear();
  completed_.clear();
  if (dead_status_.ok()) dead_status_ = absl::CancelledError("closed");
}

}  // namespace verifyload
