"""End-to-end SIPREC flows beyond the basic call: TCP, hold/resume, metadata update, CANCEL,
OPTIONS, codec change and a small load run.

Times inside a recording are taken from SIPp's message trace relative to the 200 OK of the
initial INVITE, which is where the recording starts.  Each check looks at the steady part of a
segment (0.3 s in from both edges) so jitter-buffer fill and signalling latency cannot decide it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import SrsDaemon, read_wav, recordings_show, wait_recording
from tests.e2e.recording_checks import (
    RunSipp,
    answered_at,
    assert_answer_is_siprec,
    assert_duration,
    assert_index_entry,
    assert_silence,
    assert_tones,
    assert_wav_format,
    record_call,
)

pytestmark = pytest.mark.e2e

EDGE = 0.3


def test_basic_call_over_tcp(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_basic.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["basic_5s"]},
        "-t",
        "t1",
        "-d",
        "5000",
    )
    invite = result.find(sent=True, method="INVITE")
    assert "SIP/2.0/TCP" in (invite.header("Via") or "")
    assert_answer_is_siprec(result)
    assert_index_entry(rec, crid, invite.header("Call-ID") or "", min_packets=240)
    assert_wav_format(wav)
    assert_duration(wav, rec, result)
    assert_tones(wav, 0.5, 4.5, "5 s two-tone call over TCP")


def test_hold_and_resume_keeps_wall_clock_length_with_silence_while_held(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_hold_resume.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["pcmu_2s"], "two_tone_pcmu_b.pcap": pcaps["pcmu_2s_b"]},
        "-d",
        "2000",
    )
    t0 = answered_at(result)
    held = answered_at(result, 2) - t0
    resumed = answered_at(result, 3) - t0
    hold_offer = result.find(sent=True, method="INVITE", cseq=(2, "INVITE")).body
    assert hold_offer.count("a=inactive") == 2
    assert resumed - held >= 1.5, f"hold lasted only {resumed - held:.2f} s"

    assert_wav_format(wav)
    assert_duration(wav, rec, result)
    assert_tones(wav, EDGE, held - EDGE, "before hold")
    assert_silence(wav, held + EDGE, resumed - EDGE, "during hold")
    assert_tones(wav, resumed + EDGE, resumed + 2.0 - EDGE, "after resume")


def test_metadata_update_adds_participant_to_index(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_metadata_update.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
        "-d",
        "1500",
    )
    update = result.find(sent=True, method="INVITE", cseq=(2, "INVITE"))
    assert "<datamode>partial</datamode>" in update.body
    result.find(sent=False, status=200, cseq=(2, "INVITE"))
    aors = {p["aor"] for p in rec["participants"]}
    assert aors == {"sip:alice@example.com", "sip:bob@example.net", "sip:carol@example.org"}, rec[
        "participants"
    ]
    assert "Carol" in {p["name"] for p in rec["participants"]}
    assert_duration(wav, rec, result)
    assert_tones(wav, EDGE, 2.0 - EDGE, "audio around the metadata update")


def test_metadata_update_by_update_request_adds_participant_to_index(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_metadata_update_via_update.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
        "-d",
        "1500",
    )
    result.find(sent=False, status=200, cseq=(2, "UPDATE"))
    aors = {p["aor"] for p in rec["participants"]}
    assert aors == {"sip:alice@example.com", "sip:bob@example.net", "sip:carol@example.org"}, rec[
        "participants"
    ]
    assert_duration(wav, rec, result)
    assert_tones(wav, EDGE, 2.0 - EDGE, "audio around the UPDATE")


def test_cancel_before_answer_leaves_no_open_recording(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, crid: str
) -> None:
    srs = start_srs("[sip]\nanswer_delay_ms = 2000\n")
    result = run_sipp("siprec_cancel.xml", "-set", "crid", crid, target=srs.sip_target, timeout=30)
    assert result.returncode == 0, result.describe()
    result.find(sent=False, status=487, cseq=(1, "INVITE"))
    result.find(sent=False, status=200, cseq=(1, "CANCEL"))
    assert not [m for m in result.messages if not m.sent and m.status == 200 and m.cseq == (1, "INVITE")]

    # Past the configured answer delay, the cancelled INVITE must not turn into a recording.
    time.sleep(2.5)
    code, rec, output = recordings_show(crid, srs.data_dir)
    if rec is not None:
        assert rec["state"] not in ("recording", "starting"), rec
    else:
        assert code != 0, output


def test_options_is_answered_200(srs_daemon: SrsDaemon, run_sipp: RunSipp) -> None:
    result = run_sipp("options_ping.xml", "-m", "5", "-r", "5", target=srs_daemon.sip_target, timeout=20)
    assert result.returncode == 0, result.describe()
    answers = [m for m in result.messages if not m.sent and m.cseq == (1, "OPTIONS")]
    assert len(answers) == 5 and all(m.status == 200 for m in answers), result.describe()


def test_options_over_tcp(srs_daemon: SrsDaemon, run_sipp: RunSipp) -> None:
    result = run_sipp("options_ping.xml", "-t", "t1", target=srs_daemon.sip_target, timeout=20)
    assert result.returncode == 0, result.describe()


def test_codec_change_pcmu_to_pcma_keeps_both_halves_audible(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    result, rec, wav = record_call(
        srs_daemon,
        run_sipp,
        "siprec_codec_change.xml",
        crid,
        {"two_tone_pcmu.pcap": pcaps["pcmu_2s"], "two_tone_pcma.pcap": pcaps["pcma_2s"]},
        "-d",
        "2000",
    )
    t0 = answered_at(result)
    switched = answered_at(result, 2) - t0
    answer = result.find(sent=False, status=200, cseq=(2, "INVITE")).body
    media_lines = [line.split() for line in answer.splitlines() if line.startswith("m=audio")]
    assert len(media_lines) == 2 and all(m[3:4] == ["8"] for m in media_lines), answer

    assert_wav_format(wav)
    assert_duration(wav, rec, result)
    assert_tones(wav, EDGE, 2.0 - EDGE, "PCMU half")
    assert_tones(wav, switched + EDGE, switched + 2.0 - EDGE, "PCMA half")


@pytest.mark.slow
def test_small_load_every_call_recorded(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    calls = 10
    result = run_sipp(
        "siprec_load.xml",
        "-set",
        "crid",
        crid,
        "-d",
        "2000",
        "-r",
        "5",
        "-l",
        "5",
        "-m",
        str(calls),
        target=srs_daemon.sip_target,
        timeout=60,
        pcaps={"load_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    assert result.returncode == 0, result.describe()
    for number in range(1, calls + 1):
        rec = wait_recording(f"{crid}-{number}", srs_daemon.data_dir, "available", within=2.0)
        wav = read_wav(rec["file"]["path"])
        assert_wav_format(wav)
        assert_tones(wav, EDGE, 2.0 - EDGE, f"load call {number}")
