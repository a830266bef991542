// The login phase of one connection (RFC 7143 §6.3, §11.12-13): stage
// transitions (security -> operational -> full feature), the leading keys
// (InitiatorName, TargetName, SessionType), authentication (None or CHAP),
// authorization (initiator ACLs), redirection and operational negotiation.
//
// It is a pure state machine: Login Request PDUs in, Login Response headers and
// text out. Session-wide checks that need the node's state (TSIH lookup,
// reinstatement, session limits) are left to the caller, which fills in TSIH,
// StatSN, ExpCmdSN and MaxCmdSN before sending.
#ifndef TARGET_ISCSI_LOGIN_H_
#define TARGET_ISCSI_LOGIN_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "target/iscsi/chap.h"
#include "target/iscsi/negotiation.h"
#include "target/iscsi/options.h"
#include "target/iscsi/pdu.h"
#include "target/iscsi/text.h"

namespace iscsi {

// Login status (class << 8 | detail), RFC 7143 §11.13.5.
enum class LoginStatus : uint16_t {
  kSuccess = 0x0000,
  kTargetMovedTemporarily = 0x0101,
  kTargetMovedPermanently = 0x0102,
  kInitiatorError = 0x0200,
  kAuthenticationFailure = 0x0201,
  kAuthorizationFailure = 0x0202,
  kNotFound = 0x0203,
  kTargetRemoved = 0x0204,
  kUnsupportedVersion = 0x0205,
  kTooManyConnections = 0x0206,
  kMissingParameter = 0x0207,
  kCantIncludeInSession = 0x0208,
  kSessionTypeNotSupported = 0x0209,
  kSessionDoesNotExist = 0x020a,
  kInvalidDuringLogin = 0x020b,
  kTargetError = 0x0300,
  kServiceUnavailable = 0x0301,
  kOutOfResources = 0x0302,
};

// Answers a SendTargets request (RFC 7143 Appendix C). value is "All", a target
// name, or empty (normal session: the session's own target, session_target).
// Targets the initiator may not log in to are not listed.
KeyValueList BuildSendTargetsResponse(const PortalDirectory& directory,
                                      const std::string& value,
                                      const std::string& initiator_name,
                                      bool discovery_session,
                                      const std::string& session_target);

class LoginStateMachine {
 public:
  struct Context {
    const TargetOptions* options = nullptr;
    const PortalDirectory* directory = nullptr;
    // The portal the connection arrived on.
    PortalConfig portal;
    ChapChallengeCache* challenge_cache = nullptr;
  };

  explicit LoginStateMachine(Context context);

  enum class Outcome {
    kContinue,     // send the response, await the next Login Request
    kFailed,       // send the response (non-zero status), then close
    kFullFeature,  // send the response (T=1, NSG=3) and enter full feature phase
  };
  struct Step {
    Outcome outcome = Outcome::kContinue;
    LoginResponse header;
    std::vector<uint8_t> data;
  };

  // Handles one Login Request PDU.
  Step Handle(const Pdu& request);

  // Valid after kFullFeature (and mostly after the first request).
  bool discovery() const { return discovery_; }
  const std::string& initiator_name() const { return initiator_name_; }
  const std::string& target_name() const { return target_name_; }
  const std::optional<TargetConfig>& target() const { return target_; }
  const std::array<uint8_t, 6>& isid() const { return isid_; }
  uint16_t tsih() const { return tsih_; }
  uint16_t cid() const { return cid_; }
  uint32_t cmd_sn() const { return cmd_sn_; }
  uint32_t itt() const { return itt_; }
  const SessionParams& params() const { return negotiator_->params(); }

 private:
  Step Fail(LoginStatus status, KeyValueList keys = {});
  std::optional<LoginStatus> HandleLeadingKeys(const KeyValueList& keys,
                                               KeyValueList* answers);
  std::optional<LoginStatus> HandleSecurity(const KeyValueList& keys, bool* auth_done,
                                            KeyValueList* answers);

  Context context_;
  bool first_ = true;
  uint8_t stage_ = 0;  // current stage (CSG we expect)
  std::vector<uint8_t> partial_text_;  // C-bit continuation
  std::array<uint8_t, 6> isid_{};
  uint16_t tsih_ = 0;
  uint16_t cid_ = 0;
  uint32_t itt_ = 0;
  uint32_t cmd_sn_ = 0;
  bool discovery_ = false;
  std::string initiator_name_;
  std::string target_name_;
  std::optional<TargetConfig> target_;
  const AuthConfig* auth_ = nullptr;
  enum class Auth { kUndecided, kNone, kChap };
  Auth auth_method_ = Auth::kUndecided;
  bool authenticated_ = false;
  std::unique_ptr<ChapTargetExchange> chap_;
  std::unique_ptr<Negotiator> negotiator_;
  bool sent_first_response_ = false;
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_LOGIN_H_
