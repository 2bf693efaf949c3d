"""G.711 (ITU-T G.711 tables 1a/2a) decode tables, encoders and concealment."""

from __future__ import annotations

import numpy as np
import pytest
from codecs_tests_support import reference_tone, tone_quality
from srs_codecs import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw, get_decoder
from srs_codecs.g711 import ALAW_DECODE_TABLE, ULAW_DECODE_TABLE, G711Decoder

# Published decoder outputs (16-bit scaling of G.711 tables 2a/2b).
ALAW_REFERENCE = {0xD5: 8, 0x55: -8, 0xD4: 24, 0x54: -24, 0xAA: 32256, 0x2A: -32256, 0xC5: 264, 0x45: -264}


def test_ulaw_published_values() -> None:
    assert int(ULAW_DECODE_TABLE[0xFF]) == 0
    assert int(ULAW_DECODE_TABLE[0x7F]) == 0
    assert int(ULAW_DECODE_TABLE[0x00]) == -32124
    assert int(ULAW_DECODE_TABLE[0x80]) == 32124
    assert int(ULAW_DECODE_TABLE[0xFE]) == 8
    assert int(ULAW_DECODE_TABLE[0x7E]) == -8
    # Top of segment 0 (0xF0) and bottom of segment 1 (0xEF): steps of 8, then of 16 minus the 132 bias.
    assert int(ULAW_DECODE_TABLE[0xF0]) == 120
    assert int(ULAW_DECODE_TABLE[0xEF]) == 132


def test_alaw_published_values() -> None:
    # Sign bit set after the even-bit inversion means positive: 0xD5/0xAA positive, 0x55/0x2A negative.
    for code, value in ALAW_REFERENCE.items():
        assert int(ALAW_DECODE_TABLE[code]) == value, hex(code)


@pytest.mark.parametrize("table", [ULAW_DECODE_TABLE, ALAW_DECODE_TABLE])
def test_tables_are_odd_symmetric_int16(table: np.ndarray) -> None:
    assert table.dtype == np.int16
    assert table.shape == (256,)
    assert np.array_equal(table[:128].astype(int), -table[128:].astype(int))


@pytest.mark.parametrize(("encode", "decode", "max_error"), [(encode_ulaw, decode_ulaw, 644),
                                                              (encode_alaw, decode_alaw, 512)])
def test_round_trip_is_monotonic_and_bounded(encode, decode, max_error) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    y = decode(encode(x)).astype(np.int32)
    assert np.all(np.diff(y) >= 0)
    assert int(np.max(np.abs(y - x.astype(np.int32)))) <= max_error
    # Small signals keep their sign and stay within one quantisation step of the fine segments.
    small = np.arange(-200, 201, dtype=np.int16)
    assert np.all(np.sign(decode(encode(small))[np.abs(small) > 16]) == np.sign(small[np.abs(small) > 16]))


@pytest.mark.parametrize(("encode", "decode"), [(encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)])
def test_every_code_survives_decode_encode(encode, decode) -> None:  # type: ignore[no-untyped-def]
    codes = np.arange(256, dtype=np.uint8).tobytes()
    again = encode(decode(codes))
    # µ-law has two codes for zero (0x7F, 0xFF); every other code must come back unchanged.
    differing = [(a, b) for a, b in zip(again, codes, strict=True) if a != b]
    assert differing in ([], [(0xFF, 0x7F)])


def test_encoders_round_and_clip_float_input() -> None:
    clipped = np.array([32767, -32768, 0], np.int16)
    assert encode_ulaw(np.array([40000.0, -40000.0, 0.4])) == encode_ulaw(clipped)
    assert encode_alaw(np.array([[1.0, 2.0], [3.0, 4.0]])) == encode_alaw(np.array([1, 2, 3, 4], np.int16))
    assert encode_ulaw(np.zeros(0, np.int16)) == b""


@pytest.mark.parametrize("name", ["PCMU", "pcma"])
def test_decoder_tone_quality_and_lengths(name: str) -> None:
    tone = reference_tone(8000)
    encode = encode_ulaw if name.upper() == "PCMU" else encode_alaw
    payloads = [encode(tone[i : i + 160]) for i in range(0, len(tone), 160)]
    decoder = get_decoder(name, 8000)
    assert decoder.encoding == name.upper()
    assert decoder.clock_rate == 8000
    pcm = decoder.decode_many(payloads)
    assert pcm.dtype == np.int16
    assert len(pcm) == 160 * len(payloads)
    peak, snr = tone_quality(pcm)
    assert peak == 1000.0
    assert snr > 35
    assert np.array_equal(get_decoder(name, 8000).decode(payloads[3]), pcm[480:640])
    assert len(decoder.decode(b"")) == 0
    assert decoder.samples_for(160) == 160


def test_conceal_without_history_is_silence() -> None:
    decoder = G711Decoder("PCMU")
    assert np.array_equal(decoder.conceal(160), np.zeros(160, np.int16))
    assert len(decoder.conceal(0)) == 0
    assert len(decoder.conceal(-5)) == 0


def test_conceal_repeats_the_pitch_and_fades_out() -> None:
    decoder = G711Decoder("PCMA")
    period = 64  # 125 Hz, inside the searched pitch range
    t = np.arange(800)
    voiced = np.rint(6000 * np.sin(2 * np.pi * t / period)).astype(np.int16)
    decoded = decoder.decode(encode_alaw(voiced))
    first = decoder.conceal(80)
    # The first 10 ms continue the waveform: one period later it matches the last decoded period.
    expected = np.tile(decoded[-period:], 2)[:80]
    assert np.max(np.abs(first.astype(int) - expected.astype(int))) <= 1
    fading = decoder.conceal(400)
    assert np.abs(fading[-80:]).max() < np.abs(fading[:80]).max()
    assert not np.any(decoder.conceal(160))  # beyond 60 ms of loss: silence
    decoder.decode(encode_alaw(voiced))  # real audio resets the loss counter
    assert np.any(decoder.conceal(80))


def test_disabled_concealment_gives_zeros() -> None:
    decoder = G711Decoder("PCMU", concealment=False)
    decoder.decode(encode_ulaw(reference_tone(8000)[:800]))
    assert not np.any(decoder.conceal(160))


def test_g711_decoder_rejects_other_names() -> None:
    with pytest.raises(ValueError):
        G711Decoder("G722")
