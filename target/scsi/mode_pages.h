// Mode pages (SPC-4 7.5, SBC-3 6.4) of one logical unit: the caching, control
// and informational exceptions control pages, each with current, changeable,
// default and saved values. MODE SENSE reads them; MODE SELECT validates a
// whole parameter list against the changeable masks before applying any of it.
// Saved values live in memory only (they survive resets, not restarts).
// Not thread-safe: the engine guards it with the LU's lock.
#ifndef TARGET_SCSI_MODE_PAGES_H_
#define TARGET_SCSI_MODE_PAGES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"
#include "target/scsi/sense.h"

namespace scsi {

// PAGE CONTROL field of MODE SENSE.
enum class PageControl : uint8_t {
  kCurrent = 0,
  kChangeable = 1,
  kDefault = 2,
  kSaved = 3,
};

class ModePages {
 public:
  static constexpr uint8_t kCachingPage = 0x08;
  static constexpr uint8_t kControlPage = 0x0A;
  static constexpr uint8_t kInformationalExceptionsPage = 0x1C;
  static constexpr uint8_t kAllPages = 0x3F;

  // write_cache_enabled: the default (and initial) WCE bit.
  explicit ModePages(bool write_cache_enabled);

  // Appends page_code (or every page for kAllPages) to out. Returns false when
  // the page/subpage is not supported. Subpage 0xFF with kAllPages is accepted
  // (no page has subpages).
  bool Append(uint8_t page_code, uint8_t subpage, PageControl pc,
              std::vector<uint8_t>& out) const;

  // Applies the mode pages of a MODE SELECT parameter list (the part after
  // the header and block descriptors). offset: where pages start in the
  // parameter list, for the sense field pointer. save: SP bit. Applies
  // nothing on error. *changed is set when a current value changed.
  std::optional<SenseData> Select(absl::Span<const uint8_t> pages, size_t offset,
                                  bool save, bool* changed);

  // Current values reset to saved ones (logical unit reset).
  void RestoreSaved();

  bool write_cache_enabled() const;   // caching page WCE
  bool descriptor_sense() const;      // control page D_SENSE
  bool software_write_protect() const;  // control page SWP

 private:
  struct Page {
    uint8_t code;
    std::vector<uint8_t> current, changeable, defaults, saved;
  };
  const Page* Find(uint8_t code) const;

  std::vector<Page> pages_;
};

}  // namespace scsi

#endif  // TARGET_SCSI_MODE_PAGES_H_
