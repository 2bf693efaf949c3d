"""Which hosts may send a stream, from the SDP and the SIP peer under each ``rtp_source`` mode."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from srs.daemon.recordings import LiveRecordings, LiveSession, MediaOptions
from srs.sdp.answer import NegotiatedStream
from srs.sdp.model import Codec, Direction

PEER = "192.0.2.10"


def stream(address: str | None, direction: Direction = Direction.SENDONLY) -> NegotiatedStream:
    return NegotiatedStream(
        index=0,
        label="1",
        local_port=30000,
        codecs={0: Codec(0, "PCMU", 8000, 1, None)},
        telephone_event_pt=None,
        cn_pt=None,
        direction=direction,
        remote_address=address,
        remote_port=40000,
        remote_rtcp_port=40001,
        crypto_offer=None,
        crypto_answer_key=None,
        refused=False,
    )


def allowed(mode: str, offered: NegotiatedStream) -> tuple[tuple[str, ...] | None, list[str]]:
    live = SimpleNamespace(options=MediaOptions(rtp_source=mode))
    session = LiveSession("s", "r", "c", 0.0, peer_host=PEER)
    sources = LiveRecordings._allowed_sources(live, session, offered)  # type: ignore[arg-type]
    return sources, session.warnings


@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        ("sdp-address", "198.51.100.7", ("198.51.100.7",)),
        ("sdp-address", "2001:db8::7", ("2001:db8::7",)),
        ("sip-peer", "198.51.100.7", (PEER,)),
        ("any", "198.51.100.7", None),
    ],
)
def test_each_mode_names_its_hosts(mode: str, address: str, expected: tuple[str, ...] | None) -> None:
    assert allowed(mode, stream(address)) == (expected, [])


def test_a_host_name_in_c_falls_back_to_the_sip_peer_with_a_warning() -> None:
    sources, warnings = allowed("sdp-address", stream("media.sbc.example.com"))
    assert sources == (PEER,)
    assert warnings == [
        "stream 1: SDP address 'media.sbc.example.com' is not a usable IP address; "
        f"accepting RTP from the SIP peer {PEER}"
    ]


def test_a_held_stream_on_zero_address_falls_back_quietly() -> None:
    assert allowed("sdp-address", stream("0.0.0.0", Direction.INACTIVE)) == ((PEER,), [])
