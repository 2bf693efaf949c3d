"""L16 (RFC 3551 §4.5.11) and the resampler that brings every rate to 8 kHz."""

from __future__ import annotations

import numpy as np
import pytest
from codecs_tests_support import reference_tone, tone_quality
from srs_codecs import UnsupportedCodec, get_decoder
from srs_codecs.l16 import L16Decoder
from srs_codecs.resample import Resampler


def _packets(samples: np.ndarray, per_packet: int) -> list[bytes]:
    data = samples.astype(">i2").tobytes()
    size = per_packet * 2
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_network_byte_order_at_8000() -> None:
    decoder = get_decoder("L16", 8000)
    assert decoder.decode(b"\x01\x02\xff\xfe\x80\x00").tolist() == [0x0102, -2, -32768]


def test_stereo_is_averaged_to_mono() -> None:
    decoder = L16Decoder(8000, 2)
    frames = np.array([[1000, 3000], [-32768, -32768], [32767, 32767], [5, -6]], dtype=np.int16)
    assert decoder.decode(frames.reshape(-1).astype(">i2").tobytes()).tolist() == [2000, -32768, 32767, -1]


def test_trailing_partial_frame_is_dropped() -> None:
    assert get_decoder("L16", 8000).decode(b"\x00\x01\x00").tolist() == [1]
    assert get_decoder("L16", 8000, 2).decode(b"\x00\x01\x00\x03\x00").tolist() == [2]
    assert len(get_decoder("L16", 8000).decode(b"\x07")) == 0


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_tone_survives_and_each_packet_gives_exactly_its_span(rate: int, channels: int) -> None:
    tone = reference_tone(rate)
    per_packet = rate // 50
    samples = np.repeat(tone, channels) if channels == 2 else tone
    decoder = get_decoder("l16", rate, channels)
    blocks = [decoder.decode(p) for p in _packets(samples, per_packet * channels)]
    assert {len(b) for b in blocks} == {160}
    assert decoder.samples_for(per_packet) == 160
    pcm = np.concatenate(blocks)
    assert pcm.dtype == np.int16
    peak, snr = tone_quality(pcm)
    assert peak == 1000.0
    assert snr > 50


@pytest.mark.parametrize("rate", [16000, 48000])
def test_content_above_4khz_is_filtered_not_aliased(rate: int) -> None:
    t = np.arange(rate) / rate
    alias_source = np.rint(10000 * np.sin(2 * np.pi * 5000 * t)).astype(np.int16)  # would fold to 3 kHz
    decoder = get_decoder("L16", rate)
    pcm = np.concatenate([decoder.decode(p) for p in _packets(alias_source, rate // 50)])
    assert np.sqrt(np.mean(pcm[800:].astype(float) ** 2)) < 10000 / np.sqrt(2) / 1000  # below -60 dB


def test_decode_many_equals_packet_by_packet() -> None:
    packets = _packets(reference_tone(16000), 320)
    one_by_one = get_decoder("L16", 16000)
    expected = np.concatenate([one_by_one.decode(p) for p in packets])
    assert np.array_equal(get_decoder("L16", 16000).decode_many(packets), expected)
    odd = [*packets[:2], packets[2] + b"\x01", packets[3]]
    assert len(get_decoder("L16", 16000).decode_many(odd)) == 4 * 160
    assert len(get_decoder("L16", 16000).decode_many([])) == 0


def test_conceal_keeps_the_timeline() -> None:
    decoder = get_decoder("L16", 48000)
    tone = reference_tone(48000)
    packets = _packets(tone, 960)
    decoder.decode_many(packets[:5])
    assert len(decoder.conceal(160)) == 160
    assert len(decoder.decode(packets[6])) == 160


@pytest.mark.parametrize(("rate", "channels"), [(22050, 1), (8000, 3), (4000, 1)])
def test_unsupported_layouts(rate: int, channels: int) -> None:
    with pytest.raises(UnsupportedCodec):
        get_decoder("L16", rate, channels)


def test_resampler_refuses_to_upsample_and_passes_8k_through() -> None:
    with pytest.raises(ValueError):
        Resampler(4000)
    assert Resampler(8000).process(np.array([1.4, -2.6, 40000.0])).tolist() == [1, -3, 32767]


def test_resampler_output_count_is_exact_for_any_chunking() -> None:
    resampler = Resampler(44100)
    sizes = [1, 440, 441, 882, 7, 1000, 3]
    total = sum(len(resampler.process(np.zeros(n))) for n in sizes)
    assert total == (sum(sizes) - 1) * 8000 // 44100 + 1
