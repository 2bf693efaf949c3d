"""Assertions shared by the end-to-end tests about what a finished recording must look like."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SippResult, SrsDaemon, Wav, read_wav, segment, tone_level_dbfs, wait_recording

LEVEL_DBFS = -12.0
TONES = (440.0, 1000.0)
RunSipp = Callable[..., SippResult]


def epoch_seconds(value: Any) -> float:
    """The index may give times as epoch numbers or ISO 8601 strings; both compare as seconds."""
    if isinstance(value, int | float):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def answered_at(result: SippResult, cseq: int = 1) -> float:
    return result.find(sent=False, status=200, cseq=(cseq, "INVITE")).time


def recorded_span(result: SippResult) -> tuple[float, float]:
    """(time the 200 OK to the initial INVITE arrived, time the BYE left), from SIPp's message trace."""
    return answered_at(result), result.find(sent=True, method="BYE").time


def assert_answer_is_siprec(result: SippResult) -> None:
    """100 then 200; one recvonly m-line per offered one, on consecutive even ports, labels echoed."""
    trying = result.find(sent=False, status=100, cseq=(1, "INVITE"))
    answer = result.find(sent=False, status=200, cseq=(1, "INVITE"))
    assert trying.time <= answer.time
    assert answer.body.count("a=recvonly") == 2, answer.text
    assert "a=label:1" in answer.body and "a=label:2" in answer.body, answer.text
    assert "+sip.srs" in (answer.header("Contact") or ""), answer.text
    ports = [int(line.split()[1]) for line in answer.body.splitlines() if line.startswith("m=audio")]
    assert len(ports) == 2 and ports[0] % 2 == 0 and ports[1] == ports[0] + 2, answer.text


def assert_index_entry(
    rec: dict[str, Any],
    crid: str,
    call_id: str,
    *,
    min_packets: int,
    aors: set[str] | None = None,
    codec: str = "PCMU",
) -> None:
    assert rec["call_recording_id"] == crid, rec
    assert rec["sip_call_id"] == call_id, rec
    assert (rec["file"]["sample_rate"], rec["file"]["channels"]) == (8000, 1), rec["file"]
    assert "wav" in str(rec["file"]["format"]).lower(), rec["file"]
    assert Path(rec["file"]["path"]).is_absolute(), rec["file"]
    assert Path(rec["file"]["path"]).stat().st_size == rec["file"]["size"], rec["file"]
    expected_aors = aors or {"sip:alice@example.com", "sip:bob@example.net"}
    assert {p["aor"] for p in rec["participants"]} == expected_aors, rec["participants"]
    assert sorted(str(s["label"]) for s in rec["streams"]) == ["1", "2"], rec["streams"]
    for stream in rec["streams"]:
        assert codec in str(stream["codec"]).upper(), stream
        assert stream["packets_received"] >= min_packets, stream
        assert stream["packets_lost"] == 0, stream


def assert_duration(wav: Wav, rec: dict[str, Any], result: SippResult) -> None:
    """WAV length == wall-clock span 200 OK -> BYE, and the index agrees with the file."""
    started, ended = recorded_span(result)
    assert abs(wav.duration - (ended - started)) <= 0.1, (
        f"wav {wav.duration:.3f} s, call {ended - started:.3f} s"
    )
    assert abs(rec["duration_ms"] / 1000 - wav.duration) <= 0.1, (rec["duration_ms"], wav.duration)
    index_span = epoch_seconds(rec["ended_at"]) - epoch_seconds(rec["started_at"])
    assert abs(index_span - wav.duration) <= 0.2, (rec["started_at"], rec["ended_at"], wav.duration)


def assert_wav_format(wav: Wav) -> None:
    assert (wav.sample_rate, wav.channels, wav.sample_width) == (8000, 1, 2)


def assert_tones(wav: Wav, start_s: float, end_s: float, what: str) -> None:
    part = segment(wav, start_s, end_s)
    assert len(part) >= 0.5 * wav.sample_rate, f"{what}: only {len(part)} samples in [{start_s}, {end_s}]"
    levels = {f: round(tone_level_dbfs(part, f), 2) for f in TONES}
    for frequency, level in levels.items():
        assert abs(level - LEVEL_DBFS) <= 3.0, (
            f"{what}: {frequency} Hz at {level} dBFS (sent {LEVEL_DBFS}): {levels}"
        )


def assert_silence(wav: Wav, start_s: float, end_s: float, what: str) -> None:
    part = segment(wav, start_s, end_s)
    assert len(part) >= 0.5 * wav.sample_rate, f"{what}: only {len(part)} samples in [{start_s}, {end_s}]"
    levels = {f: round(tone_level_dbfs(part, f), 2) for f in TONES}
    assert all(level < -50.0 for level in levels.values()), f"{what}: expected silence, tones at {levels}"


def record_call(
    srs: SrsDaemon,
    run_sipp: RunSipp,
    scenario: str,
    crid: str,
    pcaps: dict[str, Path],
    *args: str,
    timeout: float = 40.0,
) -> tuple[SippResult, dict[str, Any], Wav]:
    """Run one scenario to completion and fetch the finished recording it produced."""
    result = run_sipp(
        scenario, *args, "-set", "crid", crid, target=srs.sip_target, timeout=timeout, pcaps=pcaps
    )
    assert result.returncode == 0, result.describe()
    rec = wait_recording(crid, srs.data_dir, "available", within=1.0)
    return result, rec, read_wav(rec["file"]["path"])
