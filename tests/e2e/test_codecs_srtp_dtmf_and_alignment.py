"""Media end to end: every codec srs decodes, SRTP, RFC 4733 DTMF and stream alignment.

An SBC-like client (SIPp) plays a capture made by ``make_media_pcap.py``: stream 1 carries 440 Hz,
stream 2 1000 Hz, each at -12 dBFS peak.  The recorder mixes by plain sum into 8 kHz mono, so each
tone must come out at the level it was sent, within what the codec itself loses on a pure tone.
Those losses were measured by decoding the captures offline with the same decoders; the per-codec
tolerance below is that loss plus 1 dB.  The numbers each test measures are printed (``pytest -s``).
"""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from srs_codecs import get_decoder

from srs.rtp.srtp import SrtpInbound
from tests.e2e.conftest import (
    SCENARIOS,
    SippResult,
    SrsDaemon,
    Wav,
    segment,
    sip_options_ok,
    tone_level_dbfs,
)
from tests.e2e.recording_checks import (
    LEVEL_DBFS,
    TONES,
    RunSipp,
    assert_answer_is_siprec,
    assert_duration,
    assert_silence,
    assert_wav_format,
    record_call,
    recorded_span,
)

pytestmark = pytest.mark.e2e

MAKE_MEDIA_PCAP = SCENARIOS / "make_media_pcap.py"
EXIT_NO_ENCODER = 3
SECONDS = 3.0
# the steady part of a 3 s call: past decoder start-up, before the last packet
STEADY = (0.5, 2.5)
OFFERED_KEY = base64.b64encode(bytes(range(1, 31))).decode()
OTHER_KEY = base64.b64encode(bytes(range(101, 131))).decode()


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_media_pcap", MAKE_MEDIA_PCAP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_media_pcap", module)
    spec.loader.exec_module(module)
    return module


_GENERATOR = _generator()
CODECS: dict[str, Any] = _GENERATOR.CODECS

# Allowed distance (dB) of each tone from the level sent: the codec's own loss on these tones,
# measured by decoding the captures offline (G.711 -0.05, L16 0.0, G.722 0.0, Opus 32 kbit/s 0.0,
# AMR 12.2 -0.5, G.729 -1.4), plus 1 dB.  AMR-WB has no encoder here to measure with: 2 dB.
TOLERANCE_DB = {
    "pcmu": 1.0,
    "pcma": 1.0,
    "l16-8000": 1.0,
    "l16-16000": 1.0,
    "g722": 1.0,
    "opus": 1.0,
    "amr-oa": 1.5,
    "amr-be": 1.5,
    "amr-wb": 2.0,
    "g729": 2.5,
}


