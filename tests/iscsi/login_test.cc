// Text keys, operational negotiation and the login state machine (incl. CHAP
// with responses computed independently here with OpenSSL's one-shot digest).
#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "target/iscsi/login.h"
#include "target/iscsi/negotiation.h"
#include "target/iscsi/text.h"

namespace iscsi {
namespace {

std::vector<uint8_t> Text(const std::string& s) { return {s.begin(), s.end()}; }

TEST(TextKeys, ParseAndBuild) {
  auto kv = ParseTextKeys(Text(std::string("A=1\0B=x,y\0\0", 11)));
  ASSERT_TRUE(kv.ok()) << kv.status();
  ASSERT_EQ(kv->size(), 2u);
  EXPECT_EQ((*kv)[1].value, "x,y");
  EXPECT_EQ(BuildTextKeys(*kv), Text(std::string("A=1\0B=x,y\0", 10)));
  EXPECT_FALSE(ParseTextKeys(Text(std::string("A=1", 3))).ok());       // no NUL
  EXPECT_FALSE(ParseTextKeys(Text(std::string("A1\0", 3))).ok());      // no '='
  EXPECT_FALSE(ParseTextKeys(Text(std::string("=1\0", 3))).ok());      // empty key
  EXPECT_FALSE(ParseTextKeys(Text(std::string("A B=1\0", 6))).ok());   // bad char
  EXPECT_FALSE(ParseTextKeys(Text(std::string(64, 'K') + "=1" + std::string(1, '\0'))).ok());
  EXPECT_EQ(ParseNumber("0x10"), 16u);
  EXPECT_EQ(ParseNumber("8192"), 8192u);
  EXPECT_FALSE(ParseNumber("-1").has_value());
  EXPECT_FALSE(ParseNumber("12a").has_value());
}

std::string Answer(const KeyValueList& answers, const std::string& key) {
  return FindKey(answers, key).value_or("<absent>");
}

TEST(Negotiation, ResultFunctions) {
  NegotiationOptions o;
  o.max_burst_length = 262144;
  o.first_burst_length = 65536;
  o.max_outstanding_r2t = 4;
  o.initial_r2t = false;
  o.immediate_data = true;
  o.default_time2wait = 2;
  o.default_time2retain = 0;
  Negotiator n(o, /*discovery_session=*/false);
  KeyValueList answers;
  ASSERT_TRUE(n.Negotiate({{"HeaderDigest", "Foo,CRC32C,None"},
                           {"DataDigest", "None"},
                           {"InitialR2T", "Yes"},         // OR -> Yes
                           {"ImmediateData", "No"},       // AND -> No
                           {"MaxRecvDataSegmentLength", "65536"},  // declarative
                           {"MaxBurstLength", "1048576"},  // min -> ours
                           {"FirstBurstLength", "4096"},   // min -> theirs
                           {"DefaultTime2Wait", "0"},      // max -> 2
                           {"DefaultTime2Retain", "20"},   // min -> 0
                           {"MaxOutstandingR2T", "16"},
                           {"ErrorRecoveryLevel", "2"},
                           {"X-com.example.Foo", "bar"},
                           {"MaxConnections", "8"}},
                          &answers)
                  .ok());
  EXPECT_EQ(Answer(answers, "HeaderDigest"), "CRC32C");
  EXPECT_EQ(Answer(answers, "DataDigest"), "None");
  EXPECT_EQ(Answer(answers, "InitialR2T"), "Yes");
  EXPECT_EQ(Answer(answers, "ImmediateData"), "No");
  EXPECT_EQ(Answer(answers, "MaxRecvDataSegmentLength"), "<absent>");
  EXPECT_EQ(Answer(answers, "MaxBurstLength"), "262144");
  EXPECT_EQ(Answer(answers, "FirstBurstLength"), "4096");
  EXPECT_EQ(Answer(answers, "DefaultTime2Wait"), "2");
  EXPECT_EQ(Answer(answers, "DefaultTime2Retain"), "0");
  EXPECT_EQ(Answer(answers, "MaxOutstandingR2T"), "4");
  EXPECT_EQ(Answer(answers, "ErrorRecoveryLevel"), "0");
  EXPECT_EQ(Answer(answers, "X-com.example.Foo"), "NotUnderstood");
  EXPECT_EQ(Answer(answers, "MaxConnections"), "1");
  const SessionParams& p = n.params();
  EXPECT_EQ(p.header_digest, DigestType::kCrc32c);
  EXPECT_TRUE(p.initial_r2t);
  EXPECT_FALSE(p.immediate_data);
  EXPECT_EQ(p.initiator_max_recv_data_segment_length, 65536u);
  EXPECT_EQ(p.first_burst_length, 4096u);
  KeyValueList decl;
  n.AddDeclarations(&decl);
  EXPECT_EQ(Answer(decl, "MaxRecvDataSegmentLength"), "262144");
}

TEST(Negotiation, FirstBurstBoundedByMaxBurstWhateverTheOrder) {
  Negotiator n(NegotiationOptions(), false);
  KeyValueList answers;
  ASSERT_TRUE(
      n.Negotiate({{"FirstBurstLength", "65536"}, {"MaxBurstLength", "16384"}}, &answers)
          .ok());
  EXPECT_EQ(Answer(answers, "FirstBurstLength"), "16384");
  EXPECT_EQ(Answer(answers, "MaxBurstLength"), "16384");
}

TEST(Negotiation, RejectIrrelevantAndProtocolErrors) {
  NegotiationOptions o;
  o.header_digests = {DigestType::kNone};
  Negotiator n(o, /*discovery_session=*/true);
  KeyValueList answers;
  ASSERT_TRUE(n.Negotiate({{"HeaderDigest", "CRC32C"},
                           {"InitialR2T", "Yes"},
                           {"MaxBurstLength", "262144"},
                           {"ImmediateData", "Maybe"}},
                          &answers)
                  .ok());
  EXPECT_EQ(Answer(answers, "HeaderDigest"), "Reject");
  EXPECT_EQ(Answer(answers, "InitialR2T"), "Irrelevant");
  EXPECT_EQ(Answer(answers, "MaxBurstLength"), "Irrelevant");
  EXPECT_EQ(Answer(answers, "ImmediateData"), "Irrelevant");

  Negotiator normal(NegotiationOptions(), false);
  KeyValueList a2;
  ASSERT_TRUE(normal.Negotiate({{"ImmediateData", "Maybe"}, {"MaxBurstLength", "100"}}, &a2)
                  .ok());
  EXPECT_EQ(Answer(a2, "ImmediateData"), "Reject");
  EXPECT_EQ(Answer(a2, "MaxBurstLength"), "Reject");  // below 512
  // Offering a key twice is a protocol error.
  EXPECT_FALSE(normal.Negotiate({{"ImmediateData", "Yes"}}, &a2).ok());
  // A malformed declaration fails the login.
  Negotiator n3(NegotiationOptions(), false);
  EXPECT_FALSE(n3.Negotiate({{"MaxRecvDataSegmentLength", "12"}}, &a2).ok());
}

// ---- Login state machine ----

constexpr char kTarget[] = "iqn.2024-01.com.example:t1";
constexpr char kInitiator[] = "iqn.2024-01.com.example:h1";
constexpr std::array<uint8_t, 6> kIsid = {0x80, 0, 0, 0, 0, 1};

class LoginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TargetConfig t;
    t.name = kTarget;
    t.alias = "disk1";
    directory_.UpsertTarget(t);
    PortalConfig p;
    p.address = "10.0.0.1";
    p.port = 3260;
    p.portal_group_tag = 7;
    directory_.UpsertPortal(p);
    context_.options = &options_;
    context_.directory = &directory_;
    context_.portal = p;
    context_.challenge_cache = &cache_;
  }

