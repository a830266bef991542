#include "target/scsi/extended_copy.h"

#include "target/scsi/bytes.h"

namespace scsi {
namespace {

SenseData ParameterListLengthError() {
  return IllegalRequest(asc::kParameterListLengthError);
}

SenseData IllegalWithPointer(Asc code, uint16_t byte) {
  SenseData s = InvalidFieldInParameterList(byte);
  s.code = code;
  return s;
}

}  // namespace

SenseData CopyAborted(Asc code, std::optional<uint16_t> parameter_byte) {
  SenseData s;
  s.key = SenseKey::kCopyAborted;
  s.code = code;
  // Encoded as SKSV with bit 6 clear: for COPY ABORTED that is the segment
  // pointer format with SD=0 (offset from the start of the parameter list).
  if (parameter_byte) s.field_pointer = FieldPointer{false, *parameter_byte, {}};
  return s;
}

CopyParseResult ParseExtendedCopyLid1(absl::Span<const uint8_t> data,
                                      const CopyLimits& limits) {
  CopyParseResult r;
  auto fail = [&r](SenseData s) {
    r.error = s;
    return r;
  };
  if (data.size() < kCopyParameterHeaderLength) return fail(ParameterListLengthError());
  const uint8_t* p = data.data();
  r.list.list_id = p[0];
  const uint8_t usage = (p[1] >> 3) & 0x03;
  if (usage == 1) return fail(InvalidFieldInParameterList(1, 4));
  r.list.usage = static_cast<ListIdUsage>(usage);
  if (r.list.usage == ListIdUsage::kNone && r.list.list_id != 0) {
    return fail(InvalidFieldInParameterList(0));
  }
  if (p[1] & 0x20) return fail(InvalidFieldInParameterList(1, 5));  // STR: no streams
  const uint64_t target_length = GetBe16(&p[2]);
  const uint64_t segment_length = GetBe32(&p[8]);
  const uint64_t inline_length = GetBe32(&p[12]);
  if (inline_length > limits.max_inline_data_length) {
    return fail(IllegalWithPointer(asc::kInlineDataLengthExceeded, 12));
  }
  if (target_length + segment_length > limits.max_descriptor_list_length ||
      kCopyParameterHeaderLength + target_length + segment_length + inline_length >
          data.size()) {
    return fail(ParameterListLengthError());
  }
  if (target_length % kTargetDescriptorLength != 0) {
    return fail(InvalidFieldInParameterList(2));
  }
  if (target_length / kTargetDescriptorLength > limits.max_target_descriptors) {
    return fail(IllegalRequest(asc::kTooManyTargetDescriptors));
  }
  size_t off = kCopyParameterHeaderLength;
  for (const size_t end = off + target_length; off < end; off += kTargetDescriptorLength) {
    const uint8_t* d = p + off;
    const auto at = [off](size_t i) { return static_cast<uint16_t>(off + i); };
    if (d[0] != kIdentificationTargetDescriptor) {
      return fail(IllegalWithPointer(asc::kUnsupportedTargetDescriptorTypeCode, at(0)));
    }
    // LU ID TYPE and NUL are ignored (SPC-4); only block devices.
    if ((d[1] & 0x1F) != 0) return fail(InvalidFieldInParameterList(at(1), 4));
    CopyTarget t;
    t.code_set = d[4] & 0x0F;
    t.association = (d[5] >> 4) & 0x03;
    t.designator_type = d[5] & 0x0F;
    const uint8_t length = d[7];
    if (length > 20) return fail(InvalidFieldInParameterList(at(7)));
    t.designator.assign(d + 8, d + 8 + length);
    t.block_size = GetBe24(&d[29]);
    t.offset = at(0);
    r.list.targets.push_back(std::move(t));
  }
  for (const size_t end = off + segment_length; off < end;) {
    const uint8_t* d = p + off;
    const auto at = [off](size_t i) { return static_cast<uint16_t>(off + i); };
    if (end - off < 4) return fail(ParameterListLengthError());
    const size_t length = size_t{GetBe16(&d[2])} + 4;
    if (length > end - off) return fail(ParameterListLengthError());
    if (r.list.segments.size() == limits.max_segment_descriptors) {
      return fail(IllegalRequest(asc::kTooManySegmentDescriptors));
    }
    if (d[0] != kBlockToBlockSegmentDescriptor) {
      return fail(IllegalWithPointer(asc::kUnsupportedSegmentDescriptorTypeCode, at(0)));
    }
    if (length != kBlockToBlockSegmentLength) return fail(InvalidFieldInParameterList(at(2)));
    BlockCopySegment s;
    s.destination_count = d[1] & 0x02;
    s.source = GetBe16(&d[4]);
    s.destination = GetBe16(&d[6]);
    s.blocks = GetBe16(&d[10]);
    s.source_lba = GetBe64(&d[12]);
    s.destination_lba = GetBe64(&d[20]);
    s.offset = at(0);
    r.list.segments.push_back(s);
    off += length;
  }
  return r;
}

}  // namespace scsi
