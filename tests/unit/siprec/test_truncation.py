"""Every prefix and random mutations of every fixture: parsed, or a ParseError — never another exception."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srs.errors import ParseError
from srs.sdp.answer import build_answer
from srs.sdp.parse import parse_sdp
from srs.siprec.inspect import inspect_bytes
from srs.siprec.metadata import parse_metadata
from srs.siprec.multipart import extract_siprec_body
from tests.unit.siprec.fixtures import DATA, body_of, load

SDP_FIXTURES = sorted(p.name for p in DATA.glob("*.sdp"))
XML_FIXTURES = sorted(p.name for p in DATA.glob("*.xml"))
SIP_FIXTURES = sorted(p.name for p in DATA.glob("*.sip"))


def survives(action: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(ParseError):
        action(data)


def sdp_round(data: bytes) -> None:
    offer = parse_sdp(data).session
    build_answer(
        offer, local_address="192.0.2.1", ports=[10000] * len(offer.media),
        can_decode=lambda codec: True, session_id=1, session_version=1, srtp_key=lambda suite: "inline:k",
    )


@pytest.mark.parametrize("name", SDP_FIXTURES)
def test_every_sdp_prefix(name: str) -> None:
    data = load(name)
    for end in range(len(data) + 1):
        survives(sdp_round, data[:end])


@pytest.mark.parametrize("name", XML_FIXTURES)
def test_every_metadata_prefix(name: str) -> None:
    data = load(name)
    for end in range(0, len(data) + 1, 1 if len(data) < 4000 else 3):
        survives(parse_metadata, data[:end])


@pytest.mark.parametrize("name", SIP_FIXTURES)
def test_every_multipart_prefix(name: str) -> None:
    headers, body = body_of(name)
    content_type = headers.get("content-type")
    for end in range(len(body) + 1):
        survives(lambda part: extract_siprec_body(content_type, part), body[:end])


@pytest.mark.parametrize("name", SIP_FIXTURES + XML_FIXTURES + SDP_FIXTURES)
def test_every_file_prefix_through_inspect(name: str) -> None:
    data = load(name)
    for end in range(0, len(data) + 1, 7):
        survives(inspect_bytes, data[:end])


ALL = SIP_FIXTURES + XML_FIXTURES + SDP_FIXTURES
INSERTIONS = [b"\r\n", b"\n", b"--", b"<", b"&", b"=", b":", b" ", b"\x00", b"\xff", b"--b1"]
CONTENT_TYPES = [
    None,
    "multipart/mixed",
    "application/sdp",
    'multipart/mixed; boundary=""',
    "application/rs-metadata",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(load(draw(st.sampled_from(ALL))))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data)))
        choice = draw(st.integers(0, 2))
        if choice == 0 and position < len(data):
            del data[position : position + draw(st.integers(1, 40))]
        elif choice == 1:
            data[position:position] = draw(
                st.sampled_from(INSERTIONS)
            )
        elif position < len(data):
            data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_never_escape_as_other_exceptions(data: bytes) -> None:
    survives(inspect_bytes, data)
    survives(sdp_round, data)
    survives(parse_metadata, data)
    survives(lambda body: extract_siprec_body("multipart/mixed;boundary=uniqueBoundary", body), data)
    survives(lambda body: extract_siprec_body(None, body), data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes(data: bytes, content_type: str | None) -> None:
    survives(lambda body: extract_siprec_body(content_type, body), data)
    survives(sdp_round, data)
    survives(parse_metadata, data)
    survives(inspect_bytes, data)
