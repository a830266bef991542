#include "target/iscsi/login.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace iscsi {
namespace {

bool IsLeadingKey(const std::string& k) {
  return k == "InitiatorName" || k == "TargetName" || k == "SessionType" ||
         k == "InitiatorAlias";
}

bool IsSecurityKey(const std::string& k) {
  return k == "AuthMethod" || absl::StartsWith(k, "CHAP_");
}

}  // namespace

KeyValueList BuildSendTargetsResponse(const PortalDirectory& directory,
                                      const std::string& value,
                                      const std::string& initiator_name,
                                      bool discovery_session,
                                      const std::string& session_target) {
  KeyValueList out;
  std::vector<TargetConfig> targets;
  if (value == "All" && discovery_session) {
    targets = directory.Targets();
  } else {
    // A normal session may only ask about its own target (RFC 7143 App. C).
    const std::string name = value.empty() || !discovery_session ? session_target : value;
    if (!discovery_session && !value.empty() && value != session_target) return out;
    if (auto t = directory.FindTarget(name)) targets.push_back(*t);
  }
  for (const auto& t : targets) {
    if (!t.AllowsInitiator(initiator_name)) continue;
    out.push_back({"TargetName", t.name});
    for (const auto& p : directory.PortalsOf(t)) {
      out.push_back({"TargetAddress", p.TargetAddress()});
    }
  }
  return out;
}

LoginStateMachine::LoginStateMachine(Context context) : context_(std::move(context)) {}

LoginStateMachine::Step LoginStateMachine::Fail(LoginStatus status, KeyValueList keys) {
  Step step;
  step.outcome = Outcome::kFailed;
  step.header.csg = stage_;
  step.header.isid = isid_;
  step.header.itt = itt_;
  step.header.status_class = static_cast<uint16_t>(status) >> 8;
  step.header.status_detail = static_cast<uint16_t>(status) & 0xff;
  step.data = BuildTextKeys(keys);
  return step;
}

std::optional<LoginStatus> LoginStateMachine::HandleLeadingKeys(
    const KeyValueList& keys, KeyValueList* answers) {
  auto initiator = FindKey(keys, "InitiatorName");
  if (!initiator || initiator->empty()) return LoginStatus::kMissingParameter;
  initiator_name_ = *initiator;
  const std::string type = FindKey(keys, "SessionType").value_or("Normal");
  if (type == "Discovery") {
    discovery_ = true;
  } else if (type != "Normal") {
    return LoginStatus::kSessionTypeNotSupported;
  }
  if (discovery_) {
    auth_ = &context_.options->discovery_auth;
  } else {
    auto name = FindKey(keys, "TargetName");
    if (!name || name->empty()) return LoginStatus::kMissingParameter;
    target_name_ = *name;
    target_ = context_.directory->FindTarget(target_name_);
    if (!target_ || !target_->ReachableThrough(context_.portal.portal_group_tag)) {
      return LoginStatus::kNotFound;
    }
    if (target_->redirect) {
      answers->push_back({"TargetAddress", target_->redirect->target_address});
      return target_->redirect->permanent ? LoginStatus::kTargetMovedPermanently
                                          : LoginStatus::kTargetMovedTemporarily;
    }
    if (!target_->AllowsInitiator(initiator_name_)) {
      return LoginStatus::kAuthorizationFailure;
    }
    auth_ = &target_->auth;
  }
  negotiator_ = std::make_unique<Negotiator>(context_.options->negotiation, discovery_);
  return std::nullopt;
}

std::optional<LoginStatus> LoginStateMachine::HandleSecurity(const KeyValueList& keys,
                                                             bool* auth_done,
                                                             KeyValueList* answers) {
  const auto creds_it = auth_->chap_by_initiator.find(initiator_name_);
  const ChapCredentials* creds =
      creds_it == auth_->chap_by_initiator.end() ? nullptr : &creds_it->second;
  if (auth_method_ == Auth::kUndecided) {
    auto offered = FindKey(keys, "AuthMethod");
    if (!offered) {
      if (auth_->require_chap || creds != nullptr) {
        return LoginStatus::kAuthenticationFailure;
      }
      auth_method_ = Auth::kNone;
    } else {
      const bool chap_ok = auth_->require_chap || creds != nullptr;
      const bool none_ok = !auth_->require_chap && creds == nullptr;
      for (const auto& m : SplitListValue(*offered)) {
        if (m == "CHAP" && chap_ok) {
          auth_method_ = Auth::kChap;
          break;
        }
        if (m == "None" && none_ok) {
          auth_method_ = Auth::kNone;
          break;
        }
      }
      if (auth_method_ == Auth::kUndecided) {
        answers->push_back({"AuthMethod", "Reject"});
        return LoginStatus::kAuthenticationFailure;
      }
      answers->push_back({"AuthMethod", auth_method_ == Auth::kChap ? "CHAP" : "None"});
    }
    if (auth_method_ == Auth::kChap) {
      chap_ = std::make_unique<ChapTargetExchange>(creds, context_.challenge_cache,
                                                   context_.options->chap_challenge_length);
    }
  }
  if (auth_method_ == Auth::kNone) {
    authenticated_ = true;
  } else if (!authenticated_) {
    switch (chap_->Step(keys, answers)) {
      case ChapTargetExchange::Result::kContinue:
        break;
      case ChapTargetExchange::Result::kSucceeded:
        authenticated_ = true;
        break;
      case ChapTargetExchange::Result::kFailed:
        return LoginStatus::kAuthenticationFailure;
    }
  }
  *auth_done = authenticated_;
  return std::nullopt;
}

