"""The background uploader: finished recordings go from the local disk to the object store.

It runs in its own threads (boto3 blocks; the daemon's event loop must not), ``concurrency`` uploads
at a time. A file is deleted locally only after the store has confirmed it (size, sha256, ETag; see
:mod:`srs.storage.objects`) and the index says ``upload: done``, so a crash at any point leaves
either the local file or the object, never neither. While the store is unreachable every worker
holds off together, the pause doubling up to ``backoff_max_s``: the node keeps recording to its
disk and the backlog drains when the store returns. Jobs are also in the index (``pending``), so a
restart resumes them (:meth:`Uploader.resume`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from srs.storage.objects import ChecksumMismatch, ObjectStore, ObjectStoreError, StoreUnavailable
from srs.storage.uploads import UploadJob, UploadLedger

log = structlog.get_logger(__name__)
MAX_MISMATCHES = 3
"""Uploads whose stored object did not match, before the recording is marked ``failed``."""
RESUME_BATCH = 1000
"""Recordings read from the index per :meth:`Uploader.resume`; the next batch when these are done."""

Clock = Callable[[], float]
Listener = Callable[[str, str, UploadJob, str | None], None]
"""``(event, recording_id, job, reason)``; event is ``done``, ``retry`` or ``failed``."""


@dataclass(frozen=True, slots=True)
class UploaderOptions:
    concurrency: int = 4
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class UploadStats:
    uploaded: int = 0
    uploaded_bytes: int = 0
    failed: int = 0
    attempt_failures: int = 0


class Uploader:
    def __init__(
        self,
        ledger: UploadLedger,
        store: ObjectStore,
        data_dir: Path,
        options: UploaderOptions = UploaderOptions(),
        *,
        clock: Clock = time.monotonic,
        listener: Listener | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.data_dir = Path(data_dir).resolve()
        self.options = options
        self.clock = clock
        self.listener = listener
        self.stats = UploadStats()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, UploadJob]] = []
        self._seq = itertools.count()
        self._known: dict[str, UploadJob] = {}
        self._mismatches: dict[str, int] = {}
        self._paused_until = 0.0
        self._pause = 0.0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._more = False
        self._refilling = False
        self._batch = RESUME_BATCH

    # ---- control ----------------------------------------------------------------------------

    def start(self) -> None:
        for number in range(max(1, self.options.concurrency)):
            thread = threading.Thread(target=self._work, name=f"srs-upload-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def resume(self, batch: int = RESUME_BATCH) -> int:
        """Queue what the index says is still to upload, ``batch`` at a time: the workers fetch
        the next batch when the queue runs dry (blocking: call off the event loop)."""
        jobs = self.ledger.to_upload(self.data_dir, batch)
        with self._cond:
            self._more = len(jobs) >= batch
            self._batch = batch
        for job in jobs:
            self.submit(job)
        return len(jobs)

    def submit(self, job: UploadJob) -> None:
        """Queue one upload; never blocks (callable from the event loop)."""
        with self._cond:
            if self._stopping or job.recording_id in self._known:
                return
            self._known[job.recording_id] = job
            heapq.heappush(self._heap, (0.0, next(self._seq), job))
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the uploads in flight (up to ``timeout``); the queued ones stay pending in the index."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def backlog(self) -> tuple[int, int]:
        """(recordings, bytes) not yet confirmed in the store: queued, waiting to retry, in flight."""
        with self._cond:
            jobs = list(self._known.values())
        return len(jobs), sum(job.size for job in jobs)

    def idle(self) -> bool:
        """Nothing queued, in flight, or left in the index from a resume."""
        with self._cond:
            return not self._known and not self._more and not self._refilling

    # ---- workers ----------------------------------------------------------------------------

    def _next(self) -> UploadJob | None:
        with self._cond:
            while not self._stopping:
                now = self.clock()
                ready_at = max(self._paused_until, self._heap[0][0]) if self._heap else None
                if ready_at is not None and ready_at <= now:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(None if ready_at is None else min(1.0, ready_at - now))
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._upload(job)
            except Exception as exc:  # a worker must survive anything one job does
                log.exception("upload_crashed", recording=job.recording_id)
                self._retry(job, f"{type(exc).__name__}: {exc}", pause=True)
            self._refill()

    def _refill(self) -> None:
        with self._cond:
            due = self._more and not self._heap and not self._stopping and not self._refilling
            self._refilling = self._refilling or due
            batch = self._batch
        if not due:
            return
        try:
            self.resume(batch)
        except Exception:
            log.exception("upload_refill_failed")
            with self._cond:
                self._more = False  # the next restart reads the index again
        finally:
            with self._cond:
                self._refilling = False

    def _upload(self, job: UploadJob) -> None:
        self.ledger.pending(job.recording_id, job.key)
        path = Path(job.path)
        if not path.is_file():
            self._missing(job)
            return
        try:
            self.store.put(job.key, path, job.sha256)
        except ChecksumMismatch as exc:
            self._mismatch(job, str(exc))
            return
        except StoreUnavailable as exc:
            self._retry(job, f"store unreachable: {exc}", pause=True)
            return
        except ObjectStoreError as exc:
            self._retry(job, f"store refused: {exc}", pause=True)
            return
        except OSError as exc:
            self._retry(job, f"cannot read local file: {exc}", pause=False)
            return
        if not self.ledger.done(job.recording_id, job.key):
            # Deleted (API, retention) while it was uploading: the object must not outlive it.
            with contextlib.suppress(ObjectStoreError):
                self.store.delete(job.key)
        with contextlib.suppress(FileNotFoundError):
            self._remove_local(path)
        with self._cond:
            self._known.pop(job.recording_id, None)
            self._mismatches.pop(job.recording_id, None)
            self._pause = 0.0
            self._paused_until = 0.0
            self.stats.uploaded += 1
            self.stats.uploaded_bytes += job.size
            self._cond.notify_all()
        self._tell("done", job, None)

    def _remove_local(self, path: Path) -> None:
        resolved = path.resolve()
        if self.data_dir in resolved.parents:
            resolved.unlink()

    def _missing(self, job: UploadJob) -> None:
        """No local file: fine if the store has it (a crash between delete and index update cannot
        happen, the index goes first; but an operator may have moved files), else given up."""
        try:
            info = self.store.head(job.key)
        except StoreUnavailable as exc:
            self._retry(job, f"store unreachable: {exc}", pause=True)
            return
        if info is not None and info.size == job.size and info.sha256 in (None, job.sha256):
            self.ledger.done(job.recording_id, job.key)
            self._finish(job, counted=True)
            self._tell("done", job, None)
            return
        self._give_up(job, "local file is missing and the store does not have it")

    def _mismatch(self, job: UploadJob, reason: str) -> None:
        if reason.startswith("local file"):
            self._give_up(job, reason)
            return
        with self._cond:
            count = self._mismatches.get(job.recording_id, 0) + 1
            self._mismatches[job.recording_id] = count
        if count >= MAX_MISMATCHES:
            self._give_up(job, f"{reason} ({count} attempts)")
        else:
            self._retry(job, reason, pause=False)

    def _give_up(self, job: UploadJob, reason: str) -> None:
        log.error("upload_failed", recording=job.recording_id, reason=reason)
        self.ledger.attempt_failed(job.recording_id, reason, give_up=True)
        with self._cond:
            self.stats.failed += 1
            self.stats.attempt_failures += 1
        self._finish(job, counted=False)
        self._tell("failed", job, reason)

    def _finish(self, job: UploadJob, *, counted: bool) -> None:
        with self._cond:
            self._known.pop(job.recording_id, None)
            self._mismatches.pop(job.recording_id, None)
            if counted:
                self.stats.uploaded += 1
            self._cond.notify_all()

    def _retry(self, job: UploadJob, reason: str, *, pause: bool) -> None:
        with contextlib.suppress(Exception):  # the index may be what failed; the job stays queued
            self.ledger.attempt_failed(job.recording_id, reason, give_up=False)
        with self._cond:
            self.stats.attempt_failures += 1
            now = self.clock()
            due = now
            if pause:
                self._pause = min(
                    self.options.backoff_max_s, max(self.options.backoff_min_s, self._pause * 2)
                )
                self._paused_until = max(self._paused_until, now + self._pause)
                due = self._paused_until
            heapq.heappush(self._heap, (due, next(self._seq), job))
            self._cond.notify_all()
        log.warning("upload_retry", recording=job.recording_id, reason=reason)
        self._tell("retry", job, reason)

    def _tell(self, event: str, job: UploadJob, reason: str | None) -> None:
        if self.listener is not None:
            try:
                self.listener(event, job.recording_id, job, reason)
            except Exception:
                log.exception("upload_listener_failed")
