"""Query latency of the recording index on a large synthetic data set: ``python -m bench.index_data``.

Rows are bulk-inserted straight into the tables (the daemon's one-call-at-a-time write path is not
what is measured); each query runs several times and the median is reported in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from srs.storage.backend import Engine
from srs.storage.ids import new_id
from srs.storage.index import RecordingIndex
from srs.storage.records import RecordingFilter, State

T0 = 1_700_000_000.0


def populate(index: RecordingIndex, rows: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    ids: list[str] = []
    recordings, participants, extensions = [], [], []
    states = [State.AVAILABLE.value] * 18 + [State.FAILED.value, State.RECORDING.value]
    for i in range(rows):
        started = T0 + i * 30 + rng.random()
        rid = new_id(started)
        ids.append(rid)
        duration = rng.randint(1_000, 900_000)
        recordings.append((
            rid, f"crid-{i // 2}", f"call-{i}@sbc", f"192.0.2.{i % 8}:5060", rng.choice(states), started,
            started + duration / 1000, duration, started, started,
        ))
        participants.append((rid, 0, "a", f"sip:+1555{i % 1_000_000:07d}@example.com", "Caller"))
        participants.append((rid, 1, "b", f"sip:agent{i % 500}@example.com", f"Agent {i % 500}"))
        extensions.append((rid, "queue", f"q{i % 20}"))
        extensions.append((rid, "vendor:ticket", str(i)))
    if index.db.url.engine is Engine.POSTGRESQL:
        _copy_postgresql(index, recordings, participants, extensions)
        return ids
    with index.db.write() as conn:
        conn.executemany(
            "INSERT INTO recordings (id, call_recording_id, sip_call_id, source, state, started_at, ended_at,"
            " duration_ms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            recordings,
        )
        conn.executemany(
            "INSERT INTO participants (recording_id, position, participant_id, aor, name)"
            " VALUES (?, ?, ?, ?, ?)",
            participants,
        )
        conn.executemany("INSERT INTO extensions (recording_id, key, value) VALUES (?, ?, ?)", extensions)
    with index.db.write() as conn:
        conn.execute("ANALYZE")
    return ids


_RECORDING_COLUMNS = (
    "id, call_recording_id, sip_call_id, source, state, started_at, ended_at, duration_ms,"
    " created_at, updated_at"
)


def _copy_postgresql(
    index: RecordingIndex, recordings: list[Any], participants: list[Any], extensions: list[Any]
) -> None:
    """COPY instead of row-by-row INSERT (the same rows), with the per-row count triggers off and
    the counts computed once at the end; then ANALYZE, as after any bulk load."""
    with index.db.write() as conn:
        raw = conn.raw
        raw.execute("ALTER TABLE recordings DISABLE TRIGGER USER")
        for table, columns, rows in (
            ("recordings", _RECORDING_COLUMNS, recordings),
            ("participants", "recording_id, position, participant_id, aor, name", participants),
            ("extensions", "recording_id, key, value", extensions),
        ):
            with raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN".encode()) as copy:
                for row in rows:
                    copy.write_row(row)
        raw.execute("ALTER TABLE recordings ENABLE TRIGGER USER")
        raw.execute("UPDATE recording_counts SET n = 0")
        raw.execute(
            "INSERT INTO recording_counts (state, n) SELECT state, COUNT(*) FROM recordings GROUP BY state"
            " ON CONFLICT (state) DO UPDATE SET n = excluded.n"
        )
    with index.db.write() as conn:
        conn.execute("ANALYZE")


def _median_ms(action: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples), 2)


def run(rows: int, repeat: int = 5, directory: Path | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        index = RecordingIndex(Path(scratch) / "index.sqlite3")
        began = time.perf_counter()
        ids = populate(index, rows)
        results = {"insert_total_ms": round((time.perf_counter() - began) * 1000, 1)}
        middle = T0 + rows * 15
        find = index.find
        queries: dict[str, Callable[[], Any]] = {
            "list_page1_max50": lambda: index.find(RecordingFilter(), page=1, max=50),
            "list_page1000_max50": lambda: index.find(RecordingFilter(), page=1000, max=50),
            "state_recording_max50": lambda: index.find(RecordingFilter(state=State.RECORDING), max=50),
            "time_range_1h": lambda: index.find(RecordingFilter(start=middle, end=middle + 3600), max=50),
            "call_recording_id": lambda: index.find(RecordingFilter(call_recording_id=f"crid-{rows // 4}")),
            "newest_by_call_recording_id": lambda: index.newest_by_call_recording_id(f"crid-{rows // 4}"),
            "sip_call_id": lambda: index.find(RecordingFilter(sip_call_id=f"call-{rows // 3}@sbc")),
            "participant_substring_max50": lambda: find(RecordingFilter(participant="5550012345"), max=50),
            "extension_exact": lambda: find(RecordingFilter(extensions=(("vendor:ticket", str(rows // 5)),))),
            "extension_common_max50": lambda: find(RecordingFilter(extensions=(("queue", "q3"),)), max=50),
            "min_duration_max50": lambda: index.find(RecordingFilter(min_duration_ms=800_000), max=50),
            "get_by_id": lambda: index.get(ids[rows // 2]),
            "count_by_state": index.count_by_state,
        }
        for name, action in queries.items():
            results[name] = _median_ms(action, repeat)
        index.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.rows, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
