// The envelope codec on its own: what goes in comes out, and every field a
// peer controls is bounded before use.
#include "vadapter/envelope.h"

#include "gtest/gtest.h"
#include "tests/vadapter/ram_disk_router.h"

namespace vadapter {
namespace {

std::shared_ptr<const scsi::ItNexus> Keep(scsi::ItNexus n) {
  return std::make_shared<const scsi::ItNexus>(std::move(n));
}

TEST(EnvelopeTest, CommandRoundTrip) {
  auto task = vadapter_test::WriteTask(7, vadapter_test::Pattern(1024, 2), 99);
  task->attribute = scsi::TaskAttribute::kOrdered;
  task->expected_data_in_length = 0;
  interconnect::ScsiCommand wire;
  ASSERT_TRUE(EncodeScsiCommand(*task, EnvelopeLimits(), &wire).ok());
  // data_out travels as the item's payload (vadapter/wire.h), not in wire.
  EXPECT_TRUE(wire.data_out().empty());
  // Through bytes, as on the interconnect.
  interconnect::ScsiCommand parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire.SerializeAsString()));
  auto back = DecodeScsiCommand(parsed, task->data_out, EnvelopeLimits(), Keep);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*(*back)->nexus, *task->nexus);
  EXPECT_EQ((*back)->nexus->target_port_name, task->nexus->target_port_name);
  EXPECT_EQ((*back)->nexus->target_port_group, task->nexus->target_port_group);
  EXPECT_EQ((*back)->lun, task->lun);
  EXPECT_EQ((*back)->cdb, task->cdb);
  EXPECT_EQ((*back)->attribute, scsi::TaskAttribute::kOrdered);
  EXPECT_EQ((*back)->tag, 99u);
  EXPECT_EQ((*back)->data_out, task->data_out);

  // A peer that puts data_out in the message instead: taken from there.
  parsed.set_data_out("abcd");
  back = DecodeScsiCommand(parsed, {}, EnvelopeLimits(), Keep);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->data_out, std::vector<uint8_t>({'a', 'b', 'c', 'd'}));
  // More data-out than the limits allow.
  EnvelopeLimits small;
  small.max_data_out_bytes = 3;
  EXPECT_FALSE(DecodeScsiCommand(parsed, {}, small, Keep).ok());
  EXPECT_FALSE(DecodeScsiCommand(parsed, {1, 2, 3, 4}, small, Keep).ok());
}

TEST(EnvelopeTest, ResponseRoundTripAndContractChecks) {
  scsi::TaskResponse r;
  r.status = scsi::ScsiStatus::kCheckCondition;
  r.sense = scsi::BuildSense(scsi::LbaOutOfRange(), scsi::SenseFormat::kFixed);
  r.data_in = {1, 2, 3};
  r.wanted_data_in_length = 512;
  r.wanted_data_out_length = 7;
  interconnect::ScsiCompletion c;
  EncodeScsiResponse(r, &c);
  EXPECT_TRUE(c.data_in().empty());  // the item's payload (vadapter/wire.h)
  scsi::TaskResponse back = DecodeScsiCompletion(c, r.data_in, 512, EnvelopeLimits());
  EXPECT_EQ(back.status, r.status);
  EXPECT_EQ(back.sense, r.sense);
  EXPECT_EQ(back.data_in, r.data_in);
  EXPECT_EQ(back.wanted_data_in_length, 512u);
  EXPECT_EQ(back.wanted_data_out_length, 7u);
  EXPECT_FALSE(back.aborted);

  // More data than the initiator allowed, an unknown status, oversized sense:
  // the partner broke the contract.
  const scsi::TaskResponse failure = InternalTargetFailureResponse();
  interconnect::ScsiCompletion bad = c;
  EXPECT_EQ(DecodeScsiCompletion(bad, r.data_in, 2, EnvelopeLimits()).sense,
            failure.sense);
  bad.set_data_in("abc");  // data-in inside the message counts the same
  EXPECT_EQ(DecodeScsiCompletion(bad, {}, 2, EnvelopeLimits()).sense, failure.sense);
  EXPECT_EQ(DecodeScsiCompletion(bad, {}, 3, EnvelopeLimits()).data_in,
            std::vector<uint8_t>({'a', 'b', 'c'}));
  bad = c;
  bad.set_status(0x99);
  EXPECT_EQ(DecodeScsiCompletion(bad, {}, 512, EnvelopeLimits()).sense, failure.sense);
  bad = c;
  bad.set_sense(std::string(253, 'x'));
  EXPECT_EQ(DecodeScsiCompletion(bad, {}, 512, EnvelopeLimits()).sense, failure.sense);

  interconnect::TmfCompletion t;
  t.set_result(static_cast<uint32_t>(scsi::TmfResult::kTaskDoesNotExist));
  EXPECT_EQ(DecodeTmfCompletion(t), scsi::TmfResult::kTaskDoesNotExist);
  t.set_result(1000);
  EXPECT_EQ(DecodeTmfCompletion(t), scsi::TmfResult::kRejected);
}

TEST(EnvelopeTest, EncoderRefusesWhatThePartnerWouldReject) {
  EnvelopeLimits limits;
  interconnect::ScsiCommand out;
  auto t = vadapter_test::ReadTask(0, 1, 512, 1);
  t->lun = limits.max_lun + 1;
  EXPECT_FALSE(EncodeScsiCommand(*t, limits, &out).ok());
  t = vadapter_test::ReadTask(0, 1, limits.max_data_in_bytes + 1, 1);
  EXPECT_FALSE(EncodeScsiCommand(*t, limits, &out).ok());
  t = vadapter_test::ReadTask(0, 1, 512, 1);
  t->nexus = nullptr;
  EXPECT_FALSE(EncodeScsiCommand(*t, limits, &out).ok());
  t = vadapter_test::ReadTask(0, 1, 512, 1);
  t->cdb.assign(261, 0);
  EXPECT_FALSE(EncodeScsiCommand(*t, limits, &out).ok());
}

TEST(EnvelopeTest, TmfDecodeValidates) {
  scsi::TmfRequest r;
  r.nexus = vadapter_test::TestNexus();
  r.function = scsi::TmfFunction::kItNexusLoss;
  r.lun = 4;
  interconnect::TaskManagement wire;
  ASSERT_TRUE(EncodeTaskManagement(r, EnvelopeLimits(), &wire).ok());
  auto back = DecodeTaskManagement(wire, EnvelopeLimits(), Keep);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->function, scsi::TmfFunction::kItNexusLoss);
  EXPECT_EQ(back->lun, 4u);
  wire.set_function(8);
  EXPECT_FALSE(DecodeTaskManagement(wire, EnvelopeLimits(), Keep).ok());
  wire.set_function(0);
  wire.mutable_nexus()->set_relative_target_port_id(0);
  EXPECT_FALSE(DecodeTaskManagement(wire, EnvelopeLimits(), Keep).ok());
}

TEST(EnvelopeTest, UnavailableIsFixedFormat0402Slash0C) {
  scsi::TaskResponse r = UnavailableResponse();
  EXPECT_EQ(r.status, scsi::ScsiStatus::kCheckCondition);
  ASSERT_EQ(r.sense.size(), 18u);
  EXPECT_EQ(r.sense[0], 0x70);
  EXPECT_EQ(r.sense[2] & 0x0f, 0x02);
  EXPECT_EQ(r.sense[12], 0x04);
  EXPECT_EQ(r.sense[13], 0x0C);
}

}  // namespace
}  // namespace vadapter
