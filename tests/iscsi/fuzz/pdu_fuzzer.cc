// libFuzzer entry point: frames arbitrary bytes as initiator PDUs (with and
// without digests, login and full-feature limits) and decodes each with its
// typed view. Must never crash, hang or allocate beyond the limits.
#include <cstddef>
#include <cstdint>

#include "target/iscsi/pdu.h"

namespace {

void DecodeAll(const iscsi::Pdu& pdu) {
  using namespace iscsi;
  switch (static_cast<Opcode>(pdu.bhs.opcode())) {
    case Opcode::kNopOut: { NopOut v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kScsiCommand: {
      ScsiCommand v;
      (void)Decode(pdu.bhs, &v);
      (void)ParseAhs(pdu.ahs);
      break;
    }
    case Opcode::kTaskMgmtRequest: { TaskMgmtRequest v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kLoginRequest: { LoginRequest v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kTextRequest: { TextRequest v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kDataOut: { DataOut v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kLogoutRequest: { LogoutRequest v; (void)Decode(pdu.bhs, &v); break; }
    case Opcode::kSnackRequest: { SnackRequest v; (void)Decode(pdu.bhs, &v); break; }
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the reader configuration.
  iscsi::PduReader::Limits limits;
  limits.header_digest = data[0] & 1;
  limits.data_digest = data[0] & 2;
  limits.max_data_segment_length = (data[0] & 4) ? 262144 : 8192;
  iscsi::PduReader reader(limits);
  absl::Span<const uint8_t> in(data + 1, size - 1);
  while (!in.empty()) {
    auto r = reader.Feed(in);
    if (!r.ok()) break;
    if (r->consumed == 0 && !r->pdu) break;
    in.remove_prefix(r->consumed);
    if (r->pdu) DecodeAll(*r->pdu);
  }
  return 0;
}