  static Pdu Request(uint8_t csg, uint8_t nsg, bool transit, const KeyValueList& keys) {
    LoginRequest r;
    r.csg = csg;
    r.nsg = nsg;
    r.transit = transit;
    r.isid = kIsid;
    r.itt = 1;
    r.cmd_sn = 1;
    Pdu pdu;
    pdu.bhs = Encode(r);
    pdu.data = BuildTextKeys(keys);
    return pdu;
  }

  static KeyValueList Keys(const LoginStateMachine::Step& step) {
    auto kv = ParseTextKeys(step.data);
    EXPECT_TRUE(kv.ok());
    return kv.ok() ? *kv : KeyValueList();
  }

  static uint16_t Status(const LoginStateMachine::Step& s) {
    return static_cast<uint16_t>(s.header.status_class << 8 | s.header.status_detail);
  }

  void RequireChap(const std::string& secret, std::optional<ChapSecret> target = {}) {
    TargetConfig t = *directory_.FindTarget(kTarget);
    t.auth.require_chap = true;
    t.auth.chap_by_initiator[kInitiator] = {{"user1", secret}, target};
    directory_.UpsertTarget(t);
  }

  TargetOptions options_;
  PortalDirectory directory_;
  ChapChallengeCache cache_;
  LoginStateMachine::Context context_;
};

