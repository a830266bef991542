// libFuzzer entry point: arbitrary bytes as the text of login requests, run
// through the key parser, the negotiator and the whole login state machine
// (including CHAP with a configured secret).
#include <cstddef>
#include <cstdint>

#include "target/iscsi/login.h"
#include "target/iscsi/negotiation.h"
#include "target/iscsi/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iscsi;
  auto keys = ParseTextKeys(absl::MakeConstSpan(data, size));
  if (keys.ok()) {
    Negotiator n(NegotiationOptions(), size % 2 == 0);
    KeyValueList answers;
    (void)n.Negotiate(*keys, &answers);
    n.AddDeclarations(&answers);
  }
  static PortalDirectory* directory = [] {
    auto* d = new PortalDirectory();
    TargetConfig t;
    t.name = "iqn.2024-01.com.example:fuzz";
    t.auth.chap_by_initiator["iqn.2024-01.com.example:h"] = {{"u", "secret-of-twelve"},
                                                             ChapSecret{"t", "other-secret"}};
    d->UpsertTarget(t);
    return d;
  }();
  static TargetOptions options;
  static ChapChallengeCache cache;
  LoginStateMachine::Context ctx;
  ctx.options = &options;
  ctx.directory = directory;
  ctx.challenge_cache = &cache;
  LoginStateMachine login(ctx);
  // Split the input into up to four login PDUs at '\n' boundaries, walking the
  // stages as an initiator would.
  size_t start = 0;
  for (int i = 0; i < 4 && start <= size; ++i) {
    size_t end = start;
    while (end < size && data[end] != '\n') ++end;
    LoginRequest r;
    r.csg = i < 2 ? 0 : 1;
    r.nsg = i < 2 ? 1 : 3;
    r.transit = i != 0;
    Pdu pdu;
    pdu.bhs = Encode(r);
    pdu.data.assign(data + start, data + end);
    auto step = login.Handle(pdu);
    if (step.outcome != LoginStateMachine::Outcome::kContinue) break;
    start = end + 1;
  }
  return 0;
}
