"""Where everything lives under the data directory.

Every path built from outside input goes through a strict id check and a containment check, so a
crafted id or a tampered index row can never make srs read or delete a file outside the data dir.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from srs.storage.errors import InvalidId, UnsafePath
from srs.storage.ids import is_valid_id

_FORMAT_PATTERN = re.compile(r"^(wav|tar\.gz|zip)$")
SECRET_BYTES = 32


class DataLayout:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._days: dict[int, Path] = {}
        self._made: set[Path] = set()

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"

    def ensure(self) -> None:
        """Create the directory skeleton (idempotent)."""
        for directory in (self.data_dir, self.recordings_dir, self.exports_dir):
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def check_id(value: str) -> str:
        if not isinstance(value, str) or not is_valid_id(value):
            raise InvalidId(f"invalid id {value!r}")
        return value

    def day_dir(self, started_at: float) -> Path:
        day = time.gmtime(started_at)
        return self.recordings_dir / f"{day.tm_year:04d}" / f"{day.tm_mon:02d}" / f"{day.tm_mday:02d}"

    def recording_path(self, recording_id: str, started_at: float) -> Path:
        return self._in_day(started_at, f"{self.check_id(recording_id)}.wav")

    def new_recording_path(self, recording_id: str, started_at: float) -> Path:
        """Where a recording about to be created goes, without the symlink check of
        :meth:`recording_path`: its files are opened with ``O_CREAT | O_EXCL``, which fails on any
        name already taken, a planted symlink included, and never follows one."""
        day = self._day(started_at)
        return day / f"{self.check_id(recording_id)}.wav"

    def metadata_dir(self, recording_id: str, started_at: float) -> Path:
        """Where releases before the index kept metadata versions as files (deleted with the recording)."""
        return self._in_day(started_at, f"{self.check_id(recording_id)}.metadata")

    def _in_day(self, started_at: float, name: str) -> Path:
        """``contain(day_dir / name)`` for a checked file name, without resolving the day every call.

        The day directory is resolved (and judged) once; the name has no separator and no dots of
        its own, so only a symlink planted under that name could lead elsewhere: that one case
        takes the full check.
        """
        candidate = self._day(started_at) / name
        if os.path.islink(candidate):
            return self.contain(candidate)
        return candidate

    def _day(self, started_at: float) -> Path:
        key = int(started_at // 86400)
        day = self._days.get(key)
        if day is None:
            day = self.contain(self.day_dir(started_at))
            if len(self._days) > 64:
                self._days.clear()
            self._days[key] = day
        return day

    def make_dirs(self, directory: Path) -> None:
        """``mkdir -p`` that remembers what it made: the day directories are asked for on every call."""
        if directory in self._made:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if len(self._made) > 4096:
            self._made.clear()
        self._made.add(directory)

    def export_path(self, export_id: str, fmt: str) -> Path:
        if not _FORMAT_PATTERN.fullmatch(fmt):
            raise UnsafePath(f"unknown export format {fmt!r}")
        return self.contain(self.exports_dir / f"{self.check_id(export_id)}.{fmt}")

    def contain(self, path: Path | str) -> Path:
        """Resolve ``path`` (relative paths are relative to the data dir) and insist it stays inside."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.data_dir / candidate
        resolved = candidate.resolve()
        if resolved != self.data_dir and self.data_dir not in resolved.parents:
            raise UnsafePath(f"path {str(path)!r} is outside the data directory")
        return resolved

    def secret(self) -> bytes:
        """The server secret for signed links and webhook signatures, created 0600 on first use."""
        path = self.secret_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            data = os.urandom(SECRET_BYTES)
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                # link() publishes the complete file atomically; a reader never sees half a key.
                os.link(temp, path)
            except FileExistsError:
                return path.read_bytes()
            finally:
                temp.unlink(missing_ok=True)
            return data
        if len(data) < 16:
            raise UnsafePath(f"server secret {path.name} is too short")
        return data
