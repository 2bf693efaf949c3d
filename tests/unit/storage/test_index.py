from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from srs.storage.errors import RecordingNotFound, StorageError
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import (
    FinalizedRecording,
    NewRecording,
    Participant,
    RecordingFilter,
    State,
    StreamInfo,
)
from srs.storage.schema import SCHEMA_VERSION
from tests.unit.storage.factory import T0, add_recording


def test_new_recording_round_trip(index: RecordingIndex) -> None:
    rid = index.create_recording(
        NewRecording(
            started_at=T0, sip_call_id="a@b", source="192.0.2.1:5060", call_recording_id="X1", tenant="t1"
        )
    )
    row = index.get(rid)
    assert row is not None
    assert (row["state"], row["sip_call_id"], row["source"], row["tenant"]) == (
        "starting",
        "a@b",
        "192.0.2.1:5060",
        "t1",
    )
    assert row["participants"] == [] and row["extensions"] == {} and row["incomplete"] is False
    assert index.get("01HZX3Y5Q8K2M4N6P8R0S2T4V6") is None


def test_set_metadata_replaces_previous_version(index: RecordingIndex) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    index.set_metadata(
        rid,
        "crid",
        [Participant("p1", "sip:a@x"), Participant("p2", "sip:b@x")],
        [StreamInfo("1")],
        {"k1": "v1", "k2": "v2"},
    )
    index.set_metadata(
        rid,
        None,
        [Participant("p3", "sip:c@x", "Carol", ("s9",), ())],
        [StreamInfo("2", codec="G722")],
        [("k3", "v3")],
    )
    row = index.get(rid)
    assert row is not None
    assert row["call_recording_id"] == "crid"  # an update without the id keeps the known one
    assert row["participants"] == [
        {"id": "p3", "aor": "sip:c@x", "name": "Carol", "send": ["s9"], "recv": []}
    ]
    assert [s["label"] for s in row["streams"]] == ["2"]
    assert row["extensions"] == {"k3": "v3"}


def test_update_streams_upserts_by_label(index: RecordingIndex) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    index.set_metadata(rid, None, [], [StreamInfo("1", "s1", "PCMU"), StreamInfo("2", "s2", "PCMA")], {})
    index.update_streams(rid, [StreamInfo("1", None, None, 500, 3, {"jitter_ms": 4.0})])
    streams = {s["label"]: s for s in index.get(rid)["streams"]}  # type: ignore[index]
    assert streams["1"] == {
        "label": "1",
        "stream_id": "s1",
        "codec": "PCMU",
        "packets_received": 500,
        "packets_lost": 3,
        "jitter_ms": 4.0,
    }
    assert streams["2"]["codec"] == "PCMA"


def test_metadata_versions_live_in_the_index_row(index: RecordingIndex, layout: DataLayout) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    assert index.add_metadata_version(rid, T0, b"<v1/>") == 1
    assert index.add_metadata_version(rid, T0 + 5, b"<v2/>") == 2
    versions = index.metadata_versions(rid)
    assert [(v["seq"], v["xml"], v["path"]) for v in versions] == [(1, b"<v1/>", None), (2, b"<v2/>", None)]
    assert not layout.metadata_dir(rid, T0).exists()


def test_metadata_versions_kept_as_files_by_older_releases_are_still_read(
    index: RecordingIndex, layout: DataLayout
) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    legacy = layout.metadata_dir(rid, T0) / "001.xml"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"<from-a-file/>")
    with index.db.write() as conn:
        conn.execute(
            "INSERT INTO metadata_versions (recording_id, seq, received_at, path, xml)"
            " VALUES (?, 1, ?, ?, NULL)",
            (rid, T0, str(legacy)),
        )
    assert index.add_metadata_version(rid, T0 + 1, b"<v2/>") == 2
    assert [v["xml"] for v in index.metadata_versions(rid)] == [b"<from-a-file/>", b"<v2/>"]


