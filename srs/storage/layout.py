"""Where everything lives under the data directory.

Every path built from outside input goes through a strict id check and a containment check, so a
crafted id or a tampered index row can never make srs read or delete a file outside the data dir.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path

from srs.storage.errors import InvalidId, UnsafePath
from srs.storage.ids import is_valid_id

_FORMAT_PATTERN = re.compile(r"^(wav|tar\.gz|zip)$")
SECRET_BYTES = 32
PRIVATE_UMASK = 0o027
"""The daemon's umask: directories 0750, files 0640 at most. Recordings are personal data."""
DIR_MODE = 0o750
INDEX_SUFFIXES = ("", "-wal", "-shm", "-journal")


def tighten(path: Path, mask: int = PRIVATE_UMASK) -> None:
    """Drop the ``mask`` permission bits of an existing file or directory (never adds any).

    Best effort: a file this user does not own (the CLI run by another account) is left as it is.
    """
    try:
        mode = os.stat(path, follow_symlinks=False).st_mode
        if mode & mask and not stat.S_ISLNK(mode):
            os.chmod(path, stat.S_IMODE(mode) & ~mask)
    except (FileNotFoundError, PermissionError):
        return


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
    def peaks_dir(self) -> Path:
        """Waveform peaks computed for the console, by file sha256 and width (a cache: safe to delete)."""
        return self.data_dir / "cache" / "peaks"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"

    def ensure(self) -> None:
        """Create the directory skeleton (idempotent), private to the daemon's user and group.

        A data directory made by an older release (0755 directories, a 0644 index) is tightened too:
        other local users must not read the index or the exports.
        """
        for directory in (self.data_dir, self.recordings_dir, self.exports_dir):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            tighten(directory)
        for suffix in INDEX_SUFFIXES:
            tighten(self.index_path.with_name(self.index_path.name + suffix))
        tighten(self.secret_path, 0o077)

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
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
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
        """The server secret for signed links and webhook signatures, created 0600 on first use.

        The key is written to a temporary file of unpredictable name opened with ``O_EXCL |
        O_NOFOLLOW`` (a planted file or symlink makes it fail, never write elsewhere), then published
        with ``link()``: atomic, and it never replaces a key another process published first.
        """
        path = self.secret_path
        try:
            data = _read_private(path)
        except FileNotFoundError:
            self.data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            data = os.urandom(SECRET_BYTES)
            temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(temp, flags, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # link() publishes the complete file atomically; a reader never sees half a key.
                os.link(temp, path)
            except FileExistsError:
                return _read_private(path)
            finally:
                temp.unlink(missing_ok=True)
            return data
        if len(data) < 16:
            raise UnsafePath(f"server secret {path.name} is too short")
        return data


def _read_private(path: Path) -> bytes:
    """Read a small file without following a symlink planted in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read(4096)
