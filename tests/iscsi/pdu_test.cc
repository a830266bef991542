// Byte-exact vectors for every opcode (RFC 7143 §11 layouts), digests
// (RFC 3720 B.4 CRC32C examples), AHS and the incremental reader.
#include "target/iscsi/pdu.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace iscsi {
namespace {

Bhs FromHex(std::string hex) {
  hex = absl::StrReplaceAll(hex, {{" ", ""}});
  std::string raw = absl::HexStringToBytes(hex);
  EXPECT_EQ(raw.size(), 48u) << hex;
  Bhs b;
  std::memcpy(b.bytes.data(), raw.data(), std::min<size_t>(48, raw.size()));
  return b;
}

std::string ToHex(const Bhs& b) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(b.bytes.data()), 48));
}

template <typename T>
void ExpectVector(const T& value, const std::string& hex, T* decoded) {
  const Bhs expected = FromHex(hex);
  EXPECT_EQ(ToHex(Encode(value)), ToHex(expected));
  ASSERT_TRUE(Decode(expected, decoded).ok());
  EXPECT_EQ(ToHex(Encode(*decoded)), ToHex(expected));
}

constexpr std::array<uint8_t, 6> kIsid = {0x40, 0x00, 0x01, 0x37, 0x00, 0x00};

// SerializePdu matches a PDU built by hand, and the split form (header part,
// data left in place, trailer part) that Connection::SendSpan writes with one
// sendmsg is byte for byte the same, for every padding length, with and
// without digests, with an AHS.
TEST(PduSplit, HeaderDataTrailerEqualsSerializePdu) {
  for (bool header_digest : {false, true}) {
    for (bool data_digest : {false, true}) {
      for (size_t len = 0; len <= 9; ++len) {
        Pdu pdu;
        pdu.bhs.bytes[0] = 0x25;  // SCSI Data-In
        pdu.ahs = std::vector<uint8_t>(8, 0x5a);
        for (size_t i = 0; i < len; ++i) pdu.data.push_back(static_cast<uint8_t>(i * 37 + 1));
        // Built by hand from RFC 7143 §11.1: BHS (TotalAHSLength in words,
        // DataSegmentLength), AHS, header CRC32C, data, padding to 4, data
        // CRC32C over data and padding; digests least significant byte first.
        std::vector<uint8_t> expected(pdu.bhs.bytes.begin(), pdu.bhs.bytes.end());
        expected[4] = 2;
        expected[5] = 0;
        expected[6] = 0;
        expected[7] = static_cast<uint8_t>(len);
        expected.insert(expected.end(), pdu.ahs.begin(), pdu.ahs.end());
        auto put_crc = [&expected](absl::Span<const uint8_t> over) {
          const uint32_t crc = Crc32c(over);
          for (int i = 0; i < 4; ++i) expected.push_back(static_cast<uint8_t>(crc >> (8 * i)));
        };
        if (header_digest) put_crc(expected);
        if (len > 0) {
          std::vector<uint8_t> padded = pdu.data;
          while (padded.size() % 4 != 0) padded.push_back(0);
          expected.insert(expected.end(), padded.begin(), padded.end());
          if (data_digest) put_crc(padded);
        }
        std::vector<uint8_t> whole;
        ASSERT_TRUE(SerializePdu(pdu, header_digest, data_digest, &whole).ok());
        EXPECT_EQ(whole, expected) << "len " << len << " hd " << header_digest
                                   << " dd " << data_digest;
        std::vector<uint8_t> split;
        ASSERT_TRUE(SerializePduHeader(pdu.bhs, pdu.ahs, pdu.data.size(), header_digest,
                                       &split)
                        .ok());
        split.insert(split.end(), pdu.data.begin(), pdu.data.end());
        SerializePduTrailer(pdu.data, data_digest, &split);
        EXPECT_EQ(split, whole) << "len " << len << " hd " << header_digest << " dd "
                                << data_digest;
      }
    }
  }
  std::vector<uint8_t> out;
  EXPECT_FALSE(SerializePduHeader(Bhs(), std::vector<uint8_t>(3), 0, false, &out).ok());
  EXPECT_FALSE(SerializePduHeader(Bhs(), {}, size_t{1} << 24, false, &out).ok());
}

