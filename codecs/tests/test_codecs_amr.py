"""RFC 4867 payload formats: octet-aligned and bandwidth-efficient ↔ storage-format frames."""

from __future__ import annotations

import numpy as np
import pytest
from codecs_tests_support import read_payloads
from srs_codecs.amr import (
    NB_FRAME_BITS,
    WB_FRAME_BITS,
    AmrFrame,
    build_payload,
    frame_from_storage,
    parse_payload,
)
from srs_codecs.errors import DecodeError


def _random_frame(frame_type: int, wideband: bool, rng: np.random.Generator) -> AmrFrame:
    bits = (WB_FRAME_BITS if wideband else NB_FRAME_BITS)[frame_type]
    raw = np.zeros(((bits + 7) // 8) * 8, dtype=np.uint8)
    raw[:bits] = rng.integers(0, 2, bits)
    return AmrFrame(frame_type, True, np.packbits(raw).tobytes())


def test_octet_aligned_layout_rfc4867_section_4_4() -> None:
    # CMR=15 (no request), one 12.2 kbit/s frame (FT 7, Q 1): 0xF0, ToC 0x3C, 31 speech octets.
    frame = AmrFrame(7, True, bytes(range(31)))
    payload = build_payload([frame], wideband=False, octet_aligned=True)
    assert payload == b"\xf0\x3c" + bytes(range(31))
    assert parse_payload(payload, wideband=False, octet_aligned=True) == [frame]
    assert frame.storage() == b"\x3c" + bytes(range(31))


def test_bandwidth_efficient_layout_rfc4867_section_4_3() -> None:
    # CMR 4 bits | F FT(4) Q | 244 speech bits | pad: 4 + 6 + 244 = 254 bits → 32 octets.
    frame = AmrFrame(7, True, b"\xff" * 30 + b"\xf0")  # 244 one-bits
    payload = build_payload([frame], wideband=False, octet_aligned=False, cmr=7)
    assert len(payload) == 32
    assert payload[0] == 0b0111_0011  # CMR 0111, F=0, the top three FT bits 011
    assert payload[1] == 0xFF  # last FT bit 1, Q 1, then the first six speech bits
    assert payload[-1] == 0xFC  # the last six speech bits and two padding zeros
    assert parse_payload(payload, wideband=False, octet_aligned=False) == [frame]


@pytest.mark.parametrize("wideband", [False, True])
@pytest.mark.parametrize("octet_aligned", [False, True])
def test_every_frame_type_round_trips(wideband: bool, octet_aligned: bool) -> None:
    rng = np.random.default_rng(7)
    types = [*range(10 if wideband else 9), 15] + ([14] if wideband else [])
    frames = [_random_frame(ft, wideband, rng) for ft in types]
    payload = build_payload(frames, wideband=wideband, octet_aligned=octet_aligned)
    assert parse_payload(payload, wideband=wideband, octet_aligned=octet_aligned) == frames


def test_storage_frames_from_the_encoder_fixture() -> None:
    storage = read_payloads("amrnb_1khz_storage.pkts")
    frames = [frame_from_storage(s, wideband=False) for s in storage]
    assert all(f.frame_type == 7 for f in frames)
    assert [f.storage() for f in frames] == storage
    with pytest.raises(DecodeError):
        frame_from_storage(storage[0][:-1], wideband=False)
    with pytest.raises(DecodeError):
        frame_from_storage(b"", wideband=False)


def test_crc_octets_are_skipped() -> None:
    frames = [AmrFrame(0, True, bytes(12)), AmrFrame(15, True, b""), AmrFrame(1, True, bytes([9]) * 13)]
    plain = build_payload(frames, wideband=False, octet_aligned=True)
    toc_end = 1 + len(frames)
    with_crc = plain[:toc_end] + b"\xaa\xbb" + plain[toc_end:]  # one CRC per frame that carries data
    assert parse_payload(with_crc, wideband=False, octet_aligned=True, crc=True) == frames


@pytest.mark.parametrize("octet_aligned", [False, True])
def test_every_truncation_is_a_decode_error(octet_aligned: bool) -> None:
    rng = np.random.default_rng(1)
    frames = [_random_frame(7, False, rng), _random_frame(4, False, rng)]
    payload = build_payload(frames, wideband=False, octet_aligned=octet_aligned)
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            parse_payload(payload[:cut], wideband=False, octet_aligned=octet_aligned)


@pytest.mark.parametrize(("wideband", "frame_type"), [(False, 12), (False, 13), (True, 10), (True, 13)])
def test_reserved_frame_types_are_rejected(wideband: bool, frame_type: int) -> None:
    payload = bytes([0xF0, frame_type << 3]) + bytes(40)
    with pytest.raises(DecodeError, match="reserved"):
        parse_payload(payload, wideband=wideband, octet_aligned=True)


def test_endless_table_of_contents_is_rejected() -> None:
    with pytest.raises(DecodeError):
        parse_payload(b"\xf0" + b"\xfc" * 100, wideband=False, octet_aligned=True)
    with pytest.raises(DecodeError):
        parse_payload(b"\xff" * 100, wideband=False, octet_aligned=False)


def test_stray_octets_after_bandwidth_efficient_frames() -> None:
    payload = build_payload([AmrFrame(15, False, b"")], wideband=False, octet_aligned=False)
    assert parse_payload(payload, wideband=False, octet_aligned=False) == [AmrFrame(15, False, b"")]
    with pytest.raises(DecodeError, match="stray"):
        parse_payload(payload + b"\x00", wideband=False, octet_aligned=False)


def test_building_needs_a_frame() -> None:
    with pytest.raises(ValueError):
        build_payload([], wideband=False, octet_aligned=True)
