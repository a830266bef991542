#include "appliance/ha/mailbox_heartbeat.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"

namespace appliance::ha {
namespace {

absl::Time MonotonicNow() {
  return absl::UnixEpoch() +
         absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

bool SameFence(const std::optional<Fence>& a, const std::optional<Fence>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return google::protobuf::util::MessageDifferencer::Equals(*a, *b);
}

std::string FenceText(const std::optional<Fence>& fence) {
  if (!fence.has_value()) return "none";
  return absl::StrCat(fence->fenced_node(), " epoch ", fence->epoch(), " (",
                      fence->reason(), ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<MailboxHeartbeat>> MailboxHeartbeat::Create(
    std::unique_ptr<Mailbox> mailbox, std::function<HaState()> state,
    std::function<bool()> interconnect_up, Options options) {
  if (mailbox == nullptr || !state || !interconnect_up) {
    return absl::InvalidArgumentError(
        "MailboxHeartbeat needs a mailbox, a state and an interconnect "
        "function");
  }
  if (options.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("MailboxHeartbeat: interval must be > 0");
  }
  if (options.write_timeout <= absl::ZeroDuration()) {
    options.write_timeout = options.interval * 2;
  }
  if (options.write_timeout + options.interval * 2 >
      options.detector.detection_time / 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MailboxHeartbeat: write_timeout ",
        absl::FormatDuration(options.write_timeout), " + 2 * interval ",
        absl::FormatDuration(options.interval),
        " must be at most detection_time / 2 (detection_time ",
        absl::FormatDuration(options.detector.detection_time), ")"));
  }
  if (!options.now) options.now = MonotonicNow;
  if (!options.wall_now) options.wall_now = [] { return absl::Now(); };
  return std::unique_ptr<MailboxHeartbeat>(
      new MailboxHeartbeat(std::move(mailbox), std::move(state),
                           std::move(interconnect_up), std::move(options)));
}

MailboxHeartbeat::MailboxHeartbeat(std::unique_ptr<Mailbox> mailbox,
                                   std::function<HaState()> state,
                                   std::function<bool()> interconnect_up,
                                   Options options)
    : mailbox_(std::move(mailbox)),
      state_(std::move(state)),
      interconnect_up_(std::move(interconnect_up)),
      options_(std::move(options)),
      partner_read_(absl::UnavailableError("partner mailbox not read yet")),
      detector_(mailbox_->own_node(), options_.detector) {
  uint64_t incarnation =
      static_cast<uint64_t>(absl::ToUnixMicros(options_.wall_now()));
  absl::StatusOr<MailboxRecord> own = mailbox_->ReadOwn();
  absl::MutexLock lock(&mu_);
  last_write_ok_at_ = options_.now();
  if (own.ok()) {
    restored_record_ = *own;
    beat_ = own->beat();
    if (own->has_fence()) fence_ = own->fence();
    // A new process must look like one to the partner even if the wall
    // clock went back.
    incarnation = std::max(incarnation, own->incarnation() + 1);
    LOG(INFO) << "ha: " << mailbox_->own_node()
              << " continues its mailbox at beat " << beat_
              << " (previous state " << HaState_Name(own->state()) << ", fence "
              << FenceText(fence_) << ")";
  } else if (!absl::IsNotFound(own.status())) {
    restore_status_ = own.status();
    LOG(ERROR) << "ha: " << mailbox_->own_node()
               << " cannot read its previous mailbox record (a fence it held "
                  "is unknown): "
               << own.status();
  }
  incarnation_ = incarnation;
}

MailboxHeartbeat::~MailboxHeartbeat() { Stop(); }

void MailboxHeartbeat::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_ || stopped_) return;
    started_ = true;
  }
  io_thread_ = std::thread([this] { IoLoop(); });
  observe_thread_ = std::thread([this] { ObserveLoop(); });
}

