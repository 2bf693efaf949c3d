"""The index's record of each recording's way from the local disk to the object store.

A finished recording's file is written and repaired locally; then the uploader copies it to the
object store. The columns of migration 5 say how far that got, so an API reader knows where to
serve the file from and a restarted daemon knows what is still to upload:

- ``upload_state`` NULL: the file is in the local folder and stays there (no object store);
- ``pending``: in the local folder, waiting for (or between) upload attempts; ``upload_error``
  says why the last attempt failed;
- ``done``: in the object store under ``object_key``; the local copy is gone (or going);
- ``failed``: given up (the local file no longer matches its sha256, or is missing): the local
  file, if any, is kept and ``upload_error`` says why.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from srs.storage.db import Database


class UploadState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class UploadJob:
    """One file to upload: where it is, where it goes, what it must hash to."""

    recording_id: str
    path: str
    key: str
    sha256: str
    size: int


def object_key(data_dir: Path, file_path: Path | str) -> str:
    """The key mirrors the file's place under the data dir (``recordings/YYYY/MM/DD/<id>.wav``), so
    the bucket reads like the folder did."""
    relative = Path(file_path).resolve().relative_to(Path(data_dir).resolve())
    return str(PurePosixPath(*relative.parts))


class UploadLedger:
    def __init__(
        self, db: Database, clock: Callable[[], float] = time.time, *, node: str | None = None
    ) -> None:
        """``node``: this node's id; :meth:`to_upload` then skips what other nodes of a fleet
        (sharing the index) recorded: their files are on their disks, not this one's."""
        self.db = db
        self.clock = clock
        self.node = node

    def pending(self, recording_id: str, key: str) -> None:
        """The upload is queued (unless it is already done or given up)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE recordings SET upload_state = ?, object_key = ?, updated_at = ?"
                " WHERE id = ? AND (upload_state IS NULL OR upload_state = ?)",
                (UploadState.PENDING.value, key, self.clock(), recording_id, UploadState.PENDING.value),
            )

    def attempt_failed(self, recording_id: str, reason: str, *, give_up: bool) -> None:
        state = UploadState.FAILED if give_up else UploadState.PENDING
        with self.db.write() as conn:
            conn.execute(
                "UPDATE recordings SET upload_state = ?, upload_error = ?,"
                " upload_attempts = upload_attempts + 1, updated_at = ? WHERE id = ?",
                (state.value, reason[:500], self.clock(), recording_id),
            )

    def done(self, recording_id: str, key: str) -> bool:
        """The store has confirmed the object; False when the recording was deleted meanwhile."""
        now = self.clock()
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE recordings SET upload_state = ?, object_key = ?, upload_error = NULL,"
                " upload_attempts = upload_attempts + 1, uploaded_at = ?, updated_at = ? WHERE id = ?",
                (UploadState.DONE.value, key, now, now, recording_id),
            )
            return bool(cursor.rowcount > 0)

    def to_upload(self, data_dir: Path, limit: int) -> list[UploadJob]:
        """Available recordings whose file is still local and not given up: the pending ones, and
        those finished before the uploader heard of them (a restart, or a store newly configured).
        Oldest first, at most ``limit``: a large local archive is taken in batches. With a node,
        only that node's recordings."""
        sql = (
            "SELECT id, file_path, sha256, file_size FROM recordings"
            " WHERE state = 'available' AND file_path IS NOT NULL AND sha256 IS NOT NULL"
            " AND (upload_state IS NULL OR upload_state = ?)"
        )
        args: list[object] = [UploadState.PENDING.value]
        if self.node is not None:
            sql += " AND (node = ? OR node IS NULL)"  # rows from before nodes were recorded: ours
            args.append(self.node)
        with self.db.read() as conn:
            rows = conn.execute(sql + " ORDER BY started_at, id LIMIT ?", (*args, limit)).fetchall()
        jobs = []
        for row in rows:
            try:
                key = object_key(data_dir, row["file_path"])
            except ValueError:
                continue  # a file outside the data dir is never uploaded (nor served)
            size = int(row["file_size"] or 0)
            jobs.append(UploadJob(row["id"], row["file_path"], key, row["sha256"], size))
        return jobs
