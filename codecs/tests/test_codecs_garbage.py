"""Arbitrary payloads: every decoder returns 8 kHz int16 or raises DecodeError, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srs_codecs import DecodeError, get_decoder, is_supported
from srs_codecs.amr import parse_payload

CODECS = [
    ("PCMU", 8000, 1, None),
    ("PCMA", 8000, 1, None),
    ("L16", 16000, 2, None),
    ("L16", 44100, 1, None),
    ("G722", 8000, 1, None),
    ("G729", 8000, 1, None),
    ("opus", 48000, 2, None),
    ("AMR", 8000, 1, None),
    ("AMR", 8000, 1, "octet-align=1;crc=1"),
    ("AMR-WB", 16000, 1, "octet-align=1"),
]


@pytest.mark.parametrize(("encoding", "rate", "channels", "fmtp"), CODECS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_garbage_never_escapes_as_another_exception(
    encoding: str, rate: int, channels: int, fmtp: str | None, payloads: list[bytes]
) -> None:
    if not is_supported(encoding, rate, channels):
        pytest.skip(f"{encoding} not available")
    decoder = get_decoder(encoding, rate, channels, fmtp)
    for payload in payloads:
        try:
            pcm = decoder.decode(payload)
        except DecodeError:
            continue
        assert pcm.dtype == np.int16
        assert pcm.ndim == 1


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=200), wideband=st.booleans(), aligned=st.booleans(), crc=st.booleans())
def test_amr_parse_raises_only_decode_error(payload: bytes, wideband: bool, aligned: bool, crc: bool) -> None:
    try:
        frames = parse_payload(payload, wideband=wideband, octet_aligned=aligned, crc=crc)
    except DecodeError:
        return
    assert frames
    assert all(0 <= f.frame_type <= 15 for f in frames)
