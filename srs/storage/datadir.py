"""Checks on a data directory before anything touches it, and the one-daemon-per-directory lock.

The CLI reads and changes recordings in place, so it opens only a directory `srs serve` has made
(it holds ``index.sqlite3``): a mistyped ``--data-dir`` is an error, never a fresh empty index.
The daemon creates its directory (not missing parents: a typo there is an error too), and holds an
exclusive ``flock`` on ``srs.lock`` inside it for its whole life. The kernel drops the lock when
the process dies, however it dies, so a stale lock file never keeps a daemon from starting; a
second daemon on the same directory exits before its start-up repair could finalize the first
one's live calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from srs.errors import DataDirError, DataDirInUse

INDEX_NAME = "index.sqlite3"
LOCK_NAME = "srs.lock"


def _named(path: Path) -> str:
    return f"data dir {path}"


def require_data_dir(path: Path | str, *, shared_index: bool = False) -> Path:
    """An existing srs data directory (for the CLI), or :class:`DataDirError` saying what is wrong.

    With a shared index (a fleet's PostgreSQL) the directory holds no index file: the node's
    ``secret.key`` (which signs links) is what `srs serve` leaves there."""
    path = Path(path)
    if not path.exists():
        raise DataDirError(
            f"{_named(path)} does not exist (give --data-dir, SRS_DATA_DIR or [storage] data_dir; "
            f"`srs serve` creates it)"
        )
    if not path.is_dir():
        raise DataDirError(f"{_named(path)} is not a directory")
    marker = "secret.key" if shared_index else INDEX_NAME
    if not (path / marker).is_file():
        raise DataDirError(f"{_named(path)} is not an srs data directory (no {marker})")
    return path


def prepare_data_dir(path: Path | str) -> Path:
    """The daemon's directory, created when only its last component is missing; must be writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{_named(path)} is not a directory")
    if not path.exists():
        parent = path.absolute().parent
        if not parent.is_dir():
            raise DataDirError(f"{_named(path)}: parent directory {parent} does not exist")
        try:
            path.mkdir()
        except FileExistsError:
            pass  # made meanwhile
        except OSError as exc:
            raise DataDirError(f"{_named(path)}: cannot create it: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(f"{_named(path)} is not writable")
    return path


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/srs.lock``; the file names the holder's pid."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            where = _named(self.path.parent)
            raise DataDirError(f"{where}: cannot open {LOCK_NAME}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid is not None else "pid unknown"
            raise DataDirInUse(
                f"{_named(self.path.parent)} is in use by another srs serve ({holder}); "
                f"one daemon per data dir", pid
            ) from None
        except OSError as exc:
            os.close(fd)
            where = _named(self.path.parent)
            raise DataDirError(f"{where}: cannot lock {LOCK_NAME}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Closing the descriptor drops the lock; the file stays (removing it would race a new holder)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
