"""RFC 3550 §5.1 fixed header, §5.3.1 extension, padding and CSRC list."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from srs.errors import RtpError
from srs.rtp.packet import RtpExtension, parse_rtp, split_rtp

# V=2 P=1 X=1 CC=2, M=1 PT=8, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304,
# CSRCs 0xAAAAAAAA 0xBBBBBBBB, extension profile 0xBEDE with one word, payload "abc", 5 bytes padding.
FULL = (
    bytes([0xB2, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04])
    + bytes.fromhex("AAAAAAAA BBBBBBBB")
    + bytes.fromhex("BEDE0001 10FF0000")
    + b"abc"
    + b"\x00\x00\x00\x00\x05"
)
PLAIN = bytes.fromhex("80 00 0001 000000a0 11223344") + b"\xff" * 160


def test_plain_packet_fields() -> None:
    packet = parse_rtp(PLAIN)
    assert (packet.marker, packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        False,
        0,
        1,
        160,
        0x11223344,
    )
    assert packet.csrcs == () and packet.extension is None and packet.padding == 0
    assert packet.payload == b"\xff" * 160


def test_packet_with_csrc_extension_and_padding() -> None:
    packet = parse_rtp(FULL)
    assert packet.marker is True
    assert packet.payload_type == 8
    assert packet.sequence == 0x1234
    assert packet.timestamp == 0xDEADBEEF
    assert packet.ssrc == 0x01020304
    assert packet.csrcs == (0xAAAAAAAA, 0xBBBBBBBB)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10FF0000"))
    assert packet.payload == b"abc"
    assert packet.padding == 5


def test_split_matches_full_parse() -> None:
    for data in (PLAIN, FULL):
        packet = parse_rtp(data)
        b1, seq, ts, ssrc, payload = split_rtp(data)
        assert (b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, bytes(payload)) == (
            packet.payload_type,
            packet.marker,
            packet.sequence,
            packet.timestamp,
            packet.ssrc,
            packet.payload,
        )


def test_header_only_packet_has_empty_payload() -> None:
    assert parse_rtp(PLAIN[:12]).payload == b""


@pytest.mark.parametrize("version", [0, 1, 3])
def test_wrong_version_is_rejected(version: int) -> None:
    data = bytes([version << 6]) + PLAIN[1:]
    with pytest.raises(RtpError, match="version"):
        parse_rtp(data)
    with pytest.raises(RtpError, match="version"):
        split_rtp(data)


def test_padding_count_zero_is_rejected() -> None:
    data = bytes([0xA0]) + PLAIN[1:-1] + b"\x00"
    with pytest.raises(RtpError, match="zero"):
        parse_rtp(data)


def test_padding_larger_than_payload_is_rejected() -> None:
    data = bytes([0xA0]) + PLAIN[1:12] + b"\x00\x00\x09"
    with pytest.raises(RtpError, match="exceeds"):
        parse_rtp(data)


def test_padding_may_consume_the_whole_payload() -> None:
    data = bytes([0xA0]) + PLAIN[1:12] + b"\x00\x00\x03"
    assert parse_rtp(data).payload == b""


def test_extension_length_past_end_is_rejected() -> None:
    data = bytes([0x90]) + PLAIN[1:12] + struct.pack("!HH", 0xBEDE, 50) + b"\x00" * 8
    with pytest.raises(RtpError, match="extension"):
        parse_rtp(data)


@pytest.mark.parametrize("cut", range(len(FULL) + 1))
def test_every_truncation_parses_or_raises_rtp_error(cut: int) -> None:
    data = FULL[:cut]
    try:
        packet = parse_rtp(data)
    except RtpError:
        with pytest.raises(RtpError):
            split_rtp(data)
        return
    # a truncation that still parses must have taken the last byte as a padding count
    assert packet.payload == split_rtp(data)[4]


def test_truncations_before_the_padding_count_all_fail() -> None:
    # the full packet's last byte is the padding count; every shorter prefix that ends
    # inside the header, CSRC list or extension cannot parse
    for cut in range(12 + 8 + 8):
        with pytest.raises(RtpError):
            parse_rtp(FULL[:cut])


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert len(packet.payload) + packet.padding + 12 + 4 * len(packet.csrcs) <= len(data)


@given(
    st.booleans(),
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12))),
    st.binary(max_size=40),
    st.integers(0, 20),
)
def test_built_packets_round_trip(
    marker: bool,
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    csrcs: list[int],
    extension: tuple[int, bytes] | None,
    payload: bytes,
    padding: int,
) -> None:
    b0 = 0x80 | len(csrcs) | (0x20 if padding else 0) | (0x10 if extension else 0)
    data = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    ext_data = b""
    if extension is not None:
        ext_data = extension[1] + b"\x00" * (-len(extension[1]) % 4)
        data += struct.pack("!HH", extension[0], len(ext_data) // 4) + ext_data
    data += payload
    if padding:
        data += b"\x00" * (padding - 1) + bytes([padding])
    packet = parse_rtp(data)
    assert (packet.marker, packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        marker,
        pt,
        seq,
        ts,
        ssrc,
    )
    assert packet.csrcs == tuple(csrcs)
    assert packet.extension == (None if extension is None else RtpExtension(extension[0], ext_data))
    assert packet.payload == payload
    assert packet.padding == padding
    assert split_rtp(data)[4] == payload