def test_metadata_versions_without_layout_live_in_the_row(tmp_path: Path) -> None:
    idx = RecordingIndex(tmp_path / "i.sqlite3")
    rid = idx.create_recording(NewRecording(started_at=T0))
    idx.add_metadata_version(rid, T0, b"<only/>")
    assert idx.metadata_versions(rid)[0]["xml"] == b"<only/>"
    with pytest.raises(RecordingNotFound):
        idx.add_metadata_version("01HZX3Y5Q8K2M4N6P8R0S2T4V6", T0, b"<x/>")
    idx.close()


def test_finalize_and_unfinished(index: RecordingIndex, layout: DataLayout) -> None:
    done = add_recording(index, layout)
    failed = add_recording(index, layout, state=State.FAILED)
    running = add_recording(index, layout, state=State.RECORDING, started_at=T0 + 1)
    starting = add_recording(index, layout, state=State.STARTING, started_at=T0 + 2)
    stopping = add_recording(index, layout, state=State.STOPPING, started_at=T0 + 3)
    assert index.unfinished() == [running, starting, stopping]
    row = index.get(done)
    assert row is not None
    assert row["duration_ms"] == 1000 and row["file_size"] and len(row["sha256"]) == 64
    assert row["dtmf"] == [{"label": "1", "digit": "5", "offset_ms": 200, "duration_ms": 80}]
    assert row["warnings"] == ["late packets: 1"]
    assert index.get(failed)["state"] == "failed"  # type: ignore[index]
    with pytest.raises(ValueError):
        index.finalize(running, FinalizedRecording(0, 0, None, None, None, state=State.STOPPING))


def test_finalize_refuses_a_final_recording(index: RecordingIndex, layout: DataLayout) -> None:
    rid = add_recording(index, layout, state=State.FAILED)
    with pytest.raises(StorageError):
        index.finalize(rid, FinalizedRecording(T0, 1, None, None, None))


@pytest.fixture
def populated(index: RecordingIndex, layout: DataLayout) -> dict[str, str]:
    ids = {
        "a": add_recording(
            index,
            layout,
            started_at=T0,
            duration_ms=5_000,
            call_recording_id="C1",
            extensions={"vendor:agent": "42", "queue": "sales"},
        ),
        "b": add_recording(
            index,
            layout,
            started_at=T0 + 60,
            duration_ms=65_000,
            call_recording_id="C2",
            sip_call_id="other@sbc",
            source="198.51.100.7:5061",
            participants=[Participant("x", "tel:+4930123456", "50%_off")],
        ),
        "c": add_recording(
            index,
            layout,
            started_at=T0 + 120,
            duration_ms=30_000,
            call_recording_id="C1",
            extensions={"queue": "support"},
        ),
        "d": add_recording(index, layout, started_at=T0 + 180, state=State.RECORDING, call_recording_id="C3"),
    }
    return ids


def _ids(index: RecordingIndex, **kwargs: object) -> list[str]:
    return [item["id"] for item in index.find(RecordingFilter(**kwargs)).items]  # type: ignore[arg-type]


def test_default_order_is_newest_first(index: RecordingIndex, populated: dict[str, str]) -> None:
    p = populated
    assert _ids(index) == [p["d"], p["c"], p["b"], p["a"]]
    assert _ids(index, oldest_first=True) == [p["a"], p["b"], p["c"], p["d"]]


def test_ties_on_start_time_are_ordered_by_id(index: RecordingIndex, layout: DataLayout) -> None:
    ids = [add_recording(index, layout, started_at=T0) for _ in range(5)]
    assert _ids(index) == sorted(ids, reverse=True)