TEST(PduVectors, NopOut) {
  NopOut v;
  v.immediate = true;
  v.lun = EncodeLun(1);
  v.itt = 0x11223344;
  v.cmd_sn = 5;
  v.exp_stat_sn = 7;
  NopOut d;
  ExpectVector(v, "40800000 00000000 00010000 00000000 11223344 ffffffff 00000005 00000007"
                  "00000000 00000000 00000000 00000000", &d);
  EXPECT_TRUE(d.immediate);
  EXPECT_EQ(DecodeLun(d.lun), 1u);
  EXPECT_EQ(d.itt, 0x11223344u);
}

TEST(PduVectors, ScsiCommand) {
  ScsiCommand v;
  v.read = true;
  v.attribute = 1;
  v.itt = 0x10;
  v.expected_data_transfer_length = 0x1000;
  v.cmd_sn = 0x20;
  v.exp_stat_sn = 0x30;
  v.cdb = {0x28, 0, 0, 0, 0, 0, 0, 0, 0x08, 0};
  ScsiCommand d;
  ExpectVector(v, "01c10000 00000000 00000000 00000000 00000010 00001000 00000020 00000030"
                  "28000000 00000000 08000000 00000000", &d);
  EXPECT_TRUE(d.read && d.final_bit && !d.write);
  EXPECT_EQ(d.attribute, 1);
  EXPECT_EQ(d.expected_data_transfer_length, 0x1000u);
}

TEST(PduVectors, TaskMgmtRequest) {
  TaskMgmtRequest v;
  v.immediate = true;
  v.function = 1;
  v.itt = 0x21;
  v.referenced_task_tag = 0x10;
  v.cmd_sn = 0x22;
  v.exp_stat_sn = 0x31;
  v.ref_cmd_sn = 0x20;
  TaskMgmtRequest d;
  ExpectVector(v, "42810000 00000000 00000000 00000000 00000021 00000010 00000022 00000031"
                  "00000020 00000000 00000000 00000000", &d);
  EXPECT_EQ(d.function, 1);
  EXPECT_EQ(d.ref_cmd_sn, 0x20u);
}

TEST(PduVectors, LoginRequest) {
  LoginRequest v;
  v.transit = true;
  v.csg = 1;
  v.nsg = 3;
  v.isid = kIsid;
  v.itt = 1;
  v.cmd_sn = 1;
  LoginRequest d;
  ExpectVector(v, "43870000 00000000 40000137 00000000 00000001 00000000 00000001 00000000"
                  "00000000 00000000 00000000 00000000", &d);
  EXPECT_EQ(d.isid, kIsid);
  EXPECT_EQ(d.nsg, 3);
}

TEST(PduVectors, TextRequest) {
  TextRequest v;
  v.itt = 2;
  v.cmd_sn = 3;
  v.exp_stat_sn = 4;
  TextRequest d;
  ExpectVector(v, "04800000 00000000 00000000 00000000 00000002 ffffffff 00000003 00000004"
                  "00000000 00000000 00000000 00000000", &d);
}

TEST(PduVectors, DataOut) {
  DataOut v;
  v.final_bit = true;
  v.itt = 0x10;
  v.ttt = 0x0a;
  v.exp_stat_sn = 0x31;
  v.data_sn = 2;
  v.buffer_offset = 0x2000;
  DataOut d;
  ExpectVector(v, "05800000 00000000 00000000 00000000 00000010 0000000a 00000000 00000031"
                  "00000000 00000002 00002000 00000000", &d);
  EXPECT_EQ(d.buffer_offset, 0x2000u);
}

TEST(PduVectors, LogoutRequest) {
  LogoutRequest v;
  v.immediate = true;
  v.itt = 5;
  v.cid = 1;
  v.cmd_sn = 6;
  v.exp_stat_sn = 7;
  LogoutRequest d;
  ExpectVector(v, "46800000 00000000 00000000 00000000 00000005 00010000 00000006 00000007"
                  "00000000 00000000 00000000 00000000", &d);
  EXPECT_EQ(d.cid, 1);
}

TEST(PduVectors, SnackRequest) {
  SnackRequest v;
  v.type = 1;
  v.itt = 0x10;
  v.ttt = 0xffffffff;
  v.exp_stat_sn = 9;
  v.beg_run = 3;
  v.run_length = 2;
  SnackRequest d;
  ExpectVector(v, "10810000 00000000 00000000 00000000 00000010 ffffffff 00000000 00000009"
                  "00000000 00000000 00000003 00000002", &d);
}