TEST_F(LoginTest, NoneAuthThenOperationalThenFullFeature) {
  LoginStateMachine login(context_);
  auto s1 = login.Handle(Request(0, 1, true,
                                 {{"InitiatorName", kInitiator},
                                  {"TargetName", kTarget},
                                  {"SessionType", "Normal"},
                                  {"AuthMethod", "None"}}));
  ASSERT_EQ(s1.outcome, LoginStateMachine::Outcome::kContinue);
  EXPECT_EQ(Status(s1), 0);
  EXPECT_TRUE(s1.header.transit);
  EXPECT_EQ(s1.header.nsg, 1);
  auto k1 = Keys(s1);
  EXPECT_EQ(Answer(k1, "AuthMethod"), "None");
  EXPECT_EQ(Answer(k1, "TargetPortalGroupTag"), "7");
  EXPECT_EQ(Answer(k1, "TargetAlias"), "disk1");
  auto s2 = login.Handle(Request(1, 3, true,
                                 {{"HeaderDigest", "CRC32C"},
                                  {"MaxRecvDataSegmentLength", "131072"}}));
  ASSERT_EQ(s2.outcome, LoginStateMachine::Outcome::kFullFeature);
  EXPECT_EQ(s2.header.nsg, 3);
  EXPECT_EQ(s2.header.csg, 1);
  auto k2 = Keys(s2);
  EXPECT_EQ(Answer(k2, "HeaderDigest"), "CRC32C");
  EXPECT_EQ(Answer(k2, "MaxRecvDataSegmentLength"), "262144");
  EXPECT_EQ(login.params().initiator_max_recv_data_segment_length, 131072u);
  EXPECT_EQ(login.initiator_name(), kInitiator);
}

TEST_F(LoginTest, StatusCodes) {
  {
    LoginStateMachine login(context_);
    auto s = login.Handle(Request(0, 1, true, {{"TargetName", kTarget}}));
    EXPECT_EQ(Status(s), 0x0207);  // missing InitiatorName
    EXPECT_EQ(s.outcome, LoginStateMachine::Outcome::kFailed);
  }
  {
    LoginStateMachine login(context_);
    auto s = login.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                               {"TargetName", "iqn.nope:x"}}));
    EXPECT_EQ(Status(s), 0x0203);
  }
  {
    LoginStateMachine login(context_);
    auto s = login.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                               {"SessionType", "Bogus"}}));
    EXPECT_EQ(Status(s), 0x0209);
  }
  {
    TargetConfig t = *directory_.FindTarget(kTarget);
    t.allowed_initiators = {"iqn.2024-01.com.example:someone-else"};
    directory_.UpsertTarget(t);
    LoginStateMachine login(context_);
    auto s = login.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                               {"TargetName", kTarget}}));
    EXPECT_EQ(Status(s), 0x0202);
  }
  {
    TargetConfig t = *directory_.FindTarget(kTarget);
    t.allowed_initiators.clear();
    t.redirect = RedirectConfig{"10.0.0.2:3260,2", false};
    directory_.UpsertTarget(t);
    LoginStateMachine login(context_);
    auto s = login.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                               {"TargetName", kTarget}}));
    EXPECT_EQ(Status(s), 0x0101);
    EXPECT_EQ(Answer(Keys(s), "TargetAddress"), "10.0.0.2:3260,2");
  }
  {
    LoginStateMachine login(context_);
    Pdu pdu = Request(0, 1, true, {{"InitiatorName", kInitiator}});
    pdu.bhs.bytes[3] = 1;  // VersionMin 1: we only speak version 0
    EXPECT_EQ(Status(login.Handle(pdu)), 0x0205);
  }
}

