"""Where finished recordings are kept for good: a folder (``file://``) or an S3-compatible bucket (``s3://``).

One small interface so the uploader, the API, retention and exports never care which: ``put`` (with
the checksum verified), ``head``, ``read`` (whole or a byte range, streamed), ``delete`` and
``presign``. Keys are relative, ``/``-separated and checked like ids: no key built from an index row
can name something outside the store's folder or prefix.

Every store failure is an :class:`ObjectStoreError`; :class:`StoreUnavailable` says "try again later"
(the network or the server), :class:`ChecksumMismatch` says the bytes are not the ones we meant.
This module holds the interface and the folder store; :mod:`srs.storage.s3_store` the S3 one,
:mod:`srs.storage.stores` opens either from its URL.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from srs.storage.errors import StorageError

CHUNK_SIZE = 1 << 20
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024


class ObjectStoreError(StorageError):
    """The object store refused or failed an operation."""


class StoreUnavailable(ObjectStoreError):
    """The store could not be reached or answered with a server error: worth retrying later."""


class ChecksumMismatch(ObjectStoreError):
    """Bytes whose digest is not the one the index keeps (local file or stored object)."""


class ObjectNotFound(ObjectStoreError):
    """No object under that key."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    sha256: str | None = None
    """What the store says the object's sha256 is (S3 metadata), None when it keeps none."""


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What one pass over a local file learns: its size, sha256, md5 and the md5 of each part."""

    size: int
    sha256: str
    md5: str
    part_md5s: tuple[bytes, ...]

    def multipart_etag(self) -> str:
        joined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.part_md5s)}"


def digest_file(path: Path | str, part_size: int = DEFAULT_PART_SIZE) -> FileDigest:
    sha = hashlib.sha256()
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            taken = 0
            while taken < part_size:
                chunk = handle.read(min(CHUNK_SIZE, part_size - taken))
                if not chunk:
                    break
                sha.update(chunk)
                whole.update(chunk)
                part.update(chunk)
                taken += len(chunk)
            if taken == 0:
                break
            parts.append(part.digest())
            size += taken
    return FileDigest(size, sha.hexdigest(), whole.hexdigest(), tuple(parts))


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > 512 or not _KEY.fullmatch(key):
        raise ObjectStoreError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    url: str
    """Where the store is, for logs and ``srs recordings show`` (never with credentials)."""

    remote: bool
    """False for the folder store: presigned links and redirects need a remote one."""

    def put(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        """Store the file under ``key`` and return what the store then reports, checked against
        ``sha256`` (raises ChecksumMismatch if the local file or the stored object differs)."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``start`` (``length`` of them, or to the end), in chunks."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def verify(self, key: str, sha256: str) -> None:
        """Read the whole object back and hash it: ChecksumMismatch unless it is ``sha256``."""
        ...

    def presign(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        """A URL that fetches the object without credentials until it expires; None if unsupported."""
        ...

    def close(self) -> None: ...


# ---- a folder -------------------------------------------------------------------------------


def verify_by_reading(store: ObjectStore, key: str, sha256: str) -> None:
    digest = hashlib.sha256()
    for chunk in store.read(key):
        digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ChecksumMismatch(f"object {key} read back does not match its sha256")


class FileObjectStore:
    """Objects as files under one root folder: written to a temporary name, fsynced, re-read and
    checked, then renamed into place, so a reader never sees a half-written object."""

    remote = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ObjectStoreError(f"object key {key!r} leaves the store")
        return path

    def put(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        target = self._path(key)
        local = digest_file(path)
        if local.sha256 != sha256:
            raise ChecksumMismatch(f"local file {Path(path).name} does not match its sha256")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            with open(path, "rb") as source, open(temp, "wb") as sink:
                while chunk := source.read(CHUNK_SIZE):
                    sink.write(chunk)
                sink.flush()
                os.fsync(sink.fileno())
            stored = digest_file(temp)
            if stored.sha256 != sha256:
                temp.unlink(missing_ok=True)
                raise ChecksumMismatch(f"object {key} does not match its sha256 after writing")
            os.replace(temp, target)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {key}: {exc}") from exc
        info = self.head(key)
        if info is None:
            raise StoreUnavailable(f"object {key} vanished after writing")
        return ObjectInfo(key, info.size, info.etag, sha256)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot stat {key}: {exc}") from exc
        return ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator it is handed to
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {key}: {exc}") from exc
        return file_chunks(handle, start, length)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete {key}: {exc}") from exc

    def verify(self, key: str, sha256: str) -> None:
        verify_by_reading(self, key, sha256)

    def presign(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        return None

    def close(self) -> None:
        pass


def file_chunks(handle: Any, start: int, length: int | None) -> Iterator[bytes]:
    """``length`` bytes (None: to the end) of an open file from ``start``, in ``CHUNK_SIZE`` pieces;
    the file is closed when the iterator ends."""
    with handle:
        handle.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
