"""Writing an export archive (tar.gz or zip): ``index.json`` first, then the audio, streamed from
wherever it is (local file or object store), never whole in memory."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from srs.service.files import StoredFile

ArchiveSource = tuple[StoredFile, str, Callable[[StoredFile], Iterator[bytes]]]


class _ChunkReader(io.RawIOBase):
    """A file-like view of a chunk iterator, for tarfile (which reads exactly ``size`` bytes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def write_archive(
    target: Path, fmt: str, files: Sequence[ArchiveSource], manifest: bytes, now: float
) -> None:
    # 0640 whatever the umask: an archive is as private as the recordings in it
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "wb") as raw:
        if fmt == "zip":
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                archive.writestr("index.json", manifest)
                for source, name, read in files:
                    zinfo = zipfile.ZipInfo(name, time.gmtime(now)[:6])
                    zinfo.compress_type = zipfile.ZIP_DEFLATED
                    with archive.open(zinfo, "w", force_zip64=True) as sink:
                        for chunk in read(source):
                            sink.write(chunk)
            return
        with tarfile.open(fileobj=raw, mode="w:gz") as archive:
            info = tarfile.TarInfo("index.json")
            info.size = len(manifest)
            info.mtime = int(now)
            info.mode = 0o640
            archive.addfile(info, io.BytesIO(manifest))
            for source, name, read in files:
                entry = tarfile.TarInfo(name)
                entry.size = source.size
                entry.mtime = int(now)
                entry.mode = 0o640
                archive.addfile(entry, _ChunkReader(read(source)))
