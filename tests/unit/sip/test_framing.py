"""Stream framing by Content-Length (RFC 3261 §18.3) and CRLF keep-alives (RFC 5626 §4.4.1)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import MessageTooLarge, SipParseError
from srs.sip.framing import StreamFramer
from srs.sip.message import parse_message
from tests.unit.sip.fixtures import COMPACT_FOLDED, OK_RESPONSE, OPTIONS, RFC3261_INVITE, SIPREC_INVITE

SAMPLES = [SIPREC_INVITE, OPTIONS, RFC3261_INVITE, COMPACT_FOLDED, OK_RESPONSE]


@pytest.mark.parametrize("sample", SAMPLES, ids=["siprec", "options", "rfc3261", "compact", "200"])
def test_whole_message_in_one_segment(sample: bytes) -> None:
    framer = StreamFramer(65535)
    frames = framer.feed(sample)
    assert len(frames) == 1
    assert parse_message(frames[0]) == parse_message(sample)
    assert framer.buffered == 0


@pytest.mark.parametrize("sample", SAMPLES, ids=["siprec", "options", "rfc3261", "compact", "200"])
def test_byte_by_byte(sample: bytes) -> None:
    framer = StreamFramer(65535)
    frames: list[bytes] = []
    for index in range(len(sample)):
        frames += framer.feed(sample[index : index + 1])
    assert [parse_message(f) for f in frames] == [parse_message(sample)]


def test_many_messages_per_segment_and_trailing_partial() -> None:
    framer = StreamFramer(65535)
    stream = OPTIONS + SIPREC_INVITE + OK_RESPONSE + SIPREC_INVITE[:100]
    frames = framer.feed(stream)
    assert frames == [OPTIONS, SIPREC_INVITE, OK_RESPONSE]
    assert framer.buffered == 100
    assert framer.feed(SIPREC_INVITE[100:]) == [SIPREC_INVITE]


def test_trailing_junk_becomes_the_next_message_start() -> None:
    framer = StreamFramer(65535)
    assert framer.feed(SIPREC_INVITE + b"junk") == [SIPREC_INVITE]
    assert framer.buffered == 4


def test_double_crlf_ping_is_counted_and_answered_with_one_crlf() -> None:
    framer = StreamFramer(65535)
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pending_pongs == 1
    assert framer.take_pongs() == b"\r\n"
    assert framer.take_pongs() == b""


def test_ping_split_over_segments_and_between_messages() -> None:
    framer = StreamFramer(65535)
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n" + OPTIONS + b"\r\n\r\n") == [OPTIONS]
    assert framer.take_pongs() == b"\r\n\r\n"


def test_single_crlf_is_a_pong_and_ignored() -> None:
    framer = StreamFramer(65535)
    assert framer.feed(b"\r\n" + OPTIONS) == [OPTIONS]
    assert framer.pending_pongs == 0


def test_compact_content_length_frames_the_body() -> None:
    body_message = OPTIONS.replace(b"Content-Length: 0", b"l: 5") + b"hello"
    assert StreamFramer(65535).feed(body_message + OPTIONS) == [body_message, OPTIONS]


def test_missing_content_length_on_stream_is_an_error() -> None:
    with pytest.raises(SipParseError, match="mandatory"):
        StreamFramer(65535).feed(OPTIONS.replace(b"Content-Length: 0\r\n", b""))


def test_invalid_or_conflicting_content_length() -> None:
    with pytest.raises(SipParseError, match="invalid"):
        StreamFramer(65535).feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: x"))
    with pytest.raises(SipParseError, match="conflicting"):
        StreamFramer(65535).feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 2"))


def test_content_length_beyond_cap_is_513_before_the_body_arrives() -> None:
    head = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 100000")
    with pytest.raises(MessageTooLarge) as info:
        StreamFramer(65535).feed(head)
    assert info.value.status == 513


def test_endless_headers_are_513() -> None:
    framer = StreamFramer(1000)
    framer.feed(b"OPTIONS sip:a SIP/2.0\r\n")
    with pytest.raises(MessageTooLarge):
        for _ in range(100):
            framer.feed(b"X-Filler: 0123456789\r\n")


def test_message_exactly_at_cap_passes() -> None:
    assert StreamFramer(len(SIPREC_INVITE)).feed(SIPREC_INVITE) == [SIPREC_INVITE]
    with pytest.raises(MessageTooLarge):
        StreamFramer(len(SIPREC_INVITE) - 1).feed(SIPREC_INVITE)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
def test_any_segmentation_yields_the_same_messages(cuts: list[int]) -> None:
    stream = b"\r\n\r\n" + SIPREC_INVITE + OPTIONS + b"\r\n\r\n" + OK_RESPONSE
    framer = StreamFramer(65535)
    frames: list[bytes] = []
    position = 0
    for size in cuts:
        frames += framer.feed(stream[position : position + size])
        position += size
    frames += framer.feed(stream[position:])
    assert frames == [SIPREC_INVITE, OPTIONS, OK_RESPONSE]
    assert framer.take_pongs() == b"\r\n\r\n"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_streams_only_raise_sip_parse_errors(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        StreamFramer(200).feed(data)
