"""Free space of a file system: the one place srs asks the kernel (admission, metrics, API)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free: int
    total: int


def disk_space(path: str | os.PathLike[str]) -> DiskSpace | None:
    """Free and total bytes of the file system holding ``path``; None when it cannot be read
    (a missing or unmounted directory): each caller decides what that means for it."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskSpace(usage.free, usage.total)
