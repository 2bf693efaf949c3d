"""The in-process plane: media received on the daemon's own event loop (``loop.add_reader``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from srs.media.rendering import DecoderFactory
from srs.media.result import RecordingResult
from srs.mediaplane.contract import Activity, MediaPlane, RecorderSpec, StreamSpec, srtp_filter
from srs.mediaplane.live_tap import LiveTaps
from srs.mediaplane.ports import RtpPort
from srs.mediaplane.recordings import RecordingSet
from srs.mediaplane.wire_clock import ANCILLARY_SIZE, realtime_offset, stamp_of, to_monotonic

_RECV_SIZE = 2048
_LIVE_PUMP_S = 0.005
"""How often tapped frames are handed to the live hub when media runs on the daemon's loop."""


class RtpReceiver:
    """Registers bound ports with the event loop and drains them as they become readable.

    Each datagram is handed on with the kernel's arrival stamp (:mod:`srs.mediaplane.wire_clock`), so what
    waited in the socket while the loop was busy is placed where it arrived, not where it was read.
    ``clock`` is the monotonic clock (the read time bounds each stamp, and stands in without one).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self.clock = clock

    def watch(self, port: RtpPort) -> None:
        self.loop.add_reader(port.rtp.fileno(), self._drain_rtp, port)
        self.loop.add_reader(port.rtcp.fileno(), self._drain_rtcp, port)

    def unwatch(self, port: RtpPort) -> None:
        """Stop watching; datagrams still queued (sent before the call ended) go to the sink first."""
        self._drain_rtp(port)
        for sock in (port.rtp, port.rtcp):
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock.fileno())

    def _drain_rtp(self, port: RtpPort) -> None:
        recvmsg = port.rtp.recvmsg
        sink = port.sink
        transform = port.filter
        offset = realtime_offset()
        read_at = self.clock()
        counters = port.counters
        n = 0
        while True:
            try:
                data, ancdata, _flags, addr = recvmsg(_RECV_SIZE, ANCILLARY_SIZE)
            except BlockingIOError:
                break
            except OSError:
                counters.receive_errors += 1
                break
            n += 1
            if sink is None:
                counters.dropped_no_stream += 1
                continue
            if transform is not None:
                clear = transform(data)
                if clear is None:
                    counters.dropped_srtp += 1
                    continue
                data = clear
            sink(data, addr, to_monotonic(stamp_of(ancdata), offset, read_at))
        counters.packets += n

    def _drain_rtcp(self, port: RtpPort) -> None:
        offset = realtime_offset()
        read_at = self.clock()
        while True:
            try:
                data, ancdata, _flags, addr = port.rtcp.recvmsg(_RECV_SIZE, ANCILLARY_SIZE)
            except BlockingIOError:
                return
            except OSError:
                port.counters.receive_errors += 1
                return
            port.counters.rtcp_packets += 1
            if port.rtcp_sink is not None:
                port.rtcp_sink(data, addr, to_monotonic(stamp_of(ancdata), offset, read_at))


class InProcessPlane(MediaPlane):
    """Media on the daemon's event loop: readers registered with ``loop.add_reader``."""

    def __init__(self, receiver: RtpReceiver, decoder_factory: DecoderFactory) -> None:
        self.receiver = receiver
        self.set = RecordingSet(decoder_factory)
        self._ports: dict[int, RtpPort] = {}
        self._dropped: dict[str, dict[int, int]] = {}
        self.live = LiveTaps(decoder_factory)
        self.on_live: Any = None
        """``(frames, dropped, worker)`` callback, as :attr:`WorkerPlane.on_live`."""
        self._pumping = False

    def open(self, key: str, spec: RecorderSpec) -> None:
        self.set.open(key, spec)

    def attach(self, key: str, port: RtpPort) -> None:
        self._ports[port.port] = port
        self.receiver.watch(port)

    def detach(self, key: str, port: RtpPort) -> None:
        self._ports.pop(port.port, None)
        self.receiver.unwatch(port)
        self.live.forget(port.port)
        port.sink = None
        if port.counters.dropped_srtp:
            self._dropped.setdefault(key, {})[port.port] = port.counters.dropped_srtp

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        track = self.set.set_stream(key, port, spec, at)
        rtp_port = self._ports.get(port)
        if rtp_port is None:
            return
        rtp_port.sink = self.live.stream(
            key, port, spec.label if spec else "", spec.formats if spec else None,
            track.push if track is not None else None,
        )
        rtp_port.filter = srtp_filter(spec.srtp) if spec is not None and spec.srtp is not None else None
        # sender reports align streams; SRTCP is not decrypted yet, so encrypted streams go without
        plain = spec is not None and spec.srtp is None
        rtp_port.rtcp_sink = track.push_rtcp if track is not None and plain else None

    def live_subscribe(self, key: str, on: bool) -> bool:
        """Tap (or untap) ``key``'s ports; frames reach ``on_live`` every few milliseconds."""
        if on and key not in self.set.recordings:
            return False
        for port_no, sink in self.live.subscribe(key, on).items():
            bound = self._ports.get(port_no)
            if bound is not None:
                bound.sink = sink
        if self.live.keys and not self._pumping:
            self._pumping = True
            self.receiver.loop.call_later(_LIVE_PUMP_S, self._pump)
        return True

    def _pump(self) -> None:
        frames = self.live.take(self.receiver.clock())
        if frames and self.on_live is not None:
            self.on_live(frames, self.live.dropped, 0)
        if self.live.keys:
            self.receiver.loop.call_later(_LIVE_PUMP_S, self._pump)
        else:
            self._pumping = False

    def relatch(self, key: str, port: int, sources: tuple[str, ...] | None) -> None:
        self.set.relatch(key, port, sources)

    def poll_activity(self) -> None:
        """Nothing to ask: the tracks are here."""

    def activity(self) -> Activity:
        return self.receiver.clock(), self.set.activity()

    def pause(self, key: str, at: float) -> None:
        self.set.pause(key, at)

    def resume(self, key: str, at: float) -> None:
        self.set.resume(key, at)

    def packets_received(self, key: str, port: int) -> int:
        track = self.set.track(key, port)
        return track.packets_received if track is not None else 0

    def packets_lost(self, key: str, port: int) -> int:
        track = self.set.track(key, port)
        return track.packets_lost if track is not None else 0

    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
        self.live.keys.discard(key)
        future: asyncio.Future[RecordingResult] = _detached_future()
        try:
            future.set_result(self.set.close(key, at))
        except OSError as exc:
            future.set_exception(exc)
        return future

    def abort(self, key: str) -> None:
        self.set.abort(key)
        self._dropped.pop(key, None)

    def srtp_dropped(self, key: str) -> dict[int, int]:
        return self._dropped.pop(key, {})

    def flush(self, now: float) -> list[str]:
        return self.set.flush(now)

    def stop(self) -> None:
        self.set.abort_all()


def _detached_future() -> asyncio.Future[Any]:
    """A future bound to the running loop when there is one (tests call planes without a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        future: asyncio.Future[Any] = loop.create_future()
        loop.close()
        return future
    return loop.create_future()
