"""The completeness report: what was expected, what was captured, and why not."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from srs.media.outputs import OutputFile
from srs.media.recorder import Recorder
from srs.media.report import completeness_report, stream_warnings
from srs.media.result import RecordingResult
from srs.media.statistics import StreamStats
from srs.rtp.dtmf import DtmfEvent
from tests.unit.media.fixtures import SRC, make_track, payload_for, rtp
from tests.unit.media.test_recorder import START


def recorded_call(tmp_path: Path) -> RecordingResult:
    """Stream 1: loss, a duplicate, a late packet and an SSRC change; stream 2: silence and a
    DTMF digit; stream 3: nothing at all."""
    one, two, three = make_track(START, label="caller"), make_track(START, label="callee"), make_track(START)
    recorder = Recorder(tmp_path / "call.wav", START, [one, two, three])
    for i in range(50):
        if not 10 <= i <= 14 and i != 30:
            one.push(rtp(i, 160 * i, payload_for(i), ssrc=5), SRC, START + i / 50)
    one.push(rtp(20, 3200, payload_for(20), ssrc=5), SRC, START + 0.41)
    for i in range(50):
        two.push(rtp(i, 160 * i, b"\xff" * 160, ssrc=9), SRC, START + i / 50)
    for k in range(3):
        body = struct.pack("!BBH", 5, 0x8A, 800)
        two.push(rtp(50 + k, 8000, body, ssrc=9, pt=101), SRC, START + 1.0 + k / 100)
    recorder.flush(START + 1.5)  # writes the first second: packet 30 (at 0.6 s) is too late now
    one.push(rtp(30, 4800, payload_for(30), ssrc=5), SRC, START + 1.5)
    for j in range(50):
        one.push(rtp(1000 + j, 90000 + 160 * j, payload_for(j), ssrc=6), SRC, START + 1.0 + j / 50)
    return recorder.close(START + 2.0)


def test_report_of_a_recording_with_every_kind_of_trouble(tmp_path: Path) -> None:
    result = recorded_call(tmp_path)
    report = completeness_report(result)
    assert json.loads(json.dumps(report)) == report
    one, two, three = report["streams"]
    assert {k: one[k] for k in one if k not in ("first_packet_at", "last_packet_at", "peak")} == {
        "index": 0,
        "label": "caller",
        "expected_ms": 2000,
        "captured_ms": 1880,
        "completeness": 0.94,
        "packets_received": 96,
        "packets_lost": 5,
        "packets_late": 1,
        "packets_duplicate": 1,
        "packets_dropped_source": 0,
        "packets_unknown_pt": 0,
        "packets_comfort_noise": 0,
        "packets_rtcp": 0,
        "malformed": 0,
        "decoder_errors": 0,
        "ssrc_changes": 1,
        "ssrcs": ["00000005", "00000006"],
        "reanchors": 0,
        "clock_adjustments": 0,
        "relatches": 0,
        "source": "192.0.2.10:40000",
        "sources": ["192.0.2.10:40000"],
        "rejected_sources": [],
        "rtcp_dropped_source": 0,
        "gaps": [{"offset_ms": 200, "length_ms": 100}, {"offset_ms": 600, "length_ms": 20}],
        "dtmf": [],
        "empty": False,
        "silent": False,
        "warnings": ["stream 1 (caller) captured 94% of its expected audio"],
    }
    assert (one["first_packet_at"], one["last_packet_at"]) == (START, START + 1.0 + 49 / 50)
    assert (two["empty"], two["silent"], two["peak"], two["captured_ms"]) == (False, True, 0, 1000)
    assert two["dtmf"] == [{"digit": "5", "offset_ms": 1000, "duration_ms": 100}]
    assert two["warnings"] == ["stream 2 (callee) silent"]
    assert (three["empty"], three["silent"], three["packets_received"], three["expected_ms"]) == (
        True,
        False,
        0,
        0,
    )
    assert three["warnings"] == ["stream 3 empty: received no RTP"]
    assert {k: v for k, v in report.items() if k not in ("streams", "files")} == {
        "duration_ms": 2000,
        "samples": 16000,
        "paused_ms": 0,
        "expected_ms": 3000,
        "captured_ms": 2880,
        "completeness": 0.96,
        "packets_received": 149,
        "packets_lost": 5,
        "packets_late": 1,
        "packets_duplicate": 1,
        "empty_streams": 1,
        "silent_streams": 1,
        "dtmf": [{"stream": 1, "label": "callee", "digit": "5", "offset_ms": 1000, "duration_ms": 100}],
        "warnings": [
            "stream 1 (caller) captured 94% of its expected audio",
            "stream 2 (callee) silent",
            "stream 3 empty: received no RTP",
        ],
    }
    assert report["files"] == [
        {
            "path": str(tmp_path / "call.wav"),
            "format": "wav",
            "channels": 1,
            "sample_rate": 8000,
            "size": 44 + 32000,
            "frames": 16000,
            "label": None,
        }
    ]


def stats(**changes: object) -> StreamStats:
    base: dict[str, object] = {
        "label": "",
        "packets_received": 50,
        "packets_lost": 0,
        "packets_late": 0,
        "packets_duplicate": 0,
        "packets_dropped_source": 0,
        "packets_unknown_pt": 0,
        "packets_comfort_noise": 0,
        "packets_rtcp": 0,
        "malformed": 0,
        "decoder_errors": 0,
        "ssrc_changes": 0,
        "reanchors": 0,
        "clock_adjustments": 0,
        "relatches": 0,
        "ssrcs": (1,),
        "gaps": (),
        "expected_ms": 1000,
        "captured_ms": 1000,
        "first_packet_at": 0.0,
        "last_packet_at": 1.0,
        "peak": 5000,
        "dtmf": (),
    }
    base.update(changes)
    return StreamStats(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "warnings"),
    [
        ({}, []),
        ({"packets_received": 0, "captured_ms": 0, "expected_ms": 0}, ["stream 2 empty: received no RTP"]),
        (
            {"captured_ms": 0, "decoder_errors": 50},
            ["stream 2 empty: no decodable audio", "stream 2 had 50 undecodable packets"],
        ),
        ({"peak": 16}, ["stream 2 silent"]),
        ({"peak": 17, "captured_ms": 949}, ["stream 2 captured 95% of its expected audio"]),
        ({"captured_ms": 950}, []),
        ({"packets_dropped_source": 3}, ["stream 2 dropped 3 packets from unlatched sources"]),
        (
            {"relatches": 1, "sources": ("192.0.2.10:40000", "192.0.2.20:40000")},
            ["stream 2 changed RTP source 1 times: 192.0.2.10:40000 -> 192.0.2.20:40000"],
        ),
        ({"label": "b", "peak": 0}, ["stream 2 (b) silent"]),
    ],
)
def test_stream_warnings(changes: dict[str, object], warnings: list[str]) -> None:
    assert stream_warnings(1, stats(**changes)) == warnings


def test_report_of_a_recording_without_streams() -> None:
    result = RecordingResult(
        "x.flac", 0, 0, 0, (), (), (), (OutputFile("x.flac", "flac", 2, 8000, 90, 0, None),)
    )
    report = completeness_report(result)
    assert (report["completeness"], report["streams"], report["expected_ms"]) == (1.0, [], 0)
    assert report["files"][0]["format"] == "flac" and report["files"][0]["channels"] == 2


def test_dtmf_offsets_in_the_report_follow_the_recording() -> None:
    result = RecordingResult("x.wav", 1000, 8000, 0, (stats(label="a"),), ((0, DtmfEvent("#", 250, 80)),), ())
    assert completeness_report(result)["dtmf"] == [
        {"stream": 0, "label": "a", "digit": "#", "offset_ms": 250, "duration_ms": 80}
    ]


def test_report_module_does_not_import_the_recorder() -> None:
    """The report reads a finished recording's plain values; it must not import the recorder,
    not even for type checking (the two used to import each other)."""
    import ast

    import srs.media.report

    tree = ast.parse(Path(srs.media.report.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert "srs.media.result" in imported
    assert "srs.media.recorder" not in imported
