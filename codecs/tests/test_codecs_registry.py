"""The registry: names, rates, availability, and every supported codec decoding a known signal."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
from codecs_tests_support import read_payloads, reference_tone, tone_quality
from srs_codecs import (
    Decoder,
    UnsupportedCodec,
    encode_alaw,
    encode_ulaw,
    get_decoder,
    is_supported,
    registry,
)
from srs_codecs import supported_codecs as listed
from srs_codecs.amr import build_payload, frame_from_storage
from srs_codecs.errors import CodecError
from srs_codecs.l16 import L16_RATES
from srs_codecs.registry import parse_fmtp


def _g711(encode: Callable[[np.ndarray], bytes]) -> list[bytes]:
    tone = reference_tone(8000)
    return [encode(tone[i : i + 160]) for i in range(0, 8000, 160)]


def _l16(rate: int) -> list[bytes]:
    data = reference_tone(rate).astype(">i2").tobytes()
    step = rate // 50 * 2
    return [data[i : i + step] for i in range(0, len(data), step)]


def _g729() -> list[bytes]:
    frames = read_payloads("g729_1khz_frames.pkts")
    return [frames[i] + frames[i + 1] for i in range(0, 100, 2)]


def _amr() -> list[bytes]:
    frames = [frame_from_storage(s, wideband=False) for s in read_payloads("amrnb_1khz_storage.pkts")[:50]]
    return [build_payload([f], wideband=False, octet_aligned=False) for f in frames]


# encoding → (payload maker for 1 s of the 1 kHz tone, channels, fmtp, minimum SNR in dB)
MATRIX: dict[tuple[str, int], tuple[Callable[[], list[bytes]], int, str | None, float]] = {
    ("PCMU", 8000): (lambda: _g711(encode_ulaw), 1, None, 35),
    ("PCMA", 8000): (lambda: _g711(encode_alaw), 1, None, 35),
    **{("L16", rate): (functools.partial(_l16, rate), 1, None, 50) for rate in L16_RATES},
    ("G722", 8000): (lambda: read_payloads("g722_1khz.pkts"), 1, None, 35),
    **{(name, 8000): (_g729, 1, None, 20) for name in ("G729", "G729A", "G729B", "G729AB")},
    ("opus", 48000): (lambda: read_payloads("opus_1khz.pkts")[:50], 2, None, 25),
    ("AMR", 8000): (_amr, 1, "mode-set=7", 25),
}


def test_every_listed_codec_is_in_the_matrix() -> None:
    untested = {c for c in listed() if c not in MATRIX and c != ("AMR-WB", 16000)}
    assert untested == set()  # AMR-WB: no encoder for a reference signal; covered by framing tests


@pytest.mark.parametrize("codec", sorted(MATRIX), ids=lambda c: f"{c[0]}/{c[1]}")
def test_codec_matrix(codec: tuple[str, int]) -> None:
    encoding, rate = codec
    if not is_supported(encoding, rate):
        pytest.skip(f"{encoding}/{rate} not available here")
    make, channels, fmtp, min_snr = MATRIX[codec]
    decoder = get_decoder(encoding, rate, channels, fmtp)
    assert isinstance(decoder, Decoder)
    assert decoder.clock_rate == rate
    payloads = make()
    assert len(payloads) == 50
    pcm = decoder.decode_many(payloads)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    assert len(pcm) == 8000  # 50 packets of 20 ms
    assert decoder.samples_for(rate // 50) == 160
    peak, snr = tone_quality(pcm)
    assert peak == 1000.0
    assert snr > min_snr
    assert len(decoder.conceal(160)) == 160


@pytest.mark.parametrize("name", ["pcmu", "Pcma", "l16", "g722", "G729a", "OPUS", "amr", "amr-wb"])
def test_names_are_case_insensitive(name: str) -> None:
    rate = {"OPUS": 48000, "AMR-WB": 16000}.get(name.upper(), 8000)
    channels = 2 if name.upper() == "OPUS" else 1
    if registry.HAVE_PYAV or name.upper() in ("PCMU", "PCMA", "L16"):
        assert is_supported(name, rate, channels)
        assert get_decoder(name, rate, channels).encoding.upper() == name.upper()


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [("PCMU", 16000, 1), ("PCMU", 8000, 2), ("GSM", 8000, 1), ("telephone-event", 8000, 1), ("", 8000, 1),
     ("opus", 8000, 2), ("AMR", 16000, 1), ("G722", 16000, 1)],
)
def test_unsupported_combinations(encoding: str, rate: int, channels: int) -> None:
    assert not is_supported(encoding, rate, channels)
    with pytest.raises(UnsupportedCodec) as info:
        get_decoder(encoding, rate, channels)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CodecError)


def test_amr_interleaving_is_refused() -> None:
    if not is_supported("AMR", 8000):
        pytest.skip("AMR not available")
    with pytest.raises(UnsupportedCodec, match="interleaving"):
        get_decoder("AMR", 8000, fmtp="octet-align=1; interleaving=4")


def test_without_pyav_only_numpy_codecs_remain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "HAVE_PYAV", False)
    assert is_supported("PCMU", 8000)
    assert is_supported("L16", 44100, 2)
    assert not is_supported("G722", 8000)
    assert not is_supported("opus", 48000, 2)
    with pytest.raises(UnsupportedCodec, match="PyAV"):
        get_decoder("G729", 8000)
    assert {name for name, _ in listed()} == {"PCMU", "PCMA", "L16"}


def test_supported_codecs_spelling() -> None:
    codecs = listed()
    assert ("PCMU", 8000) in codecs
    assert ("L16", 44100) in codecs
    assert all(isinstance(name, str) and isinstance(rate, int) for name, rate in codecs)
    if registry.HAVE_PYAV:
        assert ("opus", 48000) in codecs


def test_parse_fmtp() -> None:
    assert parse_fmtp(None) == {}
    assert parse_fmtp("") == {}
    assert parse_fmtp("Octet-Align=1; mode-set=0,2,5,7 ;crc") == {"octet-align": "1", "mode-set": "0,2,5,7",
                                                                  "crc": ""}


def test_decoders_keep_separate_state() -> None:
    first = get_decoder("L16", 16000)
    second = get_decoder("L16", 16000)
    assert first is not second
    packets = _l16(16000)
    first.decode_many(packets[:10])
    assert np.array_equal(second.decode(packets[0]), get_decoder("L16", 16000).decode(packets[0]))
