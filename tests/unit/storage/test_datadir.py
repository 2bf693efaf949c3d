"""The data directory checks and the one-daemon lock, on real directories and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srs.errors import DataDirError, DataDirInUse
from srs.storage.datadir import LOCK_NAME, DataDirLock, prepare_data_dir, require_data_dir


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}") as refused:
            DataDirLock(tmp_path).acquire()
        assert refused.value.pid == os.getpid()
    with DataDirLock(tmp_path) as again:
        assert again.held


def test_the_kernel_drops_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from srs.storage.datadir import DataDirLock; "
         f"DataDirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            DataDirLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                DataDirLock(tmp_path).acquire().release()
                break
            except DataDirInUse:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)


def test_only_a_directory_serve_made_is_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="does not exist"):
        require_data_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataDirError, match="not a directory"):
        require_data_dir(tmp_path / "file")
    with pytest.raises(DataDirError, match="not an srs data directory"):
        require_data_dir(tmp_path)
    (tmp_path / "index.sqlite3").write_bytes(b"")
    assert require_data_dir(tmp_path) == tmp_path
    assert not (tmp_path / "nope").exists()


def test_serve_makes_the_last_component_only(tmp_path: Path) -> None:
    assert prepare_data_dir(tmp_path / "var").is_dir()
    with pytest.raises(DataDirError, match=r"parent directory .* does not exist"):
        prepare_data_dir(tmp_path / "typo" / "var")
    assert not (tmp_path / "typo").exists()
