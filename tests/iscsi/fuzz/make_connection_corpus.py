#!/usr/bin/env python3
"""Writes the seed corpus of connection_fuzzer: full-feature-phase PDU streams
(no digests) a real initiator sends after login. Byte 0 is the login config."""
import os
import struct
import sys

LUN0 = bytes(8)


def pdu(opcode, flags, itt, word20, cmd_sn, exp_stat_sn, tail16, data=b"", lun=LUN0,
        immediate=False):
    bhs = bytearray(48)
    bhs[0] = opcode | (0x40 if immediate else 0)
    bhs[1] = flags
    bhs[5:8] = len(data).to_bytes(3, "big")
    bhs[8:16] = lun
    struct.pack_into(">IIII", bhs, 16, itt, word20, cmd_sn, exp_stat_sn)
    bhs[32:48] = tail16.ljust(16, b"\0")
    return bytes(bhs) + data + bytes(-len(data) % 4)


def scsi_cmd(itt, cmd_sn, cdb, edtl, read=False, write=False, final=True, data=b""):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
    return pdu(0x01, flags, itt, edtl, cmd_sn, 1, cdb, data)


def data_out(itt, ttt, data_sn, offset, data, final=True):
    tail = struct.pack(">III", 0, data_sn, offset)  # reserved, DataSN, BufferOffset
    return pdu(0x05, 0x80 if final else 0, itt, ttt, 0, 1, tail, data)


def rw10(op, lba, blocks):
    return bytes([op, 0]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + b"\0"


def nop_out(itt, cmd_sn, data=b""):
    return pdu(0x00, 0x80, itt, 0xFFFFFFFF, cmd_sn, 1, b"", data, immediate=True)


SEEDS = {
    "inquiry_read_capacity": bytes([0]) + scsi_cmd(1, 1, bytes([0x12, 0, 0, 0, 36, 0]), 36, read=True)
    + scsi_cmd(2, 2, bytes([0x25]), 8, read=True),
    "write_immediate_read_back": bytes([0]) + scsi_cmd(1, 1, rw10(0x2A, 8, 1), 512, write=True,
                                                       data=bytes(range(256)) * 2)
    + scsi_cmd(2, 2, rw10(0x28, 8, 1), 512, read=True),
    # InitialR2T=No, ImmediateData=No: unsolicited Data-Out (two PDUs).
    "write_unsolicited": bytes([4 | 8]) + scsi_cmd(1, 1, rw10(0x2A, 0, 2), 1024, write=True,
                                                   final=False)
    + data_out(1, 0xFFFFFFFF, 0, 0, b"a" * 512, final=False)
    + data_out(1, 0xFFFFFFFF, 1, 512, b"b" * 512),
    # R2T flow: the first R2T's TTT is 1 on a fresh connection.
    "write_r2t": bytes([0]) + scsi_cmd(1, 1, rw10(0x2A, 4, 2), 1024, write=True)
    + data_out(1, 1, 0, 0, b"c" * 512, final=False) + data_out(1, 1, 1, 512, b"d" * 512),
    "bad_datasn": bytes([0]) + scsi_cmd(1, 1, rw10(0x2A, 4, 2), 1024, write=True)
    + data_out(1, 1, 1, 0, b"e" * 512, final=False) + data_out(1, 1, 0, 512, b"f" * 512),
    "residuals": bytes([0]) + scsi_cmd(1, 1, rw10(0x28, 0, 2), 512, read=True)
    + scsi_cmd(2, 2, rw10(0x2A, 0, 2), 512, write=True, data=b"g" * 512)
    + scsi_cmd(3, 3, rw10(0x28, 0, 1), 0, read=True),
    "nop_text_tmf_logout": bytes([0]) + nop_out(1, 1, b"ping")
    + pdu(0x04, 0x80, 2, 0xFFFFFFFF, 1, 1, b"", b"SendTargets=All\0", immediate=True)
    + pdu(0x02, 0x80 | 0x01, 3, 0x7, 1, 1, struct.pack(">II", 1, 1), immediate=True)
    + pdu(0x06, 0x80, 4, 0, 1, 1, b"", immediate=True),
    "header_digest": bytes([1]) + scsi_cmd(1, 1, bytes([0]), 0),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                         "corpus", "connection")
os.makedirs(out, exist_ok=True)
for name, seed in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(seed)