void MailboxHeartbeat::Stop() {
  bool write_last;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || stopped_) return;
    stopping_ = true;
    write_last = (started_ || ticked_) && !writes_stopped_;
  }
  if (io_thread_.joinable()) io_thread_.join();
  if (observe_thread_.joinable()) observe_thread_.join();
  if (write_last) {
    absl::Status status = WriteRecord(/*shutting_down=*/true);
    if (!status.ok()) {
      LOG(WARNING) << "ha: " << mailbox_->own_node()
                   << " could not write its shutting-down record: " << status;
    }
  }
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

void MailboxHeartbeat::Tick() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_ || stopped_) return;
    ticked_ = true;
  }
  IoRound();
  ObserveRound();
}

void MailboxHeartbeat::AddListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(listener));
}

void MailboxHeartbeat::SetFence(std::optional<Fence> fence) {
  absl::MutexLock lock(&mu_);
  if (!SameFence(fence_, fence)) {
    LOG(INFO) << "ha: " << mailbox_->own_node() << " fence "
              << FenceText(fence_) << " -> " << FenceText(fence);
  }
  fence_ = std::move(fence);
}

std::optional<Fence> MailboxHeartbeat::fence() const {
  absl::MutexLock lock(&mu_);
  return fence_;
}

void MailboxHeartbeat::SetWritesStopped(bool stopped) {
  {
    absl::MutexLock lock(&mu_);
    writes_stopped_ = stopped;
  }
  // Wait for a write already under way: none lands after this returns.
  absl::MutexLock write_lock(&write_mu_);
}

bool MailboxHeartbeat::writes_stopped() const {
  absl::MutexLock lock(&mu_);
  return writes_stopped_;
}

PartnerVerdict MailboxHeartbeat::verdict() const {
  absl::MutexLock lock(&mu_);
  return verdict_;
}

bool MailboxHeartbeat::self_isolated() const {
  absl::MutexLock lock(&mu_);
  return self_isolated_;
}

std::optional<Fence> MailboxHeartbeat::fenced_by_partner() const {
  absl::MutexLock lock(&mu_);
  return fenced_by_partner_;
}

std::optional<MailboxRecord> MailboxHeartbeat::partner_record() const {
  absl::MutexLock lock(&mu_);
  return detector_.partner_record();
}

bool MailboxHeartbeat::partner_mailbox_seen() const {
  absl::MutexLock lock(&mu_);
  return detector_.partner_mailbox_seen();
}

absl::Time MailboxHeartbeat::partner_mailbox_last_change() const {
  absl::MutexLock lock(&mu_);
  return detector_.partner_mailbox_last_change();
}

absl::Time MailboxHeartbeat::interconnect_last_up() const {
  absl::MutexLock lock(&mu_);
  return detector_.interconnect_last_up();
}

uint64_t MailboxHeartbeat::beats_written() const {
  absl::MutexLock lock(&mu_);
  return beats_written_;
}

absl::Status MailboxHeartbeat::WriteRecord(bool shutting_down) {
  const HaState state = state_();  // outside the lock: it is the caller's
  MailboxRecord record;
  record.set_node_name(mailbox_->own_node());
  record.set_incarnation(incarnation_);
  record.set_state(state);
  record.set_written_unix_micros(absl::ToUnixMicros(options_.wall_now()));
  record.set_shutting_down(shutting_down);
  // Held across the write so SetWritesStopped(true) can wait out a write in
  // flight.
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (writes_stopped_) {
      return absl::FailedPreconditionError("mailbox writes are stopped");
    }
    // Every attempt takes a new beat, so the next successful write differs
    // from the last record the partner saw.
    record.set_beat(++beat_);
    if (fence_.has_value()) *record.mutable_fence() = *fence_;
  }
  // Only a record that changes what a restart or the partner must rely on
  // (state, fence, shutting down) waits for fdatasync; a plain beat does not,
  // so a storage device slowed by other writeback (fdatasync taking seconds)
  // does not make a healthy node look isolated. The partner reads the block
  // through the same cache (on a shared array the mailbox would be written
  // with O_DIRECT instead).
  std::string durable_part = absl::StrCat(static_cast<int>(state), "/",
                                          record.fence().SerializeAsString(),
                                          "/", shutting_down);
  const bool durable = durable_part != last_durable_part_;
  absl::Status status = mailbox_->WriteOwn(record, durable);
  if (status.ok() && durable) last_durable_part_ = std::move(durable_part);
  const absl::Time done = options_.now();
  bool was_ok;
  {
    absl::MutexLock lock(&mu_);
    was_ok = last_write_ok_;
    last_write_ok_ = status.ok();
    if (status.ok()) {
      last_write_ok_at_ = done;
      ++beats_written_;
    }
  }
  if (was_ok && !status.ok()) {
    LOG(WARNING) << "ha: " << mailbox_->own_node()
                 << " cannot write its mailbox: " << status;
  } else if (!was_ok && status.ok()) {
    LOG(INFO) << "ha: " << mailbox_->own_node() << " writes its mailbox again";
  }
  return status;
}

