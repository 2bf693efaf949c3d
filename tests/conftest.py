"""Session-wide test set-up."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from srs.wire_clock import enable_timestamps


@pytest.fixture(scope="session", autouse=True)
def kernel_stamps_on() -> Iterator[None]:
    """Keep one socket with receive stamps open for the whole run.

    Linux switches its datagram time-stamping on when the first socket asks for it, and does so
    from a work queue: datagrams that arrive in that moment carry no stamp and are stamped when
    read. srs's daemon keeps its SIP socket stamped for its whole life, so only a test whose socket
    is the first one can see that; this keeps any test from being the first."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        enable_timestamps(sock)
        time.sleep(0.05)
        yield
