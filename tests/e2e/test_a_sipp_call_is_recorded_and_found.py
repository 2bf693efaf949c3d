"""Acceptance: an SBC-like client (SIPp) records one two-stream call; the result is findable and right.

The capture sends a 440 Hz tone on stream 1 and a 1000 Hz tone on stream 2, each at -12 dBFS peak.
The recorder mixes by plain sum, so each tone must appear in the mono WAV at the level it was sent.
The WAV must cover exactly the recorded span, from the 200 OK to the BYE, as 8 kHz / mono / 16-bit PCM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SrsDaemon
from tests.e2e.recording_checks import (
    RunSipp,
    assert_answer_is_siprec,
    assert_duration,
    assert_index_entry,
    assert_tones,
    assert_wav_format,
    record_call,
)

pytestmark = pytest.mark.e2e


def test_siprec_basic_udp_recording_is_complete_and_correct(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_basic.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["basic_5s"]},
        "-d",
        "5000",
    )
    assert_answer_is_siprec(result)
    assert_index_entry(
        rec, crid, result.find(sent=True, method="INVITE").header("Call-ID") or "", min_packets=240
    )
    assert_wav_format(wav)
    assert_duration(wav, rec, result)
    # The steady middle of the call: away from jitter-buffer fill and the last packet.
    assert_tones(wav, 0.5, 4.5, "5 s two-tone call")