def test_filters(index: RecordingIndex, populated: dict[str, str]) -> None:
    p = populated
    assert _ids(index, state=State.RECORDING) == [p["d"]]
    assert _ids(index, start=T0 + 60, end=T0 + 180) == [p["c"], p["b"]]
    assert _ids(index, call_recording_id="C1") == [p["c"], p["a"]]
    assert _ids(index, sip_call_id="other@sbc") == [p["b"]]
    assert _ids(index, source="198.51.100.7:5061") == [p["b"]]
    assert _ids(index, min_duration_ms=30_000) == [p["c"], p["b"]]
    assert _ids(index, max_duration_ms=30_000) == [p["c"], p["a"]]
    assert _ids(index, participant="4930123") == [p["b"]]
    assert _ids(index, participant="5551230002") == [p["d"], p["c"], p["a"]]
    assert _ids(index, participant="Alice") == [p["d"], p["c"], p["a"]]
    assert _ids(index, extensions=(("queue", "sales"),)) == [p["a"]]
    assert _ids(index, extensions=(("queue", "sales"), ("vendor:agent", "42"))) == [p["a"]]
    assert _ids(index, extensions=(("queue", "sales"), ("vendor:agent", "41"))) == []
    assert _ids(index, ids=(p["a"], p["c"])) == [p["c"], p["a"]]
    assert _ids(index, ids=()) == []


def test_participant_filter_treats_like_wildcards_literally(
    index: RecordingIndex, populated: dict[str, str]
) -> None:
    assert _ids(index, participant="50%_") == [populated["b"]]
    assert _ids(index, participant="%") == [populated["b"]]
    assert _ids(index, participant="_") == [populated["b"]]


def test_pagination(index: RecordingIndex, layout: DataLayout) -> None:
    ids = [add_recording(index, layout, started_at=T0 + i) for i in range(7)]
    newest_first = list(reversed(ids))
    page1 = index.find(RecordingFilter(), page=1, max=3)
    page3 = index.find(RecordingFilter(), page=3, max=3)
    page4 = index.find(RecordingFilter(), page=4, max=3)
    assert (page1.total, page1.pages, page1.current, page1.max) == (7, 3, 1, 3)
    assert [i["id"] for i in page1.items] == newest_first[:3]
    assert [i["id"] for i in page3.items] == newest_first[6:]
    assert page4.items == [] and page4.total == 7
    everything = index.find(RecordingFilter())
    assert (len(everything.items), everything.pages, everything.max) == (7, 1, None)
    empty = index.find(RecordingFilter(state=State.FAILED), max=3)
    assert (empty.total, empty.pages) == (0, 0)


def test_newest_by_call_recording_id(index: RecordingIndex, populated: dict[str, str]) -> None:
    assert index.newest_by_call_recording_id("C1")["id"] == populated["c"]  # type: ignore[index]
    assert index.newest_by_call_recording_id("nope") is None


def test_count_by_state(index: RecordingIndex, populated: dict[str, str]) -> None:
    assert index.count_by_state() == {
        "starting": 0,
        "recording": 1,
        "stopping": 0,
        "available": 3,
        "failed": 0,
    }