TEST(PduVectors, NopIn) {
  NopIn v;
  v.ttt = 1;
  v.stat_sn = 0x10;
  v.exp_cmd_sn = 0x20;
  v.max_cmd_sn = 0x9f;
  NopIn d;
  ExpectVector(v, "20800000 00000000 00000000 00000000 ffffffff 00000001 00000010 00000020"
                  "0000009f 00000000 00000000 00000000", &d);
}

TEST(PduVectors, ScsiResponse) {
  ScsiResponse v;
  v.underflow = true;
  v.status = 0x02;
  v.itt = 0x10;
  v.stat_sn = 0x11;
  v.exp_cmd_sn = 0x21;
  v.max_cmd_sn = 0xa0;
  v.exp_data_sn = 1;
  v.residual_count = 0x200;
  ScsiResponse d;
  ExpectVector(v, "21820002 00000000 00000000 00000000 00000010 00000000 00000011 00000021"
                  "000000a0 00000001 00000000 00000200", &d);
  EXPECT_TRUE(d.underflow);
  EXPECT_FALSE(d.overflow);
}

TEST(PduVectors, TaskMgmtResponse) {
  TaskMgmtResponse v;
  v.response = 1;
  v.itt = 0x21;
  v.stat_sn = 0x12;
  v.exp_cmd_sn = 0x22;
  v.max_cmd_sn = 0xa1;
  TaskMgmtResponse d;
  ExpectVector(v, "22800100 00000000 00000000 00000000 00000021 00000000 00000012 00000022"
                  "000000a1 00000000 00000000 00000000", &d);
}

TEST(PduVectors, LoginResponse) {
  LoginResponse v;
  v.transit = true;
  v.csg = 1;
  v.nsg = 3;
  v.isid = kIsid;
  v.tsih = 1;
  v.itt = 1;
  v.stat_sn = 1;
  v.exp_cmd_sn = 1;
  v.max_cmd_sn = 0x80;
  v.status_class = 2;
  v.status_detail = 1;
  LoginResponse d;
  ExpectVector(v, "23870000 00000000 40000137 00000001 00000001 00000000 00000001 00000001"
                  "00000080 02010000 00000000 00000000", &d);
  EXPECT_EQ(d.status_class, 2);
  EXPECT_EQ(d.tsih, 1);
}

TEST(PduVectors, TextResponse) {
  TextResponse v;
  v.itt = 2;
  v.stat_sn = 2;
  v.exp_cmd_sn = 3;
  v.max_cmd_sn = 0x82;
  TextResponse d;
  ExpectVector(v, "24800000 00000000 00000000 00000000 00000002 ffffffff 00000002 00000003"
                  "00000082 00000000 00000000 00000000", &d);
}

TEST(PduVectors, DataIn) {
  DataIn v;
  v.final_bit = true;
  v.underflow = true;
  v.status_present = true;
  v.status = 0;
  v.itt = 0x10;
  v.stat_sn = 0x13;
  v.exp_cmd_sn = 0x21;
  v.max_cmd_sn = 0xa0;
  v.residual_count = 0x100;
  DataIn d;
  ExpectVector(v, "25830000 00000000 00000000 00000000 00000010 ffffffff 00000013 00000021"
                  "000000a0 00000000 00000000 00000100", &d);
  EXPECT_TRUE(d.status_present);
}

TEST(PduVectors, LogoutResponse) {
  LogoutResponse v;
  v.itt = 5;
  v.stat_sn = 0x14;
  v.exp_cmd_sn = 7;
  v.max_cmd_sn = 0x86;
  v.time2wait = 2;
  v.time2retain = 0x14;
  LogoutResponse d;
  ExpectVector(v, "26800000 00000000 00000000 00000000 00000005 00000000 00000014 00000007"
                  "00000086 00000000 00020014 00000000", &d);
}

TEST(PduVectors, R2t) {
  R2t v;
  v.itt = 0x10;
  v.ttt = 0x0a;
  v.stat_sn = 0x15;
  v.exp_cmd_sn = 0x21;
  v.max_cmd_sn = 0xa0;
  v.r2t_sn = 1;
  v.buffer_offset = 0x10000;
  v.desired_data_transfer_length = 0x40000;
  R2t d;
  ExpectVector(v, "31800000 00000000 00000000 00000000 00000010 0000000a 00000015 00000021"
                  "000000a0 00000001 00010000 00040000", &d);
}

