"""Several ``srs serve`` daemons side by side on loopback, as a fleet runs them.

Each node gets its own SIP port, RTP range, data directory, ``[node] id`` and log file; what they
share (the PostgreSQL index, the S3 bucket) comes in through the configuration text the test writes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    LOOPBACK,
    READY_TIMEOUT_S,
    free_port,
    free_port_range,
    sip_options_ok,
    srs_command,
)


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    config: Path
    sip_port: int
    base: str
    """The HTTP API's base URL, or "" when the node serves no HTTP."""
    log_path: Path

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill_group(self) -> None:
        """As a crashed machine: the daemon and its children (index writer, media worker) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and the exit code; the whole group is killed (-9999) if it does not stop in 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                return -9999
        return int(self.process.returncode)


@dataclass
class Fleet:
    """Starts nodes in ``root`` and stops every one of them at the end of the test."""

    root: Path
    env: dict[str, str] | None = None
    nodes: list[Node] = field(default_factory=list)

    def start(self, name: str, config_text: str, *, http: bool = False) -> Node:
        """A node configured by ``[node] id = name`` plus ``config_text``; ready when OPTIONS gets 200."""
        data_dir = self.root / f"data-{name}"
        data_dir.mkdir()
        sip = free_port()
        low, high = free_port_range(100)
        http_port = free_port((socket.SOCK_STREAM,)) if http else 0
        config = self.root / f"{name}.toml"
        config.write_text(f'[node]\nid = "{name}"\n\n{config_text}')
        log_path = self.root / f"{name}.log"
        command = [
            *srs_command(), "serve", "--config", str(config), "--sip", f"{LOOPBACK}:{sip}",
            "--rtp-ports", f"{low}-{high}", "--data-dir", str(data_dir),
            "--http", f"{LOOPBACK}:{http_port}" if http else "off",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        base = f"http://{LOOPBACK}:{http_port}" if http else ""
        node = Node(name, process, data_dir, config, sip, base, log_path)
        self.nodes.append(node)
        deadline = time.monotonic() + READY_TIMEOUT_S * 2
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"srs {name} exited early with {process.returncode}:\n{node.log()}")
            if sip_options_ok(sip):
                return node
            time.sleep(0.1)
        pytest.fail(f"srs {name} not ready:\n{node.log()}")

    def stop_all(self) -> None:
        """Stops every node; prints the log of any that did not exit cleanly (a killed one is expected)."""
        for node in self.nodes:
            code = node.stop()
            if code not in (0, -signal.SIGKILL):
                print(f"----- srs {node.name} (exit {code}) -----\n{node.log()[-20000:]}")


def fleet_in(root: Path, env: dict[str, str] | None = None) -> Iterator[Fleet]:
    """The body of a fixture: a fleet in ``root`` that is stopped when the test ends."""
    fleet = Fleet(root, env)
    try:
        yield fleet
    finally:
        fleet.stop_all()