def test_schema_version_and_reopen(index: RecordingIndex, index_target: str, layout: DataLayout) -> None:
    rid = add_recording(index, layout)
    again = RecordingIndex(index_target, layout=layout)
    assert again.get(rid) is not None
    with again.db.read() as conn:
        assert [tuple(r) for r in conn.execute("SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]
    again.close()
    if index.db.path is not None:
        conn = sqlite3.connect(layout.index_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite3"
    RecordingIndex(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        RecordingIndex(path)


def _writer(path: str, count: int) -> None:
    idx = RecordingIndex(path)
    for i in range(count):
        rid = idx.create_recording(NewRecording(started_at=T0 + i, call_recording_id=f"w{i}"))
        idx.set_metadata(
            rid,
            f"w{i}",
            [Participant("p", f"sip:{i}@x"), Participant("q", f"sip:{i}@y")],
            [StreamInfo("1")],
            {"n": str(i)},
        )
        idx.advance_state(rid, State.RECORDING)
    idx.close()


def _reader(path: str, count: int, result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    idx = RecordingIndex(path)
    seen = 0
    try:
        while seen < count:
            page = idx.find(RecordingFilter(), page=1, max=10)
            # set_metadata is one transaction: a reader sees no participants or both, never one.
            assert all(len(item["participants"]) in (0, 2) for item in page.items)
            seen = page.total
        result.put(("ok", seen))
    except Exception as exc:  # pragma: no cover - reported to the parent
        result.put(("error", repr(exc)))
    finally:
        idx.close()


def test_concurrent_writer_and_reader_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "index.sqlite3")
    RecordingIndex(path).close()
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    count = 150
    writers = [ctx.Process(target=_writer, args=(path, count)) for _ in range(2)]
    reader = ctx.Process(target=_reader, args=(path, 2 * count, result))
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    reader.join(60)
    assert result.get(timeout=5) == ("ok", 2 * count)
    final = RecordingIndex(path)
    assert final.find(RecordingFilter()).total == 2 * count
    final.close()


def test_participant_search_through_the_trigram_index_matches_like(
    index: RecordingIndex, layout: DataLayout
) -> None:
    """3+ characters go through the trigram index: substrings of AOR or name, any case, quotes
    literal; it follows inserts, metadata updates and deletions."""
    alice = add_recording(index, layout, started_at=T0, participants=(
        Participant("p1", "sip:alice.o'hara@example.com", "Alice \"Al\" O'Hara", (), ()),
    ))
    bob = add_recording(index, layout, started_at=T0 + 1, participants=(
        Participant("p1", "sip:+15550001111@example.net", "Bob", (), ()),
    ))
    assert _ids(index, participant="alice.o") == [alice]
    assert _ids(index, participant="ALICE") == [alice]
    assert _ids(index, participant='"Al"') == [alice]
    assert _ids(index, participant="5550001") == [bob]
    assert _ids(index, participant="example") == [bob, alice]
    assert _ids(index, participant="nobody") == []
    assert _ids(index, participant="Bo") == [bob]  # shorter than a trigram: the LIKE scan
    index.set_metadata(bob, "crid", [Participant("p2", "sip:carol@example.org", "Carol", (), ())], [], [], [])
    assert _ids(index, participant="Carol") == [bob]
    assert _ids(index, participant="5550001") == []
    index.delete(alice)
    assert _ids(index, participant="alice") == []


def test_common_participant_and_extension_matches_page_the_same_either_way(
    index: RecordingIndex, layout: DataLayout
) -> None:
    """Common matches are paged by walking recordings by start time (EXISTS), rare ones by
    collecting them (IN); counts of a lone condition come from its own index. Same answers."""
    ids = []
    for i in range(40):
        people = (Participant("p1", f"sip:agent{i % 3}@example.com", f"Agent {i % 3}", (), ()),)
        ext = {"queue": f"q{i % 2}", "ticket": str(i)}
        ids.append(add_recording(index, layout, started_at=T0 + i, participants=people, extensions=ext))
    newest = list(reversed(ids))
    cases: list[dict[str, object]] = [
        {"extensions": (("queue", "q0"),)},
        {"extensions": (("ticket", "7"),)},
        {"participant": "agent1"},
        {"participant": "Agent 2", "extensions": (("queue", "q1"),)},
        {"participant": "agent0", "state": State.AVAILABLE},
    ]
    for case in cases:
        filt = RecordingFilter(**case)  # type: ignore[arg-type]
        everything = [item["id"] for item in index.find(filt).items]
        expected = [rid for rid in newest if rid in set(everything)]
        assert everything == expected, case
        for size in (1, 3, 50):
            for page in (1, 2, 5):
                got = index.find(filt, page=page, max=size)
                assert got.total == len(expected), case
                assert [i["id"] for i in got.items] == expected[(page - 1) * size: page * size], (case, page)
        oldest = index.find(RecordingFilter(**case, oldest_first=True), max=3)  # type: ignore[arg-type]
        assert [i["id"] for i in oldest.items] == list(reversed(expected))[:3], case