TEST(PduVectors, AsyncMessage) {
  AsyncMessage v;
  v.stat_sn = 0x16;
  v.exp_cmd_sn = 0x21;
  v.max_cmd_sn = 0xa0;
  v.async_event = 1;
  v.parameter3 = 5;
  AsyncMessage d;
  ExpectVector(v, "32800000 00000000 00000000 00000000 ffffffff 00000000 00000016 00000021"
                  "000000a0 01000000 00000005 00000000", &d);
}

TEST(PduVectors, Reject) {
  Reject v;
  v.reason = 0x04;
  v.stat_sn = 0x17;
  v.exp_cmd_sn = 0x21;
  v.max_cmd_sn = 0xa0;
  Reject d;
  ExpectVector(v, "3f800400 00000000 00000000 00000000 ffffffff 00000000 00000017 00000021"
                  "000000a0 00000000 00000000 00000000", &d);
}

TEST(PduDecode, RejectsWrongOpcodeAndBadFields) {
  NopIn nop_in;
  EXPECT_FALSE(Decode(Encode(NopOut()), &nop_in).ok());
  LoginRequest login;
  login.transit = true;
  login.continue_bit = true;
  LoginRequest out;
  EXPECT_FALSE(Decode(Encode(login), &out).ok());  // T and C together
  login.continue_bit = false;
  login.csg = 1;
  login.nsg = 0;  // backwards
  EXPECT_FALSE(Decode(Encode(login), &out).ok());
  ScsiCommand cmd;
  cmd.itt = kReservedTag;
  ScsiCommand cmd_out;
  EXPECT_FALSE(Decode(Encode(cmd), &cmd_out).ok());
  Bhs logout = Encode(LogoutRequest());
  logout.bytes[1] = 0x80 | 5;  // reason 5 does not exist
  LogoutRequest logout_out;
  EXPECT_FALSE(Decode(logout, &logout_out).ok());
}

TEST(Lun, PeripheralAndFlat) {
  EXPECT_EQ(EncodeLun(5), 0x0005000000000000ull);
  EXPECT_EQ(DecodeLun(0x0005000000000000ull), 5u);
  EXPECT_EQ(EncodeLun(300), 0x412c000000000000ull);
  EXPECT_EQ(DecodeLun(0x412c000000000000ull), 300u);
}

// RFC 3720 Appendix B.4 CRC32C examples.
TEST(Crc32c, Rfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(Crc32c(zeros), 0x8a9136aau);
  EXPECT_EQ(Crc32c(ones), 0x62a8ab43u);
  EXPECT_EQ(Crc32c(inc), 0x46dd794eu);
  EXPECT_EQ(Crc32c(dec), 0x113fdb5cu);
}

TEST(Serialize, PaddingAndDigestsOnTheWire) {
  Pdu pdu;
  pdu.bhs = Encode(NopIn());
  pdu.data = {1, 2, 3, 4, 5};
  std::vector<uint8_t> wire;
  ASSERT_TRUE(SerializePdu(pdu, true, true, &wire).ok());
  ASSERT_EQ(wire.size(), 48u + 4 + 8 + 4);
  EXPECT_EQ(wire[7], 5);  // DataSegmentLength excludes padding
  const uint32_t hcrc = Crc32c(absl::MakeConstSpan(wire.data(), 48));
  EXPECT_EQ(wire[48], hcrc & 0xff);  // least significant byte first
  EXPECT_EQ(wire[51], hcrc >> 24);
  const std::vector<uint8_t> padded = {1, 2, 3, 4, 5, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(wire.begin() + 52, wire.begin() + 60), padded);
  const uint32_t dcrc = Crc32c(padded);
  EXPECT_EQ(wire[60], dcrc & 0xff);
}

TEST(Ahs, ExtendedCdbAndBidi) {
  std::vector<uint8_t> tail(16);
  for (int i = 0; i < 16; ++i) tail[i] = static_cast<uint8_t>(0xa0 + i);
  std::vector<uint8_t> ahs = BuildExtendedCdbAhs(tail);
  EXPECT_EQ(ahs.size(), 20u);
  EXPECT_EQ(ahs[0], 0);
  EXPECT_EQ(ahs[1], 17);  // CDB length (32) - 15
  auto bidi = BuildBidiReadLengthAhs(0x1234);
  ahs.insert(ahs.end(), bidi.begin(), bidi.end());
  auto parsed = ParseAhs(ahs);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->extended_cdb, tail);
  EXPECT_EQ(parsed->bidi_read_length, 0x1234u);
  std::vector<uint8_t> bad = {0x00, 0x40, 0x01, 0x00};  // longer than the AHS
  EXPECT_FALSE(ParseAhs(bad).ok());
  std::vector<uint8_t> unknown = {0x00, 0x01, 0x07, 0x00};
  EXPECT_FALSE(ParseAhs(unknown).ok());
}

