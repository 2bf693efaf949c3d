"""FFmpeg-backed codecs against reference encodes made from a 1 kHz tone (see make_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest
from codecs_tests_support import read_payloads, tone_quality
from srs_codecs import DecodeError, get_decoder, is_supported
from srs_codecs.amr import AmrFrame, build_payload, frame_from_storage

pytest.importorskip("av")


def _amr_payloads(octet_aligned: bool, frames_per_packet: int = 1) -> list[bytes]:
    frames = [frame_from_storage(s, wideband=False) for s in read_payloads("amrnb_1khz_storage.pkts")[:50]]
    return [
        build_payload(frames[i : i + frames_per_packet], wideband=False, octet_aligned=octet_aligned)
        for i in range(0, len(frames), frames_per_packet)
    ]


def _g729_payloads(name: str, frames_per_packet: int = 2) -> list[bytes]:
    frames = read_payloads(name)
    return [b"".join(frames[i : i + frames_per_packet]) for i in range(0, len(frames), frames_per_packet)]


def _needs(encoding: str, rate: int) -> None:
    if not is_supported(encoding, rate):
        pytest.skip(f"{encoding}/{rate} decoder not available")


def test_g722_tone_and_rtp_clock_quirk() -> None:
    _needs("G722", 8000)
    payloads = read_payloads("g722_1khz.pkts")
    decoder = get_decoder("G722", 8000)
    assert decoder.clock_rate == 8000
    # 160 octets = 20 ms = 320 samples at 16 kHz = 160 RTP ticks = 160 output samples.
    assert decoder.samples_for(160) == 160
    blocks = [decoder.decode(p) for p in payloads]
    assert {len(b) for b in blocks} == {160}
    peak, snr = tone_quality(np.concatenate(blocks))
    assert peak == 1000.0
    assert snr > 35


@pytest.mark.parametrize("frames_per_packet", [1, 2, 4])
def test_g729_tone(frames_per_packet: int) -> None:
    _needs("G729", 8000)
    decoder = get_decoder("g729", 8000, fmtp="annexb=no")
    blocks = [decoder.decode(p) for p in _g729_payloads("g729_1khz_frames.pkts", frames_per_packet)]
    assert {len(b) for b in blocks} == {80 * frames_per_packet}
    peak, snr = tone_quality(np.concatenate(blocks))
    assert peak == 1000.0
    assert snr > 20


def test_g729b_sid_frames_and_silence_suppression() -> None:
    _needs("G729B", 8000)
    frames = read_payloads("g729b_dtx_frames.pkts")
    assert b"" in frames
    assert any(len(f) == 2 for f in frames)
    decoder = get_decoder("G729", 8000)
    outputs = {len(f): decoder.decode(f) for f in frames if f}
    assert len(outputs[10]) == 80
    assert len(outputs[2]) == 80
    assert not np.any(outputs[2])
    assert len(decoder.decode(frames[0] + frames[1] + bytes(2))) == 240  # speech, speech, SID


@pytest.mark.parametrize("size", [1, 3, 9, 11, 15])
def test_g729_odd_sizes_are_decode_errors(size: int) -> None:
    _needs("G729", 8000)
    decoder = get_decoder("G729", 8000)
    with pytest.raises(DecodeError):
        decoder.decode(bytes(size))
    assert len(decoder.decode(read_payloads("g729_1khz_frames.pkts")[0])) == 80  # still usable


@pytest.mark.parametrize("channels", [1, 2])
def test_opus_tone(channels: int) -> None:
    _needs("opus", 48000)
    decoder = get_decoder("OPUS", 48000, channels, fmtp="minptime=10;useinbandfec=1")
    assert decoder.samples_for(960) == 160
    blocks = [decoder.decode(p) for p in read_payloads("opus_1khz.pkts")[:50]]
    assert {len(b) for b in blocks} == {160}
    peak, snr = tone_quality(np.concatenate(blocks))
    assert peak == 1000.0
    assert snr > 25


def test_opus_garbage_is_a_decode_error_and_the_stream_recovers() -> None:
    _needs("opus", 48000)
    decoder = get_decoder("opus", 48000, 2)
    payloads = read_payloads("opus_1khz.pkts")
    decoder.decode(payloads[0])
    with pytest.raises(DecodeError):
        decoder.decode(b"\xff\xfe\xfd\xfc")
    assert len(decoder.decode(b"")) == 0  # nothing to decode, and the decoder is not ended
    assert len(decoder.decode(payloads[1])) == 160


@pytest.mark.parametrize(("octet_aligned", "fmtp"), [(True, "octet-align=1; mode-set=7"), (False, None)])
@pytest.mark.parametrize("frames_per_packet", [1, 2])
def test_amr_tone_in_both_payload_formats(
    octet_aligned: bool, fmtp: str | None, frames_per_packet: int
) -> None:
    _needs("AMR", 8000)
    decoder = get_decoder("AMR", 8000, fmtp=fmtp)
    blocks = [decoder.decode(p) for p in _amr_payloads(octet_aligned, frames_per_packet)]
    assert {len(b) for b in blocks} == {160 * frames_per_packet}
    peak, snr = tone_quality(np.concatenate(blocks))
    assert peak == 1000.0
    assert snr > 25


def test_amr_both_payload_formats_decode_identically() -> None:
    _needs("AMR", 8000)
    aligned = get_decoder("AMR", 8000, fmtp="octet-align=1").decode_many(_amr_payloads(True))
    efficient = get_decoder("AMR", 8000).decode_many(_amr_payloads(False))
    assert np.array_equal(aligned, efficient)


def test_amr_mislabelled_octet_align_is_tolerated() -> None:
    _needs("AMR", 8000)
    decoder = get_decoder("AMR", 8000)  # SDP says bandwidth-efficient, the sender aligns
    pcm = decoder.decode_many(_amr_payloads(True, 2))
    assert len(pcm) == 8000
    assert tone_quality(pcm)[1] > 25


def test_amr_no_data_and_sid_frames_keep_the_timeline() -> None:
    _needs("AMR", 8000)
    decoder = get_decoder("AMR", 8000, fmtp="octet-align=1")
    decoder.decode_many(_amr_payloads(True)[:5])
    no_data = build_payload([AmrFrame(15, True, b"")], wideband=False, octet_aligned=True)
    sid = build_payload([AmrFrame(8, True, bytes(5))], wideband=False, octet_aligned=True)
    assert len(decoder.decode(no_data)) == 160
    assert len(decoder.decode(sid)) == 160


def test_amr_garbage_is_a_decode_error() -> None:
    _needs("AMR", 8000)
    decoder = get_decoder("AMR", 8000, fmtp="octet-align=1")
    for bad in (b"", b"\xf0", b"\xf0\x3c\x00"):
        with pytest.raises(DecodeError):
            decoder.decode(bad)


@pytest.mark.parametrize("octet_aligned", [True, False])
def test_amr_wb_frames_of_every_speech_mode(octet_aligned: bool) -> None:
    """No AMR-WB encoder is at hand, so arbitrary frames check the framing and the output timeline."""
    _needs("AMR-WB", 16000)
    rng = np.random.default_rng(3)
    decoder = get_decoder("AMR-WB", 16000, fmtp="octet-align=1" if octet_aligned else None)
    assert decoder.samples_for(320) == 160
    for frame_type in range(9):
        bits = [132, 177, 253, 285, 317, 365, 397, 461, 477][frame_type]
        raw = np.zeros(((bits + 7) // 8) * 8, dtype=np.uint8)
        raw[:bits] = rng.integers(0, 2, bits)
        frame = AmrFrame(frame_type, True, np.packbits(raw).tobytes())
        payload = build_payload([frame, frame], wideband=True, octet_aligned=octet_aligned)
        pcm = decoder.decode(payload)
        assert pcm.dtype == np.int16
        assert len(pcm) == 320
    lost = build_payload([AmrFrame(15, True, b"")], wideband=True, octet_aligned=octet_aligned)
    assert len(decoder.decode(lost)) == 160


def test_conceal_after_ffmpeg_codec() -> None:
    _needs("G722", 8000)
    decoder = get_decoder("G722", 8000)
    payloads = read_payloads("g722_1khz.pkts")
    decoder.decode_many(payloads[:10])
    assert len(decoder.conceal(160)) == 160
    assert np.any(decoder.conceal(80))
    assert len(decoder.decode(payloads[12])) == 160


def test_decode_many_reports_where_a_batch_went_bad() -> None:
    _needs("G729", 8000)
    good = _g729_payloads("g729_1khz_frames.pkts")
    decoder = get_decoder("G729", 8000)
    with pytest.raises(DecodeError) as info:
        decoder.decode_many([good[0], good[1], b"\x00" * 7, good[3]])
    assert info.value.index == 2
    assert len(info.value.decoded) == 320
    assert info.value.decoded.dtype == np.int16
    assert len(decoder.decode_many(good[3:5])) == 320