void MailboxHeartbeat::IoRound() {
  (void)WriteRecord(/*shutting_down=*/false);  // nothing while stopped

  absl::StatusOr<MailboxRecord> partner = mailbox_->ReadPartner();
  // A torn block is most likely a read racing the partner's write: the next
  // read a moment later finds the whole record.
  if (absl::IsDataLoss(partner.status())) partner = mailbox_->ReadPartner();
  absl::MutexLock lock(&mu_);
  partner_read_ = std::move(partner);
}

void MailboxHeartbeat::ObserveRound() {
  const bool interconnect_up = interconnect_up_();  // outside the lock
  const absl::Time now = options_.now();
  std::vector<std::function<void()>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    // A write that hangs, or no write for a while (the I/O thread stuck in a
    // read), is as bad as a failed one: the partner sees no beats.
    const bool own_write_ok = !writes_stopped_ && last_write_ok_ &&
                              now - last_write_ok_at_ <= options_.write_timeout;
    detector_.Observe(now, interconnect_up, partner_read_, own_write_ok);
    const PartnerVerdict verdict = detector_.verdict();
    const bool isolated = detector_.self_isolated(now);
    std::optional<Fence> fenced = detector_.fenced_by_partner();
    const bool changed = verdict != verdict_ || isolated != self_isolated_ ||
                         !SameFence(fenced, fenced_by_partner_);
    if (verdict != verdict_) {
      LOG(INFO) << "ha: " << mailbox_->own_node() << " sees partner "
                << mailbox_->partner_node() << " "
                << PartnerVerdictName(verdict_) << " -> "
                << PartnerVerdictName(verdict);
    }
    if (isolated != self_isolated_) {
      LOG(WARNING) << "ha: " << mailbox_->own_node()
                   << (isolated ? " is isolated (own mailbox writes failing, "
                                  "interconnect down): must not serve"
                                : " is no longer isolated");
    }
    if (!SameFence(fenced, fenced_by_partner_)) {
      LOG(WARNING) << "ha: " << mailbox_->own_node()
                   << " fenced by partner: " << FenceText(fenced);
    }
    verdict_ = verdict;
    self_isolated_ = isolated;
    fenced_by_partner_ = std::move(fenced);
    if (changed) to_notify = listeners_;
  }
  for (const auto& listener : to_notify) listener();
}

bool MailboxHeartbeat::WaitForStop(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&stopping_), deadline);
}

void MailboxHeartbeat::IoLoop() {
  absl::Time next = absl::Now();
  do {
    IoRound();
    // A fixed cadence; after a slow round start the next one at once rather
    // than bursting to catch up.
    next = std::max(next + options_.interval, absl::Now());
  } while (!WaitForStop(next));
}

void MailboxHeartbeat::ObserveLoop() {
  absl::Time next = absl::Now();
  do {
    ObserveRound();
    next = std::max(next + options_.interval, absl::Now());
  } while (!WaitForStop(next));
}

}  // namespace appliance::ha
