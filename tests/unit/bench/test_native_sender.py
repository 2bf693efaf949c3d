"""The bench's native RTP sender on loopback: every stream at its phase, 20 ms apart, counted."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from bench.native_sender import NativeSender, Stream, build


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build(tmp_path_factory.mktemp("rtpsend"))
    if built is None:
        pytest.skip("no C compiler")
    return built


def test_streams_go_out_at_their_phase_every_20_ms(binary: Path) -> None:
    receivers = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        receivers.append(sock)
    try:
        streams = [
            Stream(receivers[0].getsockname()[1], 0x1234, 0, b"\x55" * 160),
            Stream(receivers[1].getsockname()[1], 0x5678, 7_000_000, b"\x66" * 80),
        ]
        start = time.monotonic_ns() + 200_000_000
        sender = NativeSender(binary, streams, start, start + 200_000_000)
        report = sender.finish(10)
        assert report.sent == [10, 10] and report.packets == 20 and report.errors == 0
        for sock, stream in zip(receivers, streams, strict=True):
            seqs, stamps = [], []
            for _ in range(10):
                data = sock.recv(2048)
                _b0, _b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
                assert ssrc == stream.ssrc and data[12:] == stream.payload
                seqs.append(seq)
                stamps.append(ts)
            assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(10))
            assert [(t - stamps[0]) & 0xFFFFFFFF for t in stamps] == [160 * k for k in range(10)]
        assert report.lag_max_ms < 200
    finally:
        for sock in receivers:
            sock.close()


def test_a_phase_outside_one_packet_time_is_refused(binary: Path) -> None:
    with pytest.raises(ValueError):
        NativeSender(binary, [Stream(9, 1, 20_000_000, b"x")], 0, 1)
