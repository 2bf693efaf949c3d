"""Open the object store a URL names: ``file:///folder`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from srs.storage.objects import FileObjectStore, ObjectStore, ObjectStoreError
from srs.storage.s3_store import S3ObjectStore, S3Options


def open_store(url: str, s3: S3Options | None = None) -> ObjectStore:
    """``file:///folder`` gives a folder store, ``s3://bucket/prefix`` an S3 store."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ObjectStoreError(f"file:// URL must name a local folder, got {url!r}")
        return FileObjectStore(Path(parts.path))
    if parts.scheme == "s3":
        return S3ObjectStore(parts.netloc, parts.path, s3 or S3Options())
    raise ObjectStoreError(f"object store URL must start with file:// or s3://, got {url!r}")