std::vector<uint8_t> WireCommand(bool hd, bool dd, std::vector<uint8_t> data) {
  ScsiCommand cmd;
  cmd.write = true;
  cmd.itt = 7;
  cmd.expected_data_transfer_length = static_cast<uint32_t>(data.size());
  Pdu pdu;
  pdu.bhs = Encode(cmd);
  pdu.ahs = BuildBidiReadLengthAhs(512);
  pdu.data = std::move(data);
  std::vector<uint8_t> wire;
  EXPECT_TRUE(SerializePdu(pdu, hd, dd, &wire).ok());
  return wire;
}

TEST(PduReader, ByteByByteWithDigests) {
  std::vector<uint8_t> data(1001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  auto wire = WireCommand(true, true, data);
  PduReader::Limits limits;
  limits.header_digest = limits.data_digest = true;
  PduReader reader(limits);
  std::optional<Pdu> got;
  for (size_t i = 0; i < wire.size(); ++i) {
    auto r = reader.Feed(absl::MakeConstSpan(&wire[i], 1));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->consumed, 1u);
    if (r->pdu) {
      EXPECT_EQ(i, wire.size() - 1);
      got = std::move(r->pdu);
    }
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data, data);
  EXPECT_EQ(got->ahs.size(), 8u);
  EXPECT_FALSE(got->data_digest_error);
}

TEST(PduReader, StopsAfterEachPdu) {
  auto one = WireCommand(false, false, {1, 2, 3});
  std::vector<uint8_t> two = one;
  two.insert(two.end(), one.begin(), one.end());
  PduReader reader;
  auto r = reader.Feed(two);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->pdu.has_value());
  EXPECT_EQ(r->consumed, one.size());
  auto r2 = reader.Feed(absl::MakeConstSpan(two).subspan(r->consumed));
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(r2->pdu.has_value());
}

TEST(PduReader, HeaderDigestMismatchIsFatal) {
  auto wire = WireCommand(true, false, {1, 2, 3});
  wire[20] ^= 1;  // corrupt the header after the digest was computed
  PduReader::Limits limits;
  limits.header_digest = true;
  PduReader reader(limits);
  auto r = reader.Feed(wire);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
}

TEST(PduReader, DataDigestMismatchIsReported) {
  auto wire = WireCommand(true, true, {1, 2, 3});
  wire[wire.size() - 6] ^= 0xff;  // a data byte
  PduReader::Limits limits;
  limits.header_digest = limits.data_digest = true;
  PduReader reader(limits);
  auto r = reader.Feed(wire);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->pdu.has_value());
  EXPECT_TRUE(r->pdu->data_digest_error);
}

TEST(PduReader, OversizedDataSegmentRejectedBeforeAllocation) {
  Bhs bhs = Encode(NopOut());
  bhs.set_data_segment_length(0xffffff);  // 16 MiB claimed, nothing sent
  PduReader reader;  // login limit 8192
  auto r = reader.Feed(bhs.bytes);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(PduReader, TargetOpcodeFromInitiatorIsFatal) {
  PduReader reader;
  EXPECT_FALSE(reader.Feed(Encode(NopIn()).bytes).ok());
  PduReader::Limits client;
  client.from_initiator = false;
  PduReader client_reader(client);
  auto r = client_reader.Feed(Encode(NopIn()).bytes);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->pdu.has_value());
}

TEST(PduReader, NewLimitsApplyFromTheNextPdu) {
  PduReader reader;
  PduReader::Limits ffp;
  ffp.max_data_segment_length = 65536;
  ffp.header_digest = true;
  reader.set_limits(ffp);
  auto wire = WireCommand(true, false, std::vector<uint8_t>(20000, 1));
  auto r = reader.Feed(wire);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->pdu.has_value());
}

}  // namespace
}  // namespace iscsi
