#include "target/scsi/mode_pages.h"

namespace scsi {

ModePages::ModePages(bool write_cache_enabled) {
  // Caching page (SBC-3 6.4.5): 20 bytes; WCE (byte 2 bit 2) changeable.
  Page caching{kCachingPage, {}, {}, {}, {}};
  caching.defaults.assign(20, 0);
  caching.defaults[0] = kCachingPage;
  caching.defaults[1] = 0x12;
  if (write_cache_enabled) caching.defaults[2] = 0x04;
  caching.changeable.assign(20, 0);
  caching.changeable[0] = kCachingPage;
  caching.changeable[1] = 0x12;
  caching.changeable[2] = 0x04;

  // Control page (SPC-4 7.5.7): 12 bytes. TST=000 (one task set), QUEUE
  // ALGORITHM MODIFIER=1 (unrestricted reordering), D_SENSE and SWP
  // changeable, TAS=0, BUSY TIMEOUT PERIOD unlimited.
  Page control{kControlPage, {}, {}, {}, {}};
  control.defaults = {kControlPage, 0x0A, 0x00, 0x10, 0x00, 0x00,
                      0x00,         0x00, 0xFF, 0xFF, 0x00, 0x00};
  control.changeable = {kControlPage, 0x0A, 0x04, 0x00, 0x08, 0x00,
                        0x00,         0x00, 0x00, 0x00, 0x00, 0x00};

  // Informational exceptions control page (SPC-4 7.5.11): 12 bytes, DEXCPT=1
  // (no informational exception reporting), nothing changeable.
  Page ie{kInformationalExceptionsPage, {}, {}, {}, {}};
  ie.defaults = {kInformationalExceptionsPage, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ie.changeable.assign(12, 0);
  ie.changeable[0] = kInformationalExceptionsPage;
  ie.changeable[1] = 0x0A;

  for (Page* p : {&caching, &control, &ie}) {
    p->current = p->defaults;
    p->saved = p->defaults;
    pages_.push_back(std::move(*p));
  }
}

const ModePages::Page* ModePages::Find(uint8_t code) const {
  for (const auto& p : pages_) {
    if (p.code == code) return &p;
  }
  return nullptr;
}

bool ModePages::Append(uint8_t page_code, uint8_t subpage, PageControl pc,
                       std::vector<uint8_t>& out) const {
  auto values = [pc](const Page& p) -> const std::vector<uint8_t>& {
    switch (pc) {
      case PageControl::kCurrent: return p.current;
      case PageControl::kChangeable: return p.changeable;
      case PageControl::kDefault: return p.defaults;
      case PageControl::kSaved: return p.saved;
    }
    return p.current;
  };
  if (page_code == kAllPages) {
    if (subpage != 0x00 && subpage != 0xFF) return false;
    for (const auto& p : pages_) {
      const auto& v = values(p);
      out.insert(out.end(), v.begin(), v.end());
    }
    return true;
  }
  if (subpage != 0) return false;
  const Page* p = Find(page_code);
  if (p == nullptr) return false;
  const auto& v = values(*p);
  out.insert(out.end(), v.begin(), v.end());
  return true;
}

std::optional<SenseData> ModePages::Select(absl::Span<const uint8_t> data,
                                           size_t offset, bool save,
                                           bool* changed) {
  *changed = false;
  std::vector<std::pair<size_t, std::vector<uint8_t>>> updates;
  size_t pos = 0;
  while (pos < data.size()) {
    const auto at = [&](size_t i) { return static_cast<uint16_t>(offset + pos + i); };
    if (pos + 2 > data.size()) return InvalidFieldInParameterList(at(0));
    const uint8_t code = data[pos] & 0x3F;
    if (data[pos] & 0x40) return InvalidFieldInParameterList(at(0), 6);  // SPF
    size_t index = pages_.size();
    for (size_t i = 0; i < pages_.size(); ++i) {
      if (pages_[i].code == code) index = i;
    }
    if (index == pages_.size()) return InvalidFieldInParameterList(at(0), 5);
    const Page& page = pages_[index];
    const size_t length = size_t{data[pos + 1]} + 2;
    if (length != page.current.size()) return InvalidFieldInParameterList(at(1));
    if (pos + length > data.size()) return InvalidFieldInParameterList(at(1));
    std::vector<uint8_t> next(data.begin() + static_cast<ptrdiff_t>(pos),
                              data.begin() + static_cast<ptrdiff_t>(pos + length));
    next[0] = page.current[0];  // PS bit is reserved in MODE SELECT
    for (size_t i = 2; i < length; ++i) {
      const uint8_t differs = (next[i] ^ page.current[i]) & ~page.changeable[i];
      if (differs != 0) {
        uint8_t bit = 7;
        while (!(differs & (1u << bit))) --bit;
        return InvalidFieldInParameterList(at(i), bit);
      }
    }
    updates.emplace_back(index, std::move(next));
    pos += length;
  }
  for (auto& [index, value] : updates) {
    Page& page = pages_[index];
    if (page.current != value) *changed = true;
    if (save) page.saved = value;
    page.current = std::move(value);
  }
  return std::nullopt;
}

void ModePages::RestoreSaved() {
  for (auto& p : pages_) p.current = p.saved;
}

bool ModePages::write_cache_enabled() const {
  return (Find(kCachingPage)->current[2] & 0x04) != 0;
}
bool ModePages::descriptor_sense() const {
  return (Find(kControlPage)->current[2] & 0x04) != 0;
}
bool ModePages::software_write_protect() const {
  return (Find(kControlPage)->current[4] & 0x08) != 0;
}

}  // namespace scsi
