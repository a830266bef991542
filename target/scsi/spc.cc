// SPC-4 commands of scsi::Engine: identification, sense, mode pages, ALUA
// reporting, command support reporting and reservations.
#include <algorithm>
#include <cctype>
#include <utility>

#include "target/scsi/bytes.h"
#include "target/scsi/engine_impl.h"

namespace scsi {

using internal::CommandInfo;
using internal::CommandPtr;
using internal::CompletionBarrier;
using internal::LogicalUnit;

namespace {

constexpr uint16_t kVersionSam5 = 0x00A0;
constexpr uint16_t kVersionIscsi = 0x0960;
constexpr uint16_t kVersionSpc4 = 0x0460;
constexpr uint16_t kVersionSbc3 = 0x04C0;

constexpr uint8_t kSupportedVpdPages[] = {0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2};

// Code set / designator type / association values of VPD 0x83 (SPC-4 7.8.6).
constexpr uint8_t kCodeSetBinary = 0x1;
constexpr uint8_t kCodeSetAscii = 0x2;
constexpr uint8_t kCodeSetUtf8 = 0x3;
constexpr uint8_t kPiv = 0x80;
constexpr uint8_t kAssocLu = 0x00;
constexpr uint8_t kAssocTargetPort = 0x10;
constexpr uint8_t kAssocTargetDevice = 0x20;
constexpr uint8_t kTypeT10VendorId = 0x1;
constexpr uint8_t kTypeNaa = 0x3;
constexpr uint8_t kTypeRelativeTargetPort = 0x4;
constexpr uint8_t kTypeTargetPortGroup = 0x5;
constexpr uint8_t kTypeScsiNameString = 0x8;

void AppendDesignator(std::vector<uint8_t>& out, uint8_t proto_codeset, uint8_t flags,
                      const std::vector<uint8_t>& value) {
  out.push_back(proto_codeset);
  out.push_back(flags);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
}

// A SCSI name string designator value: NUL terminated, padded to 4 bytes.
std::vector<uint8_t> NameString(const std::string& name) {
  std::vector<uint8_t> v(name.begin(), name.end());
  v.push_back(0);
  while (v.size() % 4 != 0) v.push_back(0);
  return v;
}

std::vector<uint8_t> VpdPage(uint8_t page, std::vector<uint8_t> body) {
  std::vector<uint8_t> out = {0x00, page, 0, 0};
  PutBe16(&out[2], static_cast<uint16_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A LUN of the pair (LunDirectory) that another node's engine serves: the
// routing layer should have sent the command there.
SenseData NotConnectedHere() {
  SenseData s;
  s.key = SenseKey::kNotReady;
  s.code = asc::kLogicalUnitNotAccessibleTargetPortInUnavailableState;
  return s;
}

}  // namespace

std::vector<uint8_t> Engine::Impl::StandardInquiry(const LogicalUnit* lu,
                                                   bool connected_elsewhere) const {
  std::vector<uint8_t> d;
  ByteWriter w(d);
  // PQ 000b: connected here; 001b: a LU of the pair (every one is direct
  // access, type 00h) not connected here; 011b + 1Fh: no LU.
  w.U8(lu ? 0x00 : connected_elsewhere ? 0x20 : 0x7F);
  w.U8(0x00);              // RMB=0
  w.U8(0x06);              // VERSION: SPC-4
  w.U8(0x12);              // HISUP=1, RESPONSE DATA FORMAT=2
  w.U8(0);                 // ADDITIONAL LENGTH, patched
  w.U8(0x18);              // TPGS=01b: implicit ALUA only; 3PC: EXTENDED COPY
  w.U8(0x10);              // MULTIP: more than one target port
  w.U8(0x02);              // CMDQUE
  const std::string& vendor = lu ? lu->options.vendor_id : options_.vendor_id;
  const std::string& product = lu ? lu->options.product_id : options_.product_id;
  const std::string& revision = lu ? lu->options.product_revision : options_.product_revision;
  w.Padded(vendor, 8);
  w.Padded(product, 16);
  w.Padded(revision, 4);
  w.Zeros(20);  // vendor specific
  w.U8(0);      // CLOCKING, QAS, IUS
  w.U8(0);
  for (uint16_t v : {kVersionSam5, kVersionIscsi, kVersionSpc4, kVersionSbc3}) w.U16(v);
  w.Zeros(8);  // four unused version descriptors
  d[4] = static_cast<uint8_t>(d.size() - 5);
  return d;
}

void Engine::Impl::TestUnitReady(const CommandPtr& cmd) { CompleteGood(cmd); }

void Engine::Impl::Inquiry(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  if (cdb[1] & 0x02) return CompleteSense(cmd, InvalidFieldInCdb(1, 1));  // CMDDT
  const bool evpd = cdb[1] & 0x01;
  const uint8_t page = cdb[2];
  if (!evpd && page != 0) return CompleteSense(cmd, InvalidFieldInCdb(2));
  const LogicalUnit* lu = cmd->lu.get();
  const bool elsewhere = lu == nullptr && InDirectory(cmd->task->lun);
  if (!evpd) return CompleteData(cmd, StandardInquiry(lu, elsewhere));
  if (elsewhere) return CompleteSense(cmd, NotConnectedHere());
  if (lu == nullptr) return CompleteSense(cmd, IllegalRequest(asc::kLogicalUnitNotSupported));

  const ItNexus& nexus = cmd->nexus();
  const LogicalUnitOptions& o = lu->options;
  const uint32_t bs = lu->block_size;
  std::vector<uint8_t> body;
  ByteWriter w(body);
  switch (page) {
    case 0x00:
      for (uint8_t p : kSupportedVpdPages) w.U8(p);
      break;
    case 0x80:
      w.Padded(lu->identity.serial, lu->identity.serial.size());
      break;
    case 0x83: {
      const uint8_t proto = static_cast<uint8_t>(options_.protocol_identifier << 4);
      auto naa = HexToBytes(lu->identity.naa_id);
      if (naa.size() == 8 || naa.size() == 16) {
        AppendDesignator(body, kCodeSetBinary, kAssocLu | kTypeNaa, naa);
      }
      std::vector<uint8_t> t10;
      ByteWriter t(t10);
      t.Padded(o.vendor_id, 8);
      t.Padded(lu->identity.serial, lu->identity.serial.size());
      AppendDesignator(body, kCodeSetAscii, kAssocLu | kTypeT10VendorId, t10);
      std::vector<uint8_t> rtpi = {0, 0, 0, 0};
      PutBe16(&rtpi[2], nexus.relative_target_port_id);
      AppendDesignator(body, proto | kCodeSetBinary,
                       kPiv | kAssocTargetPort | kTypeRelativeTargetPort, rtpi);
      std::vector<uint8_t> tpg = {0, 0, 0, 0};
      PutBe16(&tpg[2], nexus.target_port_group);
      AppendDesignator(body, proto | kCodeSetBinary,
                       kPiv | kAssocTargetPort | kTypeTargetPortGroup, tpg);
      if (!nexus.target_port_name.empty()) {
        AppendDesignator(body, proto | kCodeSetUtf8,
                         kPiv | kAssocTargetPort | kTypeScsiNameString,
                         NameString(nexus.target_port_name));
        const auto comma = nexus.target_port_name.find(",t,");
        AppendDesignator(body, proto | kCodeSetUtf8,
                         kPiv | kAssocTargetDevice | kTypeScsiNameString,
                         NameString(nexus.target_port_name.substr(0, comma)));
      }
      break;
    }
    case 0x86:  // Extended INQUIRY data
      w.Zeros(60);
      body[1] = options_.honor_task_attributes ? 0x07 : 0x01;  // HEADSUP ORDSUP SIMPSUP
      body[2] = 0x01;  // V_SUP: volatile cache
      body[3] = 0x01;  // LUICLR
      break;
    case 0xB0: {  // Block limits
      const uint32_t max_blocks = o.max_transfer_bytes / bs;
      w.U8(0x01);  // WSNZ: WRITE SAME with 0 blocks is not supported
      w.U8(o.max_compare_and_write_blocks);
      w.U16(static_cast<uint16_t>(lu->blocks_per_physical()));  // optimal granularity
      w.U32(max_blocks);
      w.U32(std::max<uint32_t>(1, o.optimal_transfer_bytes / bs));
      w.U32(max_blocks);  // maximum prefetch length
      w.U32(o.thin_provisioned ? o.max_unmap_blocks : 0);
      w.U32(o.thin_provisioned ? o.max_unmap_descriptors : 0);
      w.U32(std::max(o.unmap_granularity, lu->blocks_per_physical()));
      w.U32(0x80000000u);  // UGAVALID=1, UNMAP GRANULARITY ALIGNMENT 0
      w.U64(MaxWriteSameBlocks(*lu));
      w.U32(MaxAtomicTransferBlocks(*lu));  // MAXIMUM ATOMIC TRANSFER LENGTH
      w.U32(AtomicUnitBlocks(*lu));         // ATOMIC ALIGNMENT
      w.U32(AtomicUnitBlocks(*lu));         // ATOMIC TRANSFER LENGTH GRANULARITY
      w.Zeros(60 - body.size());  // no atomic boundaries
      break;
    }
    case 0xB1:  // Block device characteristics
      w.U16(0x0001);  // non-rotating medium
      w.Zeros(58);
      break;
    case 0xB2:  // Logical block provisioning
      w.U8(0);      // threshold exponent
      w.U8(o.thin_provisioned ? 0xE4 : 0x00);  // LBPU LBPWS LBPWS10 LBPRZ
      w.U8(o.thin_provisioned ? 0x02 : 0x00);  // provisioning type: thin
      w.U8(0);
      break;
    default:
      return CompleteSense(cmd, InvalidFieldInCdb(2));
  }
  CompleteData(cmd, VpdPage(page, std::move(body)));
}

void Engine::Impl::ReportLuns(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  const uint8_t select = cdb[2];
  if (GetBe32(&cdb[6]) < 16) return CompleteSense(cmd, InvalidFieldInCdb(6));
  if (select != 0x00 && select != 0x01 && select != 0x02) {
    return CompleteSense(cmd, InvalidFieldInCdb(2));
  }
  std::vector<uint64_t> luns;
  if (select != 0x01) {
    luns = Luns();
    if (options_.lun_directory) {
      for (uint64_t lun : options_.lun_directory->ReportedLuns()) {
        if (lun < 16384) luns.push_back(lun);
      }
      std::sort(luns.begin(), luns.end());
      luns.erase(std::unique(luns.begin(), luns.end()), luns.end());
    }
  }
  std::vector<uint8_t> d(8, 0);
  PutBe32(&d[0], static_cast<uint32_t>(luns.size() * 8));
  for (uint64_t lun : luns) {
    uint8_t e[8] = {0};
    if (lun < 256) {
      e[1] = static_cast<uint8_t>(lun);
    } else {
      e[0] = static_cast<uint8_t>(0x40 | (lun >> 8));  // flat space addressing
      e[1] = static_cast<uint8_t>(lun);
    }
    d.insert(d.end(), e, e + 8);
  }
  ClearUaEverywhere(cmd->nexus_key, asc::kReportedLunsDataHasChanged);
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::RequestSense(const CommandPtr& cmd) {
  const bool desc = cmd->cdb()[1] & 0x01;
  SenseData sense;
  if (!cmd->lu) {
    sense = InDirectory(cmd->task->lun) ? NotConnectedHere()
                                        : IllegalRequest(asc::kLogicalUnitNotSupported);
  } else {
    bool reported_luns = false;
    {
      absl::MutexLock lock(&cmd->lu->mu);
      auto it = cmd->lu->nexuses.find(cmd->nexus_key);
      if (it != cmd->lu->nexuses.end() && !it->second.unit_attentions.empty()) {
        sense = UnitAttention(it->second.unit_attentions.front());
        it->second.unit_attentions.pop_front();
        reported_luns = sense.code == asc::kReportedLunsDataHasChanged;
      }
    }
    if (reported_luns) ClearUaEverywhere(cmd->nexus_key, asc::kReportedLunsDataHasChanged);
  }
  CompleteData(cmd, BuildSense(sense, desc ? SenseFormat::kDescriptor : SenseFormat::kFixed));
}

void Engine::Impl::ModeSense(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  LogicalUnit& lu = *cmd->lu;
  const bool ten = cdb[0] == 0x5A;
  const bool dbd = cdb[1] & 0x08;
  const bool llbaa = ten && (cdb[1] & 0x10);
  const auto pc = static_cast<PageControl>(cdb[2] >> 6);
  const uint8_t page = cdb[2] & 0x3F;
  const uint8_t subpage = cdb[3];
  if (subpage != 0 && !(page == ModePages::kAllPages && subpage == 0xFF)) {
    return CompleteSense(cmd, InvalidFieldInCdb(3));
  }
  std::vector<uint8_t> pages;
  bool supported = false;
  {
    absl::MutexLock lock(&lu.mu);
    supported = lu.mode.Append(page, subpage, pc, pages);
  }
  if (!supported) return CompleteSense(cmd, InvalidFieldInCdb(2, 5));
  const uint64_t capacity = lu.Capacity();
  std::vector<uint8_t> bd;
  if (!dbd) {
    ByteWriter w(bd);
    if (llbaa) {
      w.U64(capacity);
      w.U32(0);  // density code, reserved
      w.U32(lu.block_size);
    } else {
      w.U32(capacity > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<uint32_t>(capacity));
      w.U8(0);  // density code
      w.U8(static_cast<uint8_t>(lu.block_size >> 16));
      w.U16(static_cast<uint16_t>(lu.block_size));
    }
  }
  const uint8_t device_specific =
      static_cast<uint8_t>((WriteProtected(lu) ? 0x80 : 0) | 0x10);  // WP, DPOFUA
  std::vector<uint8_t> d;
  ByteWriter w(d);
  if (ten) {
    w.U16(static_cast<uint16_t>(6 + bd.size() + pages.size()));
    w.U8(0);
    w.U8(device_specific);
    w.U8(llbaa && !dbd ? 0x01 : 0x00);  // LONGLBA
    w.U8(0);
    w.U16(static_cast<uint16_t>(bd.size()));
  } else {
    w.U8(static_cast<uint8_t>(3 + bd.size() + pages.size()));
    w.U8(0);
    w.U8(device_specific);
    w.U8(static_cast<uint8_t>(bd.size()));
  }
  d.insert(d.end(), bd.begin(), bd.end());
  d.insert(d.end(), pages.begin(), pages.end());
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::ModeSelect(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  LogicalUnit& lu = *cmd->lu;
  const bool ten = cdb[0] == 0x55;
  const bool save = cdb[1] & 0x01;
  const uint32_t length = ten ? GetBe16(&cdb[7]) : cdb[4];
  if (auto error = CheckDataOut(cmd, length, false)) return CompleteSense(cmd, *error);
  if (length == 0) return CompleteGood(cmd);
  const size_t header = ten ? 8 : 4;
  if (length < header) return CompleteSense(cmd, IllegalRequest(asc::kParameterListLengthError));
  const uint8_t* p = cmd->task->data_out.data();
  const size_t bd_length = ten ? GetBe16(&p[6]) : p[3];
  const bool long_lba = ten && (p[4] & 0x01);
  const size_t bd_size = long_lba ? 16 : 8;
  if (header + bd_length > length) {
    return CompleteSense(cmd, IllegalRequest(asc::kParameterListLengthError));
  }
  if (bd_length % bd_size != 0) {
    return CompleteSense(cmd, InvalidFieldInParameterList(ten ? 6 : 3));
  }
  for (size_t off = header; off < header + bd_length; off += bd_size) {
    const uint32_t block_length = long_lba ? GetBe32(&p[off + 12]) : GetBe24(&p[off + 5]);
    if (block_length != lu.block_size) {
      return CompleteSense(cmd, InvalidFieldInParameterList(
                                    static_cast<uint16_t>(off + (long_lba ? 12 : 5))));
    }
  }
  const size_t pages_offset = header + bd_length;
  std::optional<SenseData> error;
  {
    absl::MutexLock lock(&lu.mu);
    bool changed = false;
    error = lu.mode.Select(absl::MakeConstSpan(p + pages_offset, length - pages_offset),
                           pages_offset, save, &changed);
    if (!error && changed) {
      lu.descriptor_sense = lu.mode.descriptor_sense();
      lu.write_cache_enabled = lu.mode.write_cache_enabled();
      lu.software_write_protect = lu.mode.software_write_protect();
      QueueUaForAll(lu, asc::kModeParametersChanged, &cmd->nexus_key);
    }
  }
  if (error) return CompleteSense(cmd, *error);
  CompleteGood(cmd);
}

void Engine::Impl::ReportTargetPortGroups(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  const uint8_t format = cdb[1] >> 5;
  if (format > 1) return CompleteSense(cmd, InvalidFieldInCdb(1, 7));
  std::vector<uint8_t> d(4, 0);
  ByteWriter w(d);
  if (format == 1) {
    w.U8(0x10);  // FORMAT TYPE 001b
    w.U8(options_.port_state->implicit_transition_time_seconds());
    w.U16(0);
  }
  for (const auto& g : options_.port_state->TargetPortGroups(cmd->task->lun)) {
    w.U8(static_cast<uint8_t>((g.preferred ? 0x80 : 0) | static_cast<uint8_t>(g.state)));
    w.U8(0x8F);  // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP
    w.U16(g.group_id);
    w.U8(0);
    w.U8(g.status_code);
    w.U8(0);
    w.U8(static_cast<uint8_t>(g.relative_target_port_ids.size()));
    for (uint16_t port : g.relative_target_port_ids) {
      w.U16(0);
      w.U16(port);
    }
  }
  PutBe32(&d[0], static_cast<uint32_t>(d.size() - 4));
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::ReportSupportedOperationCodes(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  const bool rctd = cdb[2] & 0x80;
  const uint8_t reporting = cdb[2] & 0x07;
  const uint8_t opcode = cdb[3];
  const uint16_t sa = GetBe16(&cdb[4]);
  const auto& table = internal::CommandTable();
  auto append_timeouts = [](ByteWriter& w, const CommandInfo& c) {
    w.U16(0x0A);
    w.U8(0);
    w.U8(0);
    w.U32(0);  // nominal timeout: not specified
    w.U32(c.recommended_timeout_seconds);
  };
  std::vector<uint8_t> d;
  ByteWriter w(d);
  if (reporting == 0) {
    w.U32(0);
    for (const auto& c : table) {
      w.U8(c.opcode);
      w.U8(0);
      w.U16(c.service_action < 0 ? 0 : static_cast<uint16_t>(c.service_action));
      w.U8(0);
      w.U8(static_cast<uint8_t>((rctd ? 0x02 : 0) | (c.service_action >= 0 ? 0x01 : 0)));
      w.U16(c.cdb_length);
      if (rctd) append_timeouts(w, c);
    }
    PutBe32(&d[0], static_cast<uint32_t>(d.size() - 4));
    return CompleteData(cmd, std::move(d));
  }
  if (reporting > 3) return CompleteSense(cmd, InvalidFieldInCdb(2, 2));
  bool has_service_actions = false;
  for (const auto& c : table) {
    if (c.opcode == opcode && c.service_action >= 0) has_service_actions = true;
  }
  if (reporting == 1 && has_service_actions) return CompleteSense(cmd, InvalidFieldInCdb(3));
  if (reporting == 2 && !has_service_actions) {
    // Opcodes without service actions, and opcodes we do not support at all.
    bool known = false;
    for (const auto& c : table) known |= c.opcode == opcode;
    if (known) return CompleteSense(cmd, InvalidFieldInCdb(3));
  }
  const CommandInfo* found = nullptr;
  for (const auto& c : table) {
    if (c.opcode != opcode) continue;
    if (c.service_action < 0 || (reporting != 1 && c.service_action == sa)) found = &c;
  }
  if (found == nullptr) {
    w.U8(0);
    w.U8(0x01);  // SUPPORT: not supported
    w.U16(0);
    return CompleteData(cmd, std::move(d));
  }
  w.U8(0);
  w.U8(static_cast<uint8_t>((rctd ? 0x80 : 0) | 0x03));  // CTDP, SUPPORT=011b
  w.U16(found->cdb_length);
  w.Bytes(found->usage.data(), found->cdb_length);
  if (rctd) append_timeouts(w, *found);
  CompleteData(cmd, std::move(d));
}

void Engine::Impl::PersistentReserveInCmd(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  PrInResult result;
  {
    absl::MutexLock lock(&lu.mu);
    result = PersistentReserveIn(lu.pr, absl::MakeConstSpan(cmd->cdb(), 10),
                                 options_.pr_persistence != nullptr);
  }
  if (result.sense) return CompleteSense(cmd, *result.sense);
  CompleteData(cmd, std::move(result.data));
}

void Engine::Impl::PersistentReserveOutCmd(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint32_t length = GetBe32(&cmd->cdb()[5]);
  if (auto error = CheckDataOut(cmd, length, false)) return CompleteSense(cmd, *error);
  PrOutResult result;
  std::vector<CommandPtr> to_complete;
  std::optional<std::string> persist;
  uint64_t sequence = 0;
  auto finish = std::make_shared<absl::AnyInvocable<void() &&>>();
  auto barrier = std::make_shared<CompletionBarrier>([finish]() mutable {
    std::move (*finish)();
  });
  {
    absl::MutexLock lock(&lu.mu);
    const bool aptpl_before = lu.pr.aptpl;
    result = PersistentReserveOut(lu.pr, cmd->nexus(), absl::MakeConstSpan(cmd->cdb(), 10),
                                  cmd->task->data_out, options_.pr_persistence != nullptr);
    for (const auto& [reg, code] : result.unit_attentions) {
      for (auto& [key, ns] : lu.nexuses) {
        if (key != cmd->nexus_key && ns.nexus && reg.Matches(*ns.nexus)) QueueUa(ns, code);
      }
    }
    if (!result.abort_tasks_of.empty()) {
      std::vector<CommandPtr> tasks(lu.tasks.begin(), lu.tasks.end());
      for (const auto& t : tasks) {
        if (t == cmd) continue;
        for (const auto& reg : result.abort_tasks_of) {
          if (reg.Matches(t->nexus())) {
            AbortLocked(lu, t, barrier, &to_complete);
            break;
          }
        }
      }
    }
    if (result.changed && options_.pr_persistence && (aptpl_before || lu.pr.aptpl)) {
      sequence = ++lu.pr.save_sequence;
      persist = SerializePrState(lu.pr);
    }
  }
  TaskResponse response;
  response.wanted_data_out_length = cmd->response.wanted_data_out_length;
  if (result.conflict) {
    response.status = ScsiStatus::kReservationConflict;
  } else if (result.sense) {
    response.status = ScsiStatus::kCheckCondition;
    response.sense = BuildSense(*result.sense, FormatFor(cmd));
  }
  *finish = [this, cmd, persist = std::move(persist), sequence,
             response = std::move(response)]() mutable {
    if (!persist) return Complete(cmd, std::move(response));
    options_.pr_persistence->Save(
        cmd->lu->identity.naa_id, sequence, std::move(*persist),
        [this, cmd, response = std::move(response)](absl::Status status) mutable {
          if (!status.ok()) {
            SenseData s;
            s.key = SenseKey::kHardwareError;
            s.code = asc::kInternalTargetFailure;
            return CompleteSense(cmd, s);
          }
          Complete(cmd, std::move(response));
        });
  };
  for (const auto& t : to_complete) Complete(t, TaskResponse{});
  barrier->Release();
}

void Engine::Impl::Reserve(const CommandPtr& cmd) {
  const uint8_t* cdb = cmd->cdb();
  if (cdb[0] == 0x56 && (cdb[1] & 0x12)) {
    return CompleteSense(cmd, InvalidFieldInCdb(1, (cdb[1] & 0x10) ? 4 : 1));  // 3RDPTY, LONGID
  }
  LogicalUnit& lu = *cmd->lu;
  bool conflict = false;
  {
    absl::MutexLock lock(&lu.mu);
    if (!lu.pr.registrations.empty() || (lu.spc2_holder && *lu.spc2_holder != cmd->nexus_key)) {
      conflict = true;
    } else {
      lu.spc2_holder = cmd->nexus_key;
    }
  }
  if (conflict) return CompleteConflict(cmd);
  CompleteGood(cmd);
}

void Engine::Impl::Release(const CommandPtr& cmd) {
  LogicalUnit& lu = *cmd->lu;
  bool conflict = false;
  {
    absl::MutexLock lock(&lu.mu);
    if (!lu.pr.registrations.empty()) {
      conflict = true;
    } else if (lu.spc2_holder == cmd->nexus_key) {
      lu.spc2_holder.reset();
    }
  }
  if (conflict) return CompleteConflict(cmd);
  CompleteGood(cmd);
}

void Engine::Impl::StartStopUnit(const CommandPtr& cmd) {
  // The medium is not removable and always spinning: accept and ignore, as
  // shared LUNs must not be stopped by one initiator.
  CompleteGood(cmd);
}

void Engine::Impl::PreventAllowMediumRemoval(const CommandPtr& cmd) {
  // RMB=0: the medium cannot be removed, so prevention has nothing to do.
  CompleteGood(cmd);
}

void Engine::Impl::HandleMissingLun(const CommandPtr& cmd) {
  switch (cmd->cdb()[0]) {
    case 0x12:
      return Inquiry(cmd);
    case 0xA0:
      return ReportLuns(cmd);
    case 0x03:
      return RequestSense(cmd);
    default:
      return CompleteSense(cmd, InDirectory(cmd->task->lun)
                                    ? NotConnectedHere()
                                    : IllegalRequest(asc::kLogicalUnitNotSupported));
  }
}

}  // namespace scsi
