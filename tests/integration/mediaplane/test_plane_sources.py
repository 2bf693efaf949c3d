"""The source policy through both media planes: allowed hosts travel in the stream spec and the
relatch command, activity comes back (from the worker process as an ``activity`` reply)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from bench.loadgen import tone_payload
from srs.media.result import RecordingResult
from srs.media.track import StreamActivity
from srs.mediaplane.contract import MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.ports import PortAllocator
from tests.integration.mediaplane.test_media_plane import PCMU, _free_range, _packet, _plane, run

SBC, STRANGER, FAILOVER = "127.0.0.1", "127.0.0.2", "127.0.0.3"


async def _activity(plane: MediaPlane, key: str, port: int, after: float, handled: int) -> StreamActivity:
    """Poll until the plane reports, after ``after``, a track that has handled ``handled`` datagrams
    (accepted or refused): a worker answers asynchronously, and may not have read them all yet."""
    last: StreamActivity | None = None
    for _ in range(200):
        plane.poll_activity()
        await asyncio.sleep(0.05)
        taken_at, tracks = plane.activity()
        if taken_at >= after and port in tracks.get(key, {}):
            last = StreamActivity._make(tracks[key][port])
            if last.packets_received + sum(n for _a, n in last.rejected_sources) >= handled:
                return last
    raise AssertionError(f"no complete activity report: {last}")


@pytest.mark.parametrize("kind", ["in-process", "worker"])
def test_only_allowed_hosts_are_recorded_and_a_signalled_move_is_reported(kind: str, tmp_path: Path) -> None:
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")
    payload = tone_payload(400)

    async def scenario(
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[StreamActivity, StreamActivity, RecordingResult, dict[str, str]]:
        plane = _plane(kind, loop)
        senders = {}
        for host in (SBC, STRANGER, FAILOVER):
            senders[host] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders[host].bind((host, 0))
        names = {h: f"{h}:{s.getsockname()[1]}" for h, s in senders.items()}
        try:
            ports = allocator.allocate(1)
            assert ports is not None
            port = ports[0]
            start = time.monotonic()
            plane.attach("k", port)
            plane.open("k", RecorderSpec(str(tmp_path / "call.wav"), start))
            plane.set_stream("k", port.port, StreamSpec(PCMU, "1", sources=(SBC,)), start)
            await asyncio.sleep(0.3)
            for seq in range(25):  # the stranger first, every time
                senders[STRANGER].sendto(_packet(seq, 0xBAD, payload), (SBC, port.port))
                senders[SBC].sendto(_packet(seq, 0x5BC, payload), (SBC, port.port))
                await asyncio.sleep(0.02)
            first = await _activity(plane, "k", port.port, time.monotonic(), 50)
            plane.relatch("k", port.port, (FAILOVER,))
            await asyncio.sleep(0.1)
            for seq in range(25, 50):
                senders[FAILOVER].sendto(_packet(seq, 0x5BD, payload), (SBC, port.port))
                senders[SBC].sendto(_packet(seq, 0x5BC, payload), (SBC, port.port))  # no longer allowed
                await asyncio.sleep(0.02)
            second = await _activity(plane, "k", port.port, time.monotonic(), 100)
            plane.detach("k", port)
            allocator.release(port)
            result = await asyncio.wait_for(plane.close("k", time.monotonic()), 10)
            return first, second, result, names
        finally:
            for s in senders.values():
                s.close()
            plane.stop()

    first, second, result, names = run(scenario)
    assert first.packets_received == 25 and first.source == names[SBC] and first.source_changes == 0
    assert first.rejected_sources == ((names[STRANGER], 25),)
    assert second.source == names[FAILOVER] and second.source_changes == 1
    assert dict(second.rejected_sources) == {names[STRANGER]: 25, names[SBC]: 25}
    stats = result.streams[0]
    assert (stats.packets_received, stats.packets_dropped_source, stats.relatches) == (50, 50, 1)
    assert stats.sources == (names[SBC], names[FAILOVER])