def make_media_pcap(path: Path, codec: str, *options: str) -> Path:
    """Run the generator; skip the test when this machine has no encoder for ``codec``."""
    proc = subprocess.run(
        [
            sys.executable,
            str(MAKE_MEDIA_PCAP),
            str(path),
            "--codec",
            codec,
            "--seconds",
            str(SECONDS),
            *options,
        ],
        capture_output=True,
        timeout=120,
    )
    if proc.returncode == EXIT_NO_ENCODER:
        pytest.skip(f"cannot make a {codec} capture here: {proc.stderr.decode(errors='replace').strip()}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return path


def sdp_args(codec: str) -> list[str]:
    spec = CODECS[codec]
    attr = f"a=fmtp:{spec.payload_type} {spec.fmtp}" if spec.fmtp else "a=maxptime:20"
    return ["-set", "pt", str(spec.payload_type), "-set", "rtpmap", spec.sdp_rtpmap, "-set", "attr", attr]


def record(
    srs: SrsDaemon,
    run_sipp: RunSipp,
    crid: str,
    pcap: Path,
    codec: str = "pcmu",
    scenario: str = "siprec_codec.xml",
    *extra: str,
) -> tuple[SippResult, dict[str, Any], Wav]:
    return record_call(
        srs,
        run_sipp,
        scenario,
        crid,
        {"media.pcap": pcap},
        "-d",
        str(int(SECONDS * 1000)),
        *sdp_args(codec),
        *extra,
    )


def duration_error(wav: Wav, result: SippResult) -> float:
    started, ended = recorded_span(result)
    return wav.duration - (ended - started)


def tone_levels(wav: Wav, start_s: float, end_s: float) -> dict[float, float]:
    part = segment(wav, start_s, end_s)
    return {f: round(tone_level_dbfs(part, f), 2) for f in TONES}


def residual_dbfs(samples: np.ndarray, frequencies: tuple[float, ...], sample_rate: int = 8000) -> float:
    """RMS of what is left after removing the best-fitting sinusoids at ``frequencies``: any damage."""
    x = samples.astype(np.float64)
    t = np.arange(len(x)) / sample_rate
    basis = np.column_stack([f(2 * np.pi * hz * t) for hz in frequencies for f in (np.sin, np.cos)])
    fitted, *_ = np.linalg.lstsq(basis, x, rcond=None)
    rest = x - basis @ fitted
    return float(20 * np.log10(max(float(np.sqrt(np.mean(rest**2))), 1e-9) / 32767.0))


def onset_s(wav: Wav, threshold: int = 200) -> float:
    """Where the first stream's audio starts in the file: the recorder's lead-in before RTP arrived."""
    loud = np.flatnonzero(np.abs(wav.samples.astype(np.int32)) > threshold)
    assert len(loud), "the recording is silent"
    return float(loud[0]) / wav.sample_rate


def answer_media(result: SippResult) -> list[list[str]]:
    """The answer's m-sections, each as its lines."""
    sections: list[list[str]] = []
    for line in result.find(sent=False, status=200, cseq=(1, "INVITE")).body.splitlines():
        line = line.strip()
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    return sections


# ---------------------------------------------------------------------------------------------
# the captures themselves (no daemon): what the tolerances below rest on


def read_capture(path: Path) -> dict[int, list[bytes]]:
    """UDP payloads of a capture made by the generator, by destination port, in file order."""
    data = path.read_bytes()[24:]
    by_port: dict[int, list[bytes]] = {}
    while data:
        length = int.from_bytes(data[8:12], "little")
        frame, data = data[16 : 16 + length], data[16 + length :]
        by_port.setdefault(int.from_bytes(frame[36:38], "big"), []).append(frame[42:])
    return by_port


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_capture_decodes_offline_to_the_tones_sent(codec: str, tmp_path: Path) -> None:
    spec = CODECS[codec]
    pcap = make_media_pcap(tmp_path / f"{codec}.pcap", codec, "--srtp-key", OFFERED_KEY)
    streams = read_capture(pcap)
    assert sorted(streams) == [20000, 20002]
    channels = 2 if spec.encoding == "opus" else 1
    levels = []
    for port, frequency in zip(sorted(streams), TONES, strict=True):
        inbound = SrtpInbound("AES_CM_128_HMAC_SHA1_80", f"inline:{OFFERED_KEY}")
        packets = [inbound.unprotect(p) for p in streams[port]]
        assert len(packets) == SECONDS * 50
        assert {p[1] & 0x7F for p in packets} == {spec.payload_type}
        decoder = get_decoder(spec.encoding, spec.rtp_clock, channels, spec.fmtp)
        pcm = np.concatenate([decoder.decode(p[12:]) for p in packets])
        assert len(pcm) == SECONDS * 8000
        steady = pcm[int(STEADY[0] * 8000) : int(STEADY[1] * 8000)]
        levels.append(round(tone_level_dbfs(steady, frequency), 2))
    print(f"\n[offline {codec}] decoded tone levels {levels} dBFS (sent {LEVEL_DBFS})")
    assert all(abs(level - LEVEL_DBFS) <= TOLERANCE_DB[codec] - 0.5 for level in levels), levels


# ---------------------------------------------------------------------------------------------
# (a) the codec matrix


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_matrix_two_tone_call_is_recorded_at_the_level_sent(
    codec: str, srs_daemon: SrsDaemon, run_sipp: RunSipp, crid: str, tmp_path: Path
) -> None:
    spec = CODECS[codec]
    pcap = make_media_pcap(tmp_path / f"{codec}.pcap", codec)
    result, rec, wav = record(srs_daemon, run_sipp, crid, pcap, codec)

    assert_answer_is_siprec(result)
    for section in answer_media(result):
        assert section[0].split()[3] == str(spec.payload_type), section
        assert f"a=rtpmap:{spec.payload_type} {spec.sdp_rtpmap}".lower() in "\n".join(section).lower(), (
            section
        )
    assert rec["state"] == "available"
    assert_wav_format(wav)
    error = duration_error(wav, result)
    levels = tone_levels(wav, *STEADY)
    codecs_in_index = sorted(str(s.get("codec")) for s in rec["streams"])
    print(
        f"\n[codec {codec}] wav {wav.duration:.3f} s, duration error {error * 1000:+.1f} ms, "
        f"audio from {onset_s(wav) * 1000:.1f} ms, "
        f"levels {levels} dBFS (sent {LEVEL_DBFS}), index codecs {codecs_in_index}"
    )
    assert_duration(wav, rec, result)
    for frequency, level in levels.items():
        assert abs(level - LEVEL_DBFS) <= TOLERANCE_DB[codec], (
            f"{codec}: {frequency} Hz at {level} dBFS, sent {LEVEL_DBFS} ±{TOLERANCE_DB[codec]}: {levels}"
        )
    assert codecs_in_index == [spec.encoding.upper()] * 2 or all(
        spec.encoding.upper() in c.upper() for c in codecs_in_index
    ), rec["streams"]
    for stream in rec["streams"]:
        assert stream["packets_received"] >= 0.9 * SECONDS * 50, stream


# ---------------------------------------------------------------------------------------------
# (b) SRTP


def test_srtp_call_is_decrypted_with_the_offered_key_and_answered_with_srs_own_key(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, crid: str, tmp_path: Path
) -> None:
    pcap = make_media_pcap(tmp_path / "srtp.pcap", "pcmu", "--srtp-key", OFFERED_KEY)
    result, rec, wav = record(
        srs_daemon, run_sipp, crid, pcap, "pcmu", "siprec_srtp.xml", "-set", "key", OFFERED_KEY
    )
    assert_answer_is_siprec(result)
    sections = answer_media(result)
    assert len(sections) == 2
    for section in sections:
        assert section[0].split()[2] == "RTP/SAVP", section
        cryptos = [line for line in section if line.startswith("a=crypto:")]
        assert len(cryptos) == 1, section
        tag, suite, key_params = cryptos[0][len("a=crypto:") :].split()[:3]
        assert (tag, suite) == ("1", "AES_CM_128_HMAC_SHA1_80"), cryptos
        own = key_params.removeprefix("inline:").split("|")[0]
        assert len(base64.b64decode(own + "=" * (-len(own) % 4))) == 30, cryptos
        assert own != OFFERED_KEY, "srs echoed the offerer's key instead of sending its own"
    keys = {line for s in sections for line in s if line.startswith("a=crypto:")}
    assert_wav_format(wav)
    error = duration_error(wav, result)
    levels = tone_levels(wav, *STEADY)
    print(f"\n[srtp] duration error {error * 1000:+.1f} ms, levels {levels} dBFS, answer keys {sorted(keys)}")
    assert_duration(wav, rec, result)
    for frequency, level in levels.items():
        assert abs(level - LEVEL_DBFS) <= 1.0, f"SRTP call: {frequency} Hz at {level} dBFS: {levels}"


def test_srtp_with_a_key_other_than_the_offered_one_records_silence_and_counts_the_drops(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, crid: str, tmp_path: Path
) -> None:
    pcap = make_media_pcap(tmp_path / "wrong_key.pcap", "pcmu", "--srtp-key", OTHER_KEY)
    result, rec, wav = record(
        srs_daemon, run_sipp, crid, pcap, "pcmu", "siprec_srtp.xml", "-set", "key", OFFERED_KEY
    )
    assert rec["state"] == "available", rec
    assert_wav_format(wav)
    print(
        f"\n[srtp wrong key] wav {wav.duration:.3f} s, levels {tone_levels(wav, *STEADY)}, "
        f"streams {rec['streams']}, warnings {rec.get('warnings')}"
    )
    assert_duration(wav, rec, result)
    assert_silence(wav, 0.2, SECONDS - 0.2, "SRTP under a key never offered")
    assert srs_daemon.process.poll() is None and sip_options_ok(srs_daemon.ports.sip), "daemon harmed"
    # 150 packets per stream failed authentication: the index must say so somewhere
    assert all(s["packets_received"] == 0 for s in rec["streams"]), rec["streams"]
    text = str(rec["streams"]) + str(rec.get("warnings")) + str(rec.get("completeness"))
    counted = [
        s for s in rec["streams"] if any(k for k, v in (s.get("stats") or {}).items() if "srtp" in k and v)
    ]
    assert counted or "srtp" in text.lower(), f"no SRTP drop count in the index entry: {rec}"


# ---------------------------------------------------------------------------------------------
# (c) DTMF

DIGITS = (("1", 0.6), ("5", 1.3), ("#", 2.0))
DTMF_SECONDS = 0.16
DTMF_FREQUENCIES = (697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0)


def test_rfc4733_digits_are_indexed_at_their_offsets_and_not_mixed_into_the_audio(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, crid: str, tmp_path: Path
) -> None:
    dtmf = ",".join(f"{d}@{at}" for d, at in DIGITS)
    pcap = make_media_pcap(
        tmp_path / "dtmf.pcap", "pcmu", "--dtmf", dtmf, "--dtmf-seconds", str(DTMF_SECONDS)
    )
    result, rec, wav = record(srs_daemon, run_sipp, crid, pcap, "pcmu")
    assert_answer_is_siprec(result)
    for section in answer_media(result):
        assert any("telephone-event/8000" in line for line in section), section
    assert_duration(wav, rec, result)
    lead = onset_s(wav)
    events = rec.get("dtmf")
    print(f"\n[dtmf] audio starts at {lead * 1000:.1f} ms into the file; index dtmf {events}")
    assert isinstance(events, list) and [e["digit"] for e in events] == [d for d, _ in DIGITS], events
    for event, (digit, at) in zip(events, DIGITS, strict=True):
        expected_ms = (lead + at) * 1000
        print(
            f"[dtmf] {digit}: offset {event['offset_ms']} ms (expected {expected_ms:.0f}, "
            f"error {event['offset_ms'] - expected_ms:+.0f} ms), duration {event['duration_ms']} ms "
            f"(sent {DTMF_SECONDS * 1000:.0f})"
        )
        assert abs(event["offset_ms"] - expected_ms) <= 40, (event, expected_ms)
        assert abs(event["duration_ms"] - DTMF_SECONDS * 1000) <= 40, event
        assert str(event.get("label", "1")) == "1", event
    for digit, at in DIGITS:
        around = (lead + at - 0.1, lead + at + DTMF_SECONDS + 0.15)
        levels = tone_levels(wav, *around)
        part = segment(wav, *around)
        stray = {f: round(tone_level_dbfs(part, f), 1) for f in DTMF_FREQUENCIES}
        residual = residual_dbfs(part, TONES)
        print(f"[dtmf] around {digit}: tones {levels}, DTMF-band {stray}, residual {residual:.1f} dBFS")
        for frequency, level in levels.items():
            assert abs(level - LEVEL_DBFS) <= 1.0, f"audio around {digit!r} damaged: {frequency} Hz {levels}"
        assert max(stray.values()) < -40.0, f"telephone-event mixed into the audio near {digit!r}: {stray}"
        # G.711 quantisation noise of this two-tone mix sits near -55 dBFS; a click or a gap is far above
        assert residual < -40.0, (
            f"audio near {digit!r} is not just the two tones: residual {residual:.1f} dBFS"
        )


# ---------------------------------------------------------------------------------------------
# (d) alignment

PULSES = (0.5, 1.0, 1.5, 2.0, 2.5)
# Without sender reports the recorder can only trust arrival times; on an idle machine the clicks
# coincide (0 ms), on a loaded one the first packets of the two streams were seen up to 3 ms apart.
ARRIVAL_BOUND_MS = 5.0
PULSE_HEIGHTS: tuple[int, int] = _GENERATOR.PULSE_HEIGHTS  # stream 1, stream 2: together 24000


def _pulse_positions(samples: np.ndarray, around: int, reach: int) -> tuple[int, int]:
    """Sample index of stream 1's and stream 2's click near ``around``; equal when they coincide."""
    base = max(0, around - reach)
    window = samples[base : around + reach].astype(np.int32)
    loud = np.flatnonzero(np.abs(window) > PULSE_HEIGHTS[1] // 2)
    assert len(loud), f"no click near sample {around}"
    both = sum(PULSE_HEIGHTS)
    peak = int(loud[np.argmax(window[loud])])
    if window[peak] >= 0.85 * both:
        return base + peak, base + peak
    one = int(loud[np.argmin(np.abs(window[loud] - PULSE_HEIGHTS[0]))])
    rest = [int(i) for i in loud if i != one]
    assert rest, f"only one click near sample {around}: {window[loud].tolist()}"
    two = min(rest, key=lambda i: abs(int(window[i]) - PULSE_HEIGHTS[1]))
    for index, height in ((one, PULSE_HEIGHTS[0]), (two, PULSE_HEIGHTS[1])):
        assert abs(int(window[index]) - height) <= 0.3 * height, (around, window[loud].tolist())
    return base + one, base + two


@pytest.mark.parametrize(
    ("how", "options", "bound_ms"),
    [
        # sent together, no RTCP: placement rests on each stream's first arrival
        pytest.param("by-arrival", ("--skew-us", "0"), ARRIVAL_BOUND_MS, id="by-arrival"),
        # stream 2 delayed 5 ms on the way, sender reports from one clock say they are simultaneous
        pytest.param("by-sender-reports", ("--skew-us", "5000", "--rtcp-sr"), 1.0, id="by-sender-reports"),
    ],
)
def test_streams_clicking_at_the_same_instant_click_together_in_the_mix(
    how: str,
    options: tuple[str, ...],
    bound_ms: float,
    srs_daemon: SrsDaemon,
    run_sipp: RunSipp,
    crid: str,
    tmp_path: Path,
) -> None:
    pcap = make_media_pcap(tmp_path / "pulses.pcap", "pcmu", "--pulses", ",".join(map(str, PULSES)), *options)
    result, rec, wav = record(srs_daemon, run_sipp, crid, pcap, "pcmu")
    assert_wav_format(wav)
    assert_duration(wav, rec, result)
    samples = wav.samples
    first = onset_s(wav, threshold=4000) - PULSES[0]
    offsets_ms = []
    heights = []
    for at in PULSES:
        one, two = _pulse_positions(samples, round((first + at) * wav.sample_rate), wav.sample_rate // 10)
        offsets_ms.append((two - one) * 1000 / wav.sample_rate)
        heights.append(int(samples[one]))
    spacing = (
        np.diff(
            [
                _pulse_positions(samples, round((first + at) * wav.sample_rate), wav.sample_rate // 10)[0]
                for at in PULSES
            ]
        )
        / wav.sample_rate
    )
    print(
        f"\n[alignment {how}] stream 2 minus stream 1 per click: {offsets_ms} ms; "
        f"stream 1 click spacing {[round(float(s), 4) for s in spacing]} s; "
        f"first click at {first + PULSES[0]:.4f} s; peak heights {heights}"
    )
    assert max(abs(o) for o in offsets_ms) <= bound_ms, offsets_ms
    assert all(abs(s - 0.5) <= 0.001 for s in spacing), spacing
