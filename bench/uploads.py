"""Upload figures against a local S3-compatible server (``rclone serve s3``, started here).

* ``throughput``: ``--recordings`` finished recordings of ``--seconds`` s (8 kHz mono 16-bit WAV,
  distinct noise each) handed to the uploader at once; MB/s and recordings/s until the store has
  confirmed every one (size, sha256, ETag), then every object read back and hashed.
* ``daemon`` (``--calls`` > 0): the stock daemon with ``objects = "s3://…"`` takes ``--calls``
  two-stream G.711 calls from the load generator; BYE → ``upload: done`` p50/p99 from the index
  (``uploaded_at`` − ``ended_at``), every object hashed against the index.

    python -m bench.uploads --recordings 200 --seconds 60 --concurrency 4 --calls 50
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import loadgen
from bench.rclone import ACCESS_KEY, LOOPBACK, SECRET_KEY, RcloneS3
from srs.service.uploader import Uploader, UploaderOptions
from srs.storage.db import Database
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import FinalizedRecording, NewRecording, State
from srs.storage.s3_store import S3ObjectStore, S3Options
from srs.storage.uploads import UploadLedger

MB = 1_000_000


def _wav(seconds: float, seed: int) -> bytes:
    pcm = np.random.default_rng(seed).integers(-8000, 8000, size=int(seconds * 8000), dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _store(server: RcloneS3, bucket: str, prefix: str) -> S3ObjectStore:
    return S3ObjectStore(bucket, prefix, S3Options(
        endpoint=server.endpoint, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
    ))


def throughput(
    server: RcloneS3, work: Path, recordings: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    layout = DataLayout(work / "throughput")
    layout.ensure()
    index = RecordingIndex(layout.index_path, layout=layout)
    started = time.time()
    total = 0
    for n in range(recordings):
        data = _wav(seconds, n)
        rid = index.create_recording(NewRecording(started_at=started + n * 0.001, state=State.RECORDING))
        path = layout.recording_path(rid, started + n * 0.001)
        layout.make_dirs(path.parent)
        path.write_bytes(data)
        total += len(data)
        index.finalize(rid, FinalizedRecording(
            ended_at=started + seconds, duration_ms=int(seconds * 1000), file_path=str(path),
            file_size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        ))
    store = _store(server, server.bucket_name(), "throughput")
    store.ensure_bucket()
    uploader = Uploader(
        UploadLedger(Database(layout.index_path)), store, layout.data_dir,
        UploaderOptions(concurrency=concurrency),
    )
    began = time.perf_counter()
    uploader.start()
    uploader.resume()
    while not uploader.idle():
        time.sleep(0.005)
    elapsed = time.perf_counter() - began
    uploader.stop()
    with sqlite3.connect(layout.index_path) as db:
        found = db.execute(
            "SELECT object_key, sha256 FROM recordings WHERE upload_state = 'done'"
        ).fetchall()
    mismatches = sum(
        hashlib.sha256(b"".join(store.read(key))).hexdigest() != sha for key, sha in found
    )
    left_local = len(list(layout.recordings_dir.rglob("*.wav")))
    index.close()
    store.close()
    return {
        "recordings": recordings, "seconds_each": seconds, "concurrency": concurrency,
        "bytes": total, "elapsed_s": round(elapsed, 3),
        "mb_per_s": round(total / MB / elapsed, 1), "recordings_per_s": round(recordings / elapsed, 1),
        "confirmed": len(found), "checksum_mismatches": mismatches, "left_local": left_local,
        "attempt_failures": uploader.stats.attempt_failures,
    }


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((LOOPBACK, port))
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def _daemon(work: Path, server: RcloneS3, bucket: str) -> Iterator[int]:
    data = work / "daemon-data"
    data.mkdir()
    config = work / "srs.toml"
    config.write_text(
        f'[storage]\nobjects = "s3://{bucket}/daemon"\nobjects_endpoint = "{server.endpoint}"\n'
    )
    sip = _free_port()
    low = 20000 + (os.getpid() % 100) * 100
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    cmd = [
        sys.executable, "-m", "bench.serve", "--config", str(config), "--media-workers", "1",
        "--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{low + 19999}",
        "--data-dir", str(data), "--http", "off", "--log-level", "warning",
    ]  # fmt: skip
    log_path = work / "srs.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        from bench.__main__ import options_ok

        deadline = time.monotonic() + 20
        while not options_ok(sip):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"srs did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield sip
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def through_daemon(server: RcloneS3, work: Path, calls: int, rate: float, hold: float) -> dict[str, Any]:
    bucket = server.bucket_name()
    store = _store(server, bucket, "daemon")
    store.ensure_bucket()
    data = work / "daemon-data"
    with _daemon(work, server, bucket) as sip:
        result = loadgen.run_load(f"{LOOPBACK}:{sip}", data, calls=calls, rate=rate, hold=hold, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            with sqlite3.connect(data / "index.sqlite3", timeout=10) as db:
                rows = db.execute(
                    "SELECT upload_state, uploaded_at - ended_at, object_key, sha256 FROM recordings"
                    " WHERE state = 'available'"
                ).fetchall()
            if (len(rows) >= calls - result.failed_setup and all(r[0] == "done" for r in rows)) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.2)
    lags = [float(r[1]) for r in rows if r[0] == "done"]
    mismatches = sum(
        hashlib.sha256(b"".join(store.read(r[2]))).hexdigest() != r[3] for r in rows if r[0] == "done"
    )
    store.close()
    return {
        "calls": calls, "rate": rate, "hold_s": hold, "failed_setup": result.failed_setup,
        "available": len(rows), "uploaded": len(lags), "checksum_mismatches": mismatches,
        "left_local": len(list((data / "recordings").rglob("*.wav"))),
        "bye_to_upload_done_ms_p50": round((loadgen.percentile(lags, 50) or 0) * 1000, 1),
        "bye_to_upload_done_ms_p99": round((loadgen.percentile(lags, 99) or 0) * 1000, 1),
        "bye_to_upload_done_ms_max": round(max(lags, default=0) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each recording")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--calls", type=int, default=0, help="calls through a real daemon (0: skip)")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--hold", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not (0 < args.recordings <= 5000 and 0 < args.seconds <= 3600 and args.calls <= 2000):
        parser.error("--recordings 1..5000, --seconds up to 3600, --calls up to 2000")
    with tempfile.TemporaryDirectory(prefix="srs-bench-uploads-") as scratch:
        work = Path(scratch)
        server = RcloneS3(work / "s3")
        server.start()
        try:
            report: dict[str, Any] = {
                "throughput": throughput(server, work, args.recordings, args.seconds, args.concurrency)
            }
            if args.calls:
                report["daemon"] = through_daemon(server, work, args.calls, args.rate, args.hold)
        finally:
            server.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