TEST_F(LoginTest, TargetNotReachableThroughThisPortalGroup) {
  TargetConfig t = *directory_.FindTarget(kTarget);
  t.portal_group_tags = {1, 2};
  directory_.UpsertTarget(t);
  LoginStateMachine login(context_);
  auto s = login.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                             {"TargetName", kTarget}}));
  EXPECT_EQ(Status(s), 0x0203);
}

std::array<uint8_t, 16> Md5(uint8_t id, const std::string& secret,
                            const std::vector<uint8_t>& challenge) {
  std::string buf(1, static_cast<char>(id));
  buf += secret;
  buf.append(challenge.begin(), challenge.end());
  std::array<uint8_t, 16> out{};
  unsigned int len = 0;
  EVP_Digest(buf.data(), buf.size(), out.data(), &len, EVP_md5(), nullptr);
  return out;
}

std::string Hex(const std::array<uint8_t, 16>& d) {
  return "0x" + absl::BytesToHexString(
                    absl::string_view(reinterpret_cast<const char*>(d.data()), 16));
}

std::vector<uint8_t> Unhex(const std::string& v) {
  std::string raw = absl::HexStringToBytes(v.substr(2));
  return {raw.begin(), raw.end()};
}


TEST_F(LoginTest, ChapOneWaySuccessAndFailure) {
  RequireChap("secret-of-twelve");
  for (const bool correct : {true, false}) {
    LoginStateMachine login(context_);
    auto s1 = login.Handle(Request(0, 1, false, {{"InitiatorName", kInitiator},
                                                 {"TargetName", kTarget},
                                                 {"AuthMethod", "CHAP,None"}}));
    ASSERT_EQ(Answer(Keys(s1), "AuthMethod"), "CHAP");
    auto s2 = login.Handle(Request(0, 1, false, {{"CHAP_A", "7,5"}}));
    auto k2 = Keys(s2);
    ASSERT_EQ(Answer(k2, "CHAP_A"), "5");
    const uint8_t id = static_cast<uint8_t>(std::stoi(Answer(k2, "CHAP_I")));
    const auto challenge = Unhex(Answer(k2, "CHAP_C"));
    EXPECT_EQ(challenge.size(), 16u);
    auto s3 = login.Handle(Request(
        0, 1, true,
        {{"CHAP_N", "user1"},
         {"CHAP_R", Hex(Md5(id, correct ? "secret-of-twelve" : "wrong-secret", challenge))}}));
    if (correct) {
      EXPECT_EQ(Status(s3), 0);
      EXPECT_TRUE(s3.header.transit);
      EXPECT_EQ(s3.header.nsg, 1);
    } else {
      EXPECT_EQ(Status(s3), 0x0201);
      EXPECT_EQ(s3.outcome, LoginStateMachine::Outcome::kFailed);
    }
  }
}

