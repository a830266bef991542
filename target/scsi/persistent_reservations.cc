#include "target/scsi/persistent_reservations.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "target/scsi/bytes.h"

namespace scsi {
namespace {

// PERSISTENT RESERVE OUT service actions.
constexpr uint8_t kRegister = 0x00;
constexpr uint8_t kReserve = 0x01;
constexpr uint8_t kRelease = 0x02;
constexpr uint8_t kClear = 0x03;
constexpr uint8_t kPreempt = 0x04;
constexpr uint8_t kPreemptAndAbort = 0x05;
constexpr uint8_t kRegisterAndIgnoreExistingKey = 0x06;
constexpr uint8_t kRegisterAndMove = 0x07;

// PERSISTENT RESERVE IN service actions.
constexpr uint8_t kReadKeys = 0x00;
constexpr uint8_t kReadReservation = 0x01;
constexpr uint8_t kReportCapabilities = 0x02;
constexpr uint8_t kReadFullStatus = 0x03;

constexpr uint8_t kProtocolIscsi = 0x5;
constexpr size_t kBasicParameterListLength = 24;

bool ValidType(uint8_t t) {
  return t == 1 || t == 3 || t == 5 || t == 6 || t == 7 || t == 8;
}

SenseData ParameterListLengthError() {
  return IllegalRequest(asc::kParameterListLengthError);
}

// Parses one iSCSI TransportID (SPC-4 7.6.4.6) at data; *length receives its
// size. Returns nullopt (and sets *error) when malformed.
std::optional<PrRegistration> ParseTransportId(absl::Span<const uint8_t> data,
                                               size_t base_offset, size_t* length,
                                               SenseData* error) {
  if (data.size() < 4) {
    *error = ParameterListLengthError();
    return std::nullopt;
  }
  const uint8_t format = data[0] >> 6;
  if ((data[0] & 0x0F) != kProtocolIscsi || format > 1) {
    *error = InvalidFieldInParameterList(static_cast<uint16_t>(base_offset));
    return std::nullopt;
  }
  const size_t additional = GetBe16(&data[2]);
  if (additional < 4 || 4 + additional > data.size()) {
    *error = InvalidFieldInParameterList(static_cast<uint16_t>(base_offset + 2));
    return std::nullopt;
  }
  const char* name = reinterpret_cast<const char*>(&data[4]);
  size_t name_len = strnlen(name, additional);
  PrRegistration r;
  r.initiator_port_name.assign(name, name_len);
  if (r.initiator_port_name.empty()) {
    *error = InvalidFieldInParameterList(static_cast<uint16_t>(base_offset + 4));
    return std::nullopt;
  }
  r.name_only = format == 0;
  if (format == 1 && absl::AsciiStrToLower(r.initiator_port_name).find(",i,0x") == std::string::npos) {
    *error = InvalidFieldInParameterList(static_cast<uint16_t>(base_offset + 4));
    return std::nullopt;
  }
  *length = 4 + additional;
  return r;
}

// Encodes an iSCSI TransportID for READ FULL STATUS.
void AppendTransportId(const PrRegistration& r, std::vector<uint8_t>& out) {
  const uint8_t format = r.name_only ? 0 : 1;
  size_t len = r.initiator_port_name.size() + 1;  // NUL terminated
  len = (len + 3) & ~size_t{3};
  if (len < 20) len = 20;
  ByteWriter w(out);
  w.U8(static_cast<uint8_t>((format << 6) | kProtocolIscsi));
  w.U8(0);
  w.U16(static_cast<uint16_t>(len));
  w.Bytes(reinterpret_cast<const uint8_t*>(r.initiator_port_name.data()),
          r.initiator_port_name.size());
  w.Zeros(len - r.initiator_port_name.size());
}

PrOutResult Conflict() {
  PrOutResult r;
  r.conflict = true;
  return r;
}

PrOutResult Check(SenseData sense) {
  PrOutResult r;
  r.sense = std::move(sense);
  return r;
}

// Removes registration index i, releasing the reservation when its holder
// goes (SPC-4 5.12.11.2.4 / 5.12.11.2.5).
void Unregister(PrState& s, size_t i, PrOutResult& result) {
  const PrRegistration gone = s.registrations[i];
  const bool was_holder = s.reserved && s.IsHolder(gone);
  s.registrations.erase(s.registrations.begin() + static_cast<ptrdiff_t>(i));
  if (!s.reserved) return;
  if (s.AllRegistrantsType()) {
    if (s.registrations.empty()) s.reserved = false;
    return;
  }
  if (!was_holder) return;
  s.reserved = false;
  if (s.type == PrType::kWriteExclusiveRegistrantsOnly ||
      s.type == PrType::kExclusiveAccessRegistrantsOnly) {
    for (const auto& r : s.registrations) {
      result.unit_attentions.push_back({r, asc::kReservationsReleased});
    }
  }
}

// Removes every registration with key (except the issuer's); returns them.
std::vector<PrRegistration> RemoveByKey(PrState& s, uint64_t key,
                                        const PrRegistration& issuer) {
  std::vector<PrRegistration> removed;
  auto it = std::remove_if(s.registrations.begin(), s.registrations.end(),
                           [&](const PrRegistration& r) {
                             if (r.key != key || r.SameNexus(issuer)) return false;
                             removed.push_back(r);
                             return true;
                           });
  s.registrations.erase(it, s.registrations.end());
  return removed;
}

}  // namespace

bool PrRegistration::Matches(const ItNexus& nexus) const {
  const bool port_matches =
      name_only ? absl::EqualsIgnoreCase(initiator_port_name, nexus.InitiatorName())
                : absl::EqualsIgnoreCase(initiator_port_name, nexus.initiator_port_name);
  return port_matches &&
         (all_target_ports || relative_target_port_id == nexus.relative_target_port_id);
}

bool PrRegistration::SameNexus(const PrRegistration& o) const {
  return name_only == o.name_only && all_target_ports == o.all_target_ports &&
         absl::EqualsIgnoreCase(initiator_port_name, o.initiator_port_name) &&
         (all_target_ports || relative_target_port_id == o.relative_target_port_id);
}

const PrRegistration* PrState::Find(const ItNexus& nexus) const {
  for (const auto& r : registrations) {
    if (r.Matches(nexus)) return &r;
  }
  return nullptr;
}

bool PrState::AllRegistrantsType() const {
  return type == PrType::kWriteExclusiveAllRegistrants ||
         type == PrType::kExclusiveAccessAllRegistrants;
}

bool PrState::IsHolder(const PrRegistration& r) const {
  if (!reserved) return false;
  return AllRegistrantsType() || holder.SameNexus(r);
}

uint64_t PrState::HolderKey() const {
  if (!reserved || AllRegistrantsType()) return 0;
  for (const auto& r : registrations) {
    if (holder.SameNexus(r)) return r.key;
  }
  return 0;
}

bool PrConflicts(const PrState& s, const ItNexus& nexus, ReservationAccess access) {
  if (!s.reserved || access == ReservationAccess::kAllowed) return false;
  const PrRegistration* r = s.Find(nexus);
  if (r != nullptr && s.IsHolder(*r)) return false;
  switch (s.type) {
    case PrType::kWriteExclusive:
      return access == ReservationAccess::kWrite;
    case PrType::kExclusiveAccess:
      return true;
    case PrType::kWriteExclusiveRegistrantsOnly:
    case PrType::kWriteExclusiveAllRegistrants:
      return r == nullptr && access == ReservationAccess::kWrite;
    case PrType::kExclusiveAccessRegistrantsOnly:
    case PrType::kExclusiveAccessAllRegistrants:
      return r == nullptr;
  }
  return true;
}

PrOutResult PersistentReserveOut(PrState& s, const ItNexus& nexus,
                                 absl::Span<const uint8_t> cdb,
                                 absl::Span<const uint8_t> params,
                                 bool ptpl_capable) {
  const uint8_t sa = cdb[1] & 0x1F;
  const uint8_t scope = cdb[2] >> 4;
  const uint8_t type = cdb[2] & 0x0F;
  const uint32_t list_length = GetBe32(&cdb[5]);
  if (sa > kRegisterAndMove) return Check(InvalidFieldInCdb(1, 4));
  if (list_length > params.size()) return Check(ParameterListLengthError());
  params = params.subspan(0, list_length);
  if (params.size() < kBasicParameterListLength) return Check(ParameterListLengthError());

  const uint64_t key = GetBe64(&params[0]);
  const uint64_t sa_key = GetBe64(&params[8]);
  const PrRegistration* found = s.Find(nexus);
  PrRegistration issuer;
  issuer.initiator_port_name = nexus.initiator_port_name;
  issuer.relative_target_port_id = nexus.relative_target_port_id;
  if (found != nullptr) issuer = *found;

  auto check_type_scope = [&]() -> std::optional<SenseData> {
    if (scope != 0) return InvalidFieldInCdb(2, 7);
    if (!ValidType(type)) return InvalidFieldInCdb(2, 3);
    return std::nullopt;
  };

  if (sa == kRegisterAndMove) {
    const bool unreg = params[17] & 0x02;
    const bool aptpl = params[17] & 0x01;
    const uint16_t rtpi = GetBe16(&params[18]);
    const uint32_t tid_length = GetBe32(&params[20]);
    if (found == nullptr || key != found->key) return Conflict();
    if (!s.reserved || !s.IsHolder(*found) || s.AllRegistrantsType()) return Conflict();
    if (aptpl && !ptpl_capable) return Check(InvalidFieldInParameterList(17, 0));
    if (sa_key == 0) return Check(InvalidFieldInParameterList(8));
    if (kBasicParameterListLength + tid_length > params.size()) {
      return Check(ParameterListLengthError());
    }
    size_t consumed = 0;
    SenseData error;
    auto dest = ParseTransportId(params.subspan(kBasicParameterListLength, tid_length),
                                 kBasicParameterListLength, &consumed, &error);
    if (!dest) return Check(error);
    if (dest->name_only) return Check(InvalidFieldInParameterList(24));
    dest->relative_target_port_id = rtpi;
    dest->key = sa_key;
    if (dest->SameNexus(issuer) ||
        (issuer.all_target_ports &&
         absl::EqualsIgnoreCase(dest->initiator_port_name, issuer.initiator_port_name))) {
      return Check(InvalidFieldInParameterList(18));
    }
    bool exists = false;
    for (const auto& r : s.registrations) exists |= r.SameNexus(*dest);
    if (!exists) s.registrations.push_back(*dest);
    s.holder = *dest;
    if (unreg) {
      for (size_t i = 0; i < s.registrations.size(); ++i) {
        if (s.registrations[i].SameNexus(issuer)) {
          s.registrations.erase(s.registrations.begin() + static_cast<ptrdiff_t>(i));
          break;
        }
      }
    }
    s.aptpl = aptpl;
    ++s.generation;
    PrOutResult r;
    r.changed = true;
    return r;
  }

  const bool spec_i_pt = params[20] & 0x08;
  const bool all_tg_pt = params[20] & 0x04;
  const bool aptpl = params[20] & 0x01;
  if (!spec_i_pt && params.size() != kBasicParameterListLength) {
    return Check(ParameterListLengthError());
  }
  PrOutResult result;
  switch (sa) {
    case kRegister:
    case kRegisterAndIgnoreExistingKey: {
      if (sa == kRegisterAndIgnoreExistingKey && spec_i_pt) {
        return Check(InvalidFieldInParameterList(20, 3));
      }
      if (found == nullptr) {
        if (sa == kRegister && key != 0) return Conflict();
        if (sa_key == 0) return result;  // nothing to do
        if (aptpl && !ptpl_capable) return Check(InvalidFieldInParameterList(20, 0));
        std::vector<PrRegistration> added;
        PrRegistration self;
        self.key = sa_key;
        self.initiator_port_name = nexus.initiator_port_name;
        self.relative_target_port_id = nexus.relative_target_port_id;
        self.all_target_ports = all_tg_pt;
        added.push_back(self);
        if (spec_i_pt) {
          if (params.size() < kBasicParameterListLength + 4) {
            return Check(ParameterListLengthError());
          }
          const uint32_t tids_length = GetBe32(&params[24]);
          if (28 + size_t{tids_length} > params.size()) return Check(ParameterListLengthError());
          size_t pos = 28;
          while (pos < 28 + size_t{tids_length}) {
            size_t consumed = 0;
            SenseData error;
            auto tid = ParseTransportId(params.subspan(pos, 28 + tids_length - pos), pos,
                                        &consumed, &error);
            if (!tid) return Check(error);
            tid->key = sa_key;
            tid->relative_target_port_id = nexus.relative_target_port_id;
            tid->all_target_ports = all_tg_pt;
            for (const auto& r : s.registrations) {
              if (r.SameNexus(*tid)) {
                return Check(InvalidFieldInParameterList(static_cast<uint16_t>(pos)));
              }
            }
            bool duplicate = false;
            for (const auto& r : added) duplicate |= r.SameNexus(*tid);
            if (!duplicate) added.push_back(*tid);
            pos += consumed;
          }
        }
        for (auto& r : added) s.registrations.push_back(std::move(r));
      } else {
        if (sa == kRegister && key != found->key) return Conflict();
        if (spec_i_pt) return Check(InvalidFieldInParameterList(20, 3));
        if (aptpl && !ptpl_capable) return Check(InvalidFieldInParameterList(20, 0));
        const size_t index = static_cast<size_t>(found - s.registrations.data());
        if (sa_key == 0) {
          Unregister(s, index, result);
        } else {
          s.registrations[index].key = sa_key;
        }
      }
      s.aptpl = aptpl;
      ++s.generation;
      result.changed = true;
      return result;
    }
    case kReserve: {
      if (found == nullptr || key != found->key) return Conflict();
      if (auto error = check_type_scope()) return Check(*error);
      if (!s.reserved) {
        s.reserved = true;
        s.type = static_cast<PrType>(type);
        s.holder = *found;
        result.changed = true;
        return result;
      }
      if (s.IsHolder(*found) && s.type == static_cast<PrType>(type)) return result;
      return Conflict();
    }
    case kRelease: {
      if (found == nullptr || key != found->key) return Conflict();
      if (!s.reserved || !s.IsHolder(*found)) return result;
      if (scope != 0 || type != static_cast<uint8_t>(s.type)) {
        return Check(IllegalRequest(asc::kInvalidReleaseOfPersistentReservation));
      }
      s.reserved = false;
      if (s.type != PrType::kWriteExclusive && s.type != PrType::kExclusiveAccess) {
        for (const auto& r : s.registrations) {
          result.unit_attentions.push_back({r, asc::kReservationsReleased});
        }
      }
      result.changed = true;
      return result;
    }
    case kClear: {
      if (found == nullptr || key != found->key) return Conflict();
      for (const auto& r : s.registrations) {
        if (!r.SameNexus(issuer)) {
          result.unit_attentions.push_back({r, asc::kReservationsPreempted});
        }
      }
      s.registrations.clear();
      s.reserved = false;
      ++s.generation;
      result.changed = true;
      return result;
    }
    case kPreempt:
    case kPreemptAndAbort: {
      if (found == nullptr || key != found->key) return Conflict();
      if (auto error = check_type_scope()) return Check(*error);
      std::vector<PrRegistration> removed;
      if (s.reserved && s.AllRegistrantsType()) {
        if (sa_key == 0) {
          for (const auto& r : s.registrations) {
            if (!r.SameNexus(issuer)) removed.push_back(r);
          }
          s.registrations.erase(
              std::remove_if(s.registrations.begin(), s.registrations.end(),
                             [&](const PrRegistration& r) { return !r.SameNexus(issuer); }),
              s.registrations.end());
          s.type = static_cast<PrType>(type);
          s.holder = issuer;
        } else {
          removed = RemoveByKey(s, sa_key, issuer);
          if (removed.empty()) return Conflict();
        }
      } else if (s.reserved && sa_key == s.HolderKey()) {
        removed = RemoveByKey(s, sa_key, issuer);
        const PrType old_type = s.type;
        s.type = static_cast<PrType>(type);
        s.holder = issuer;
        if (old_type != s.type) {
          for (const auto& r : s.registrations) {
            if (!r.SameNexus(issuer)) {
              result.unit_attentions.push_back({r, asc::kReservationsReleased});
            }
          }
        }
      } else {
        if (sa_key == 0) return Check(InvalidFieldInParameterList(8));
        removed = RemoveByKey(s, sa_key, issuer);
        if (removed.empty()) return Conflict();
      }
      for (const auto& r : removed) {
        result.unit_attentions.push_back({r, asc::kRegistrationsPreempted});
      }
      if (sa == kPreemptAndAbort) result.abort_tasks_of = removed;
      ++s.generation;
      result.changed = true;
      return result;
    }
  }
  return Check(InvalidFieldInCdb(1, 4));
}

PrInResult PersistentReserveIn(const PrState& s, absl::Span<const uint8_t> cdb,
                               bool ptpl_capable) {
  PrInResult result;
  const uint8_t sa = cdb[1] & 0x1F;
  ByteWriter w(result.data);
  switch (sa) {
    case kReadKeys:
      w.U32(s.generation);
      w.U32(static_cast<uint32_t>(8 * s.registrations.size()));
      for (const auto& r : s.registrations) w.U64(r.key);
      return result;
    case kReadReservation:
      w.U32(s.generation);
      if (!s.reserved) {
        w.U32(0);
        return result;
      }
      w.U32(16);
      w.U64(s.HolderKey());
      w.U32(0);  // obsolete
      w.U8(0);
      w.U8(static_cast<uint8_t>(s.type));  // scope 0 (LU_SCOPE)
      w.U16(0);
      return result;
    case kReportCapabilities:
      w.U16(8);
      // CRH=0, SIP_C=1, ATP_C=1, PTPL_C
      w.U8(static_cast<uint8_t>(0x08 | 0x04 | (ptpl_capable ? 0x01 : 0)));
      // TMV=1, ALLOW COMMANDS=000, PTPL_A
      w.U8(static_cast<uint8_t>(0x80 | (s.aptpl ? 0x01 : 0)));
      // Type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
      w.U8(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
      w.U8(0x01);
      w.U16(0);
      return result;
    case kReadFullStatus: {
      w.U32(s.generation);
      w.U32(0);  // patched below
      for (const auto& r : s.registrations) {
        const bool holder = s.IsHolder(r);
        w.U64(r.key);
        w.U32(0);
        w.U8(static_cast<uint8_t>((r.all_target_ports ? 0x02 : 0) | (holder ? 0x01 : 0)));
        w.U8(holder ? static_cast<uint8_t>(s.type) : 0);
        w.U32(0);
        w.U16(r.all_target_ports ? 0 : r.relative_target_port_id);
        std::vector<uint8_t> tid;
        AppendTransportId(r, tid);
        w.U32(static_cast<uint32_t>(tid.size()));
        w.Bytes(tid.data(), tid.size());
      }
      PutBe32(&result.data[4], static_cast<uint32_t>(result.data.size() - 8));
      return result;
    }
    default:
      result.sense = InvalidFieldInCdb(1, 4);
      return result;
  }
}

std::string SerializePrState(const PrState& s) {
  std::string out = absl::StrFormat("aptpl %d\ngeneration %u\nsequence %u\n",
                                    s.aptpl ? 1 : 0, s.generation, s.save_sequence);
  for (const auto& r : s.registrations) {
    absl::StrAppendFormat(&out, "reg %016x %d %u %d %s\n", r.key, r.name_only ? 1 : 0,
                          r.relative_target_port_id, r.all_target_ports ? 1 : 0,
                          r.initiator_port_name);
  }
  if (s.reserved) {
    const auto& h = s.holder;
    absl::StrAppendFormat(&out, "reservation %d %d %u %d %s\n", static_cast<int>(s.type),
                          h.name_only ? 1 : 0, h.relative_target_port_id,
                          h.all_target_ports ? 1 : 0, h.initiator_port_name);
  }
  return out;
}

absl::StatusOr<PrState> ParsePrState(absl::string_view text) {
  PrState s;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 5));
    auto bad = [&] { return absl::DataLossError(absl::StrCat("bad PR state line: ", line)); };
    uint32_t a = 0, b = 0, c = 0, d = 0;
    if (f[0] == "aptpl" && f.size() == 2 && absl::SimpleAtoi(f[1], &a)) {
      s.aptpl = a != 0;
    } else if (f[0] == "generation" && f.size() == 2 && absl::SimpleAtoi(f[1], &a)) {
      s.generation = a;
    } else if (f[0] == "sequence" && f.size() == 2 &&
               absl::SimpleAtoi(f[1], &s.save_sequence)) {
    } else if ((f[0] == "reg" || f[0] == "reservation") && f.size() == 6 &&
               absl::SimpleAtoi(f[2], &b) && absl::SimpleAtoi(f[3], &c) &&
               absl::SimpleAtoi(f[4], &d)) {
      PrRegistration r;
      r.name_only = b != 0;
      r.relative_target_port_id = static_cast<uint16_t>(c);
      r.all_target_ports = d != 0;
      r.initiator_port_name = std::string(f[5]);
      if (f[0] == "reg") {
        if (!absl::SimpleHexAtoi(f[1], &r.key)) return bad();
        s.registrations.push_back(std::move(r));
      } else {
        if (!absl::SimpleAtoi(f[1], &a) || !ValidType(static_cast<uint8_t>(a))) return bad();
        s.reserved = true;
        s.type = static_cast<PrType>(a);
        s.holder = std::move(r);
      }
    } else {
      return bad();
    }
  }
  return s;
}

}  // namespace scsi
