"""RFC 3550 §6.4 sender/receiver reports, §6.6 BYE, compound packets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from srs.errors import RtpError
from srs.rtp.rtcp import Bye, OtherRtcp, ReceiverReport, ReportBlock, SenderReport, parse_rtcp

BLOCK = struct.pack("!IIIIII", 0xCAFEBABE, (5 << 24) | 0xFFFFFE, 70000, 33, 0x12345678, 65536)
SR = (
    struct.pack("!BBH", 0x81, 200, 12)
    + struct.pack("!IIIIII", 0x11223344, 0xE8F1C2A0, 0x80000000, 160000, 1000, 160000)
    + BLOCK
)
SDES = struct.pack("!BBH", 0x81, 202, 3) + struct.pack("!I", 0x11223344) + b"\x01\x03abc\x00\x00\x00"
BYE = struct.pack("!BBH", 0x81, 203, 3) + struct.pack("!I", 0x11223344) + b"\x04done\x00\x00\x00"


def test_compound_sr_sdes() -> None:
    packets = parse_rtcp(SR + SDES)
    assert len(packets) == 2
    sr = packets[0]
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0x11223344
    assert sr.ntp_timestamp == (0xE8F1C2A0 << 32) | 0x80000000
    assert sr.ntp_unix_time == pytest.approx(0xE8F1C2A0 - 2_208_988_800 + 0.5)
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (160000, 1000, 160000)
    assert sr.reports == (ReportBlock(0xCAFEBABE, 5, -2, 70000, 33, 0x12345678, 65536),)
    assert packets[1] == OtherRtcp(202, 1, SDES[4:])


def test_receiver_report_and_bye() -> None:
    rr = struct.pack("!BBH", 0x81, 201, 7) + struct.pack("!I", 7) + BLOCK
    packets = parse_rtcp(rr + BYE)
    assert packets[0] == ReceiverReport(7, (ReportBlock(0xCAFEBABE, 5, -2, 70000, 33, 0x12345678, 65536),))
    assert packets[1] == Bye((0x11223344,), "done")


def test_padding_in_last_packet_is_removed() -> None:
    rr = struct.pack("!BBH", 0xA0, 201, 2) + struct.pack("!I", 9) + b"\x00\x00\x00\x04"
    assert parse_rtcp(rr) == [ReceiverReport(9, ())]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter"),
        (b"\x81\xc8", "shorter"),
        (b"\x41\xc8\x00\x00", "version"),
        (b"\x80\x00\x00\x00", "outside"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "runs past"),
        (struct.pack("!BBH", 0x81, 200, 1) + b"\x00" * 4, "SR body"),
        (struct.pack("!BBH", 0x80, 201, 0), "RR without"),
        (struct.pack("!BBH", 0x83, 201, 1) + b"\x00" * 4, "report count"),
        (struct.pack("!BBH", 0xA0, 201, 1) + b"\x00\x00\x00\x00", "padding"),
        (struct.pack("!BBH", 0x83, 203, 1) + b"\x00" * 4, "BYE"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtcp(data)


def test_trailing_bytes_after_last_packet() -> None:
    with pytest.raises(RtpError, match="trailing"):
        parse_rtcp(SR + b"\x81\xca")


@pytest.mark.parametrize("cut", range(len(SR + SDES)))
def test_every_truncation_raises(cut: int) -> None:
    data = (SR + SDES)[:cut]
    if cut == len(SR):
        assert len(parse_rtcp(data)) == 1
        return
    with pytest.raises(RtpError):
        parse_rtcp(data)


@given(st.binary(max_size=80))
def test_garbage_only_raises_rtp_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtpError:
        return
    assert packets