TEST_F(LoginTest, ChapMutualAndReflectedChallenge) {
  RequireChap("initiator-secret", ChapSecret{"tgt", "target-secret-x"});
  for (const bool reflect : {false, true}) {
    LoginStateMachine login(context_);
    login.Handle(Request(0, 1, false, {{"InitiatorName", kInitiator},
                                       {"TargetName", kTarget},
                                       {"AuthMethod", "CHAP"}}));
    auto k2 = Keys(login.Handle(Request(0, 1, false, {{"CHAP_A", "5"}})));
    const uint8_t id = static_cast<uint8_t>(std::stoi(Answer(k2, "CHAP_I")));
    const auto challenge = Unhex(Answer(k2, "CHAP_C"));
    std::vector<uint8_t> mine = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    mine[0] = static_cast<uint8_t>(reflect ? mine[0] : 0x42);
    const auto& theirs = reflect ? challenge : mine;
    auto s3 = login.Handle(Request(
        0, 1, true,
        {{"CHAP_N", "user1"},
         {"CHAP_R", Hex(Md5(id, "initiator-secret", challenge))},
         {"CHAP_I", "77"},
         {"CHAP_C", "0x" + absl::BytesToHexString(absl::string_view(
                               reinterpret_cast<const char*>(theirs.data()), theirs.size()))}}));
    if (reflect) {
      EXPECT_EQ(Status(s3), 0x0201);
    } else {
      ASSERT_EQ(Status(s3), 0);
      auto k3 = Keys(s3);
      EXPECT_EQ(Answer(k3, "CHAP_N"), "tgt");
      EXPECT_EQ(Answer(k3, "CHAP_R"), Hex(Md5(77, "target-secret-x", mine)));
    }
  }
}

TEST_F(LoginTest, ChapRequiredRefusesNoneAndSkippingSecurity) {
  RequireChap("secret-of-twelve");
  LoginStateMachine a(context_);
  auto s = a.Handle(Request(0, 1, true, {{"InitiatorName", kInitiator},
                                         {"TargetName", kTarget},
                                         {"AuthMethod", "None"}}));
  EXPECT_EQ(Status(s), 0x0201);
  LoginStateMachine b(context_);
  auto s2 = b.Handle(Request(1, 3, true, {{"InitiatorName", kInitiator},
                                          {"TargetName", kTarget}}));
  EXPECT_EQ(Status(s2), 0x0201);
}

TEST_F(LoginTest, DiscoveryAndSendTargets) {
  PortalConfig partner;
  partner.address = "10.0.0.2";
  partner.port = 3260;
  partner.portal_group_tag = 8;
  directory_.UpsertPortal(partner);
  LoginStateMachine login(context_);
  auto s = login.Handle(Request(0, 3, true, {{"InitiatorName", kInitiator},
                                             {"SessionType", "Discovery"},
                                             {"AuthMethod", "None"}}));
  EXPECT_EQ(s.outcome, LoginStateMachine::Outcome::kFullFeature);
  EXPECT_TRUE(login.discovery());
  auto listed = BuildSendTargetsResponse(directory_, "All", kInitiator, true, "");
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].value, kTarget);
  EXPECT_EQ(listed[1].value, "10.0.0.1:3260,7");
  EXPECT_EQ(listed[2].value, "10.0.0.2:3260,8");
  EXPECT_TRUE(BuildSendTargetsResponse(directory_, "iqn.none:x", kInitiator, true, "").empty());
  // A normal session may only ask about its own target.
  EXPECT_EQ(BuildSendTargetsResponse(directory_, "", kInitiator, false, kTarget).size(), 3u);
  EXPECT_TRUE(BuildSendTargetsResponse(directory_, "All", kInitiator, false, "iqn.other:x")
                  .empty());
}

TEST_F(LoginTest, TextSplitOverContinuationPdus) {
  LoginStateMachine login(context_);
  std::vector<uint8_t> all = BuildTextKeys({{"InitiatorName", kInitiator},
                                            {"TargetName", kTarget},
                                            {"AuthMethod", "None"}});
  Pdu first = Request(0, 1, false, {});
  first.bhs.bytes[1] |= 0x40;  // C
  first.data.assign(all.begin(), all.begin() + 10);
  auto s1 = login.Handle(first);
  EXPECT_EQ(s1.outcome, LoginStateMachine::Outcome::kContinue);
  EXPECT_TRUE(s1.data.empty());
  Pdu rest = Request(0, 1, true, {});
  rest.data.assign(all.begin() + 10, all.end());
  auto s2 = login.Handle(rest);
  EXPECT_EQ(Status(s2), 0);
  EXPECT_EQ(Answer(Keys(s2), "AuthMethod"), "None");
}

}  // namespace
}  // namespace iscsi