LoginStateMachine::Step LoginStateMachine::Handle(const Pdu& pdu) {
  LoginRequest req;
  if (!Decode(pdu.bhs, &req).ok()) return Fail(LoginStatus::kInitiatorError);
  if (first_) {
    isid_ = req.isid;
    tsih_ = req.tsih;
    cid_ = req.cid;
    itt_ = req.itt;
    cmd_sn_ = req.cmd_sn;
    stage_ = req.csg;
    if (req.version_min > 0) return Fail(LoginStatus::kUnsupportedVersion);
    if (req.csg == static_cast<uint8_t>(LoginStage::kFullFeature)) {
      return Fail(LoginStatus::kInitiatorError);
    }
  } else if (req.isid != isid_ || req.tsih != tsih_ || req.cid != cid_) {
    return Fail(LoginStatus::kInitiatorError);
  }
  itt_ = req.itt;
  if (req.csg != stage_) return Fail(LoginStatus::kInvalidDuringLogin);

  // Text may span several PDUs (C bit): acknowledge and collect.
  partial_text_.insert(partial_text_.end(), pdu.data.begin(), pdu.data.end());
  if (partial_text_.size() > 64 * 1024) return Fail(LoginStatus::kOutOfResources);
  Step step;
  step.header.csg = stage_;
  step.header.isid = isid_;
  step.header.tsih = 0;
  step.header.itt = itt_;
  if (req.continue_bit) return step;
  auto keys = ParseTextKeys(partial_text_);
  partial_text_.clear();
  if (!keys.ok()) return Fail(LoginStatus::kInitiatorError);

  KeyValueList answers;
  if (first_) {
    first_ = false;
    if (auto failure = HandleLeadingKeys(*keys, &answers)) {
      return Fail(*failure, std::move(answers));
    }
  }
  KeyValueList operational;
  KeyValueList security;
  for (const auto& kv : *keys) {
    if (IsLeadingKey(kv.key)) continue;
    (IsSecurityKey(kv.key) ? security : operational).push_back(kv);
  }

  bool may_transit = true;
  if (stage_ == static_cast<uint8_t>(LoginStage::kSecurityNegotiation)) {
    bool auth_done = false;
    if (auto failure = HandleSecurity(security, &auth_done, &answers)) {
      return Fail(*failure, std::move(answers));
    }
    may_transit = auth_done;
  } else {
    // Skipping the security stage is only allowed when no authentication is
    // required; security keys are not allowed in the operational stage.
    if (!security.empty()) return Fail(LoginStatus::kInitiatorError);
    const bool chap_configured =
        auth_->require_chap || auth_->chap_by_initiator.count(initiator_name_) > 0;
    if (!authenticated_) {
      if (chap_configured) return Fail(LoginStatus::kAuthenticationFailure);
      authenticated_ = true;
    }
  }
  if (absl::Status s = negotiator_->Negotiate(operational, &answers); !s.ok()) {
    return Fail(LoginStatus::kInitiatorError);
  }
  if (!sent_first_response_) {
    sent_first_response_ = true;
    answers.push_back(
        {"TargetPortalGroupTag", absl::StrCat(context_.portal.portal_group_tag)});
    if (!discovery_ && target_ && !target_->alias.empty()) {
      answers.push_back({"TargetAlias", target_->alias});
    }
  }

  if (stage_ == static_cast<uint8_t>(LoginStage::kOperationalNegotiation)) {
    negotiator_->AddDeclarations(&answers);
  }
  if (req.transit && may_transit) {
    step.header.transit = true;
    step.header.nsg = req.nsg;
    if (req.nsg == static_cast<uint8_t>(LoginStage::kFullFeature)) {
      negotiator_->AddDeclarations(&answers);
      step.outcome = Outcome::kFullFeature;
    }
    stage_ = req.nsg;
  }
  step.data = BuildTextKeys(answers);
  return step;
}

}  // namespace iscsi
