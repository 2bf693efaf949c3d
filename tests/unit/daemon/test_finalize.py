"""Finalization: a finished call's row, a failed call's row, and crash repair in the file's own format."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest
import srs_codecs

from srs.daemon.finalize import Output, failed_record, finalized, late_source_changes, repair_unfinished
from srs.daemon.logs import get_logger
from srs.daemon.recordings import Finished, LiveRecordings, MediaOptions
from srs.media.report import StreamRecord
from srs.media.result import RecordingResult
from srs.mediaplane.inprocess import RtpReceiver
from srs.mediaplane.ports import PortAllocator
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import NewRecording, State
from tests.unit.daemon.fakes import FakePlane, stats, write_wav

NODE = "rec-1"


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    return layout


@pytest.fixture
def index(layout: DataLayout) -> Any:
    index = RecordingIndex(layout.index_path, layout=layout, node=NODE)
    yield index
    index.close()


def new_recording(index: RecordingIndex, started: float, state: State = State.RECORDING) -> str:
    recording_id = index.create_recording(NewRecording(started, "call-1@sbc", "127.0.0.1:5060", "crid-1"))
    if state is not State.STARTING:
        index.advance_state(recording_id, state)
    return recording_id


def test_a_finished_call_becomes_its_record(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    write_wav(str(path), seconds=1.0)
    streams = (stats("caller", packets_late=2, packets_duplicate=1, malformed=1), stats("callee"))
    result = RecordingResult(str(path), 1000, 8000, 0, streams, (), ("stream 2 silent",))
    done = finalized(
        result, warnings=["from the call"], ended_wall=1700000001.0, end_reason="bye",
        srtp_by_label={"callee": 3}, interruptions=[], output=Output("wav", 2),
    )
    record = done.record
    assert (record.duration_ms, record.file_path, record.file_size) == (1000, str(path), path.stat().st_size)
    assert (record.ended_at, record.channels, record.file_format) == (1700000001.0, 2, "wav")
    assert record.sha256 is None  # hashed off the loop when published
    assert record.warnings == [
        "from the call", "stream 2 silent", "stream callee: 3 SRTP packets failed authentication"
    ]
    assert record.completeness["end_reason"] == "bye"
    by_label = record.completeness["streams"]
    assert by_label["caller"] == StreamRecord(streams[0]).to_json()
    assert by_label["callee"]["packets_dropped_srtp"] == 3
    assert by_label["caller"]["packets_late"] == 2 and by_label["caller"]["source_changes"] == 0
    assert [s.packets_dropped for s in done.streams] == [4, 0]
    assert [(i.label, i.packets_received, i.stats) for i in done.infos] == [
        ("caller", 50, by_label["caller"]), ("callee", 50, by_label["callee"])
    ]


def test_a_failed_call_becomes_the_failed_record(layout: DataLayout, index: RecordingIndex) -> None:
    started = time.time()
    recording_id = new_recording(index, started, State.STOPPING)
    loop_free_receiver: Any = RtpReceiver.__new__(RtpReceiver)  # never used: the plane is given
    live = LiveRecordings(
        index=index, layout=layout, allocator=PortAllocator(40000, 40010, "127.0.0.1"),
        receiver=loop_free_receiver, decoder_factory=srs_codecs.get_decoder, options=MediaOptions(),
        wall_clock=lambda: started + 5, plane=FakePlane(), write_behind=False,
    )
    live.publish(Finished(recording_id, None, "write failed"))
    row = index.get(recording_id)
    assert row is not None
    assert (row["state"], row["incomplete_reason"], row["duration_ms"], row["file_path"]) == (
        "failed", "write failed", 0, None
    )
    assert failed_record("write failed", started + 5).state is State.FAILED


def crashed_wav(path: Path, *, rate: int, channels: int, seconds: float) -> None:
    """A WAV as a crash leaves it: audio written, the header's sizes never updated, half a frame
    at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(str(path), rate=rate, channels=channels, seconds=seconds)
    with open(path, "r+b") as handle:
        handle.seek(4)
        handle.write(struct.pack("<I", 36))
        handle.seek(40)
        handle.write(struct.pack("<I", 0))
        handle.seek(0, 2)
        handle.write(b"\x07")


@pytest.mark.parametrize(
    ("rate", "channels", "seconds"),
    [(8000, 1, 2.0), (8000, 2, 1.5), (16000, 1, 1.25), (16000, 2, 0.5)],
)
def test_repair_reads_the_duration_from_the_files_format(
    layout: DataLayout, index: RecordingIndex, rate: int, channels: int, seconds: float
) -> None:
    started = time.time() - 60
    recording_id = new_recording(index, started)
    crashed_wav(layout.recording_path(recording_id, started), rate=rate, channels=channels, seconds=seconds)
    assert repair_unfinished(index, layout, NODE, get_logger("test"), srs_codecs.get_decoder) == 1
    row = index.get(recording_id)
    assert row is not None
    assert row["state"] == "available" and row["incomplete"]
    assert row["duration_ms"] == int(seconds * 1000)
    assert row["ended_at"] == pytest.approx(started + seconds)
    assert row["file_size"] == 44 + int(rate * seconds) * channels * 2


def test_repair_without_a_file_fails_the_recording(layout: DataLayout, index: RecordingIndex) -> None:
    recording_id = new_recording(index, time.time(), State.STARTING)
    assert repair_unfinished(index, layout, NODE, get_logger("test"), srs_codecs.get_decoder) == 1
    row = index.get(recording_id)
    assert row is not None
    assert (row["state"], row["incomplete_reason"]) == ("failed", "srs stopped before any audio was written")


def test_repair_leaves_other_nodes_recordings(layout: DataLayout, index: RecordingIndex) -> None:
    other = RecordingIndex(layout.index_path, layout=layout, node="rec-2")
    try:
        recording_id = new_recording(other, time.time())
    finally:
        other.close()
    assert repair_unfinished(index, layout, NODE, get_logger("test"), srs_codecs.get_decoder) == 0
    row = index.get(recording_id)
    assert row is not None and row["state"] == "recording"


def test_source_changes_the_watch_had_not_announced_are_reported_at_the_end() -> None:
    hops = ("127.0.0.1:4000", "127.0.0.2:4000", "127.0.0.3:4000")
    moved = stats("1", relatches=2, source=hops[2], sources=hops)
    announced = stats("2", relatches=1, source="127.0.0.5:4000", sources=("127.0.0.4:4000", "127.0.0.5:4000"))
    silent = stats("3", source=None, sources=())
    (late,) = late_source_changes("s1", (moved, announced, silent), {"1": 1, "2": 1})
    assert (late.key, late.label, late.previous, late.current, late.changes) == (
        "s1", "1", "127.0.0.2:4000", "127.0.0.3:4000", 2
    )
