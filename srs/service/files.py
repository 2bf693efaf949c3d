"""Where a recording's audio is (local file or object store) and its bytes, ranged and streamed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srs.service.context import RecordingContext, store_down, uploaded
from srs.service.errors import NotAvailable
from srs.storage.errors import UnsafePath
from srs.storage.objects import ObjectStoreError, StoreUnavailable, file_chunks
from srs.storage.records import State


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A recording's audio and where it is: a local ``path`` or an object store ``key``."""

    recording_id: str
    size: int
    sha256: str | None
    format: str
    path: Path | None = None
    key: str | None = None

    @property
    def etag(self) -> str:
        if self.sha256:
            return f'"{self.sha256}"'
        assert self.path is not None  # an object is only ever stored with its sha256
        stat = self.path.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


class RecordingFiles:
    def __init__(self, context: RecordingContext) -> None:
        self.context = context

    def stored_file(self, recording_id: str) -> StoredFile:
        """Where the audio is (local file or object), only once the recording is available."""
        row = self.context.row(recording_id)
        state = row["state"]
        if state != State.AVAILABLE.value or not row.get("file_path"):
            raise NotAvailable(f"recording {recording_id} is {state}; no file to serve", state=state)
        fmt = row.get("file_format") or "wav"
        if uploaded(row):
            return self._stored_object(recording_id, row, fmt)
        try:
            path = self.file_path(recording_id, row)
        except NotAvailable:
            fresh = self.context.row(recording_id)  # the uploader may have moved it a moment ago
            if not uploaded(fresh):
                raise
            return self.stored_file(recording_id)
        return StoredFile(recording_id, path.stat().st_size, row.get("sha256"), fmt, path=path)

    def _stored_object(self, recording_id: str, row: Mapping[str, Any], fmt: str) -> StoredFile:
        state = row["state"]
        objects = self.context.objects
        if objects is None:
            raise NotAvailable(f"recording {recording_id} is in an object store this srs is not"
                               " configured for", state=state)
        key = row["object_key"]
        try:
            # Asked before any byte is sent: a store that is down is a clean 503, not a cut stream.
            info = objects.head(key)
        except StoreUnavailable as exc:
            raise store_down(exc) from exc
        except ObjectStoreError as exc:
            raise NotAvailable(f"recording {recording_id}: {exc}", state=state) from exc
        if info is None:
            raise NotAvailable(f"recording {recording_id}: object is missing from the store", state=state)
        return StoredFile(recording_id, info.size, row.get("sha256"), fmt, key=key)

    def read(self, stored: StoredFile, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes of a stored file from ``start`` (``length`` of them, or to the end), in chunks."""
        if stored.key is not None:
            objects = self.context.objects
            assert objects is not None
            try:
                return objects.read(stored.key, start, length)
            except StoreUnavailable as exc:
                raise store_down(exc) from exc
            except ObjectStoreError as exc:
                raise NotAvailable(f"recording {stored.recording_id}: {exc}", state="available") from exc
        assert stored.path is not None
        try:
            handle = stored.path.open("rb")  # opened now: once open, an unlink cannot cut the stream
        except FileNotFoundError:
            moved = self.stored_file(stored.recording_id)  # the uploader moved it meanwhile?
            if moved.key is None:
                raise
            return self.read(moved, start, length)
        return file_chunks(handle, start, length)

    def file_path(self, recording_id: str, row: Mapping[str, Any] | None = None) -> Path:
        """The local audio file, only once the recording is available (and not moved to the store)."""
        row = self.context.row(recording_id) if row is None else row
        state = row["state"]
        if state != State.AVAILABLE.value or not row.get("file_path"):
            raise NotAvailable(f"recording {recording_id} is {state}; no file to serve", state=state)
        if uploaded(row):
            raise NotAvailable(f"recording {recording_id} is in the object store", state=state)
        try:
            path = self.context.layout.contain(row["file_path"])
        except UnsafePath as exc:
            raise NotAvailable(f"recording {recording_id}: file is outside the data directory",
                               state=state) from exc
        if not path.is_file():
            raise NotAvailable(f"recording {recording_id}: file is missing", state=state)
        return path
