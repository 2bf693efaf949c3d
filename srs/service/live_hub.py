"""Live listeners of calls being recorded: frames from the media plane fanned out, never waited for.

Transport choice: the worker already has a ``SOCK_SEQPACKET`` command socket to the daemon, read
by the daemon's loop. Live frames travel over it, one pickled batch per worker poll, and only for
calls with a listener (``("live", key, on)`` asks the worker to tap or untap a call). A second
socket would save nothing: the daemon reads both on the same loop, the volume is what the
listeners ask for, and the worker sends non-blocking (a full socket drops the batch, counted) so
it never waits for the daemon. The websocket is then served by the API on the daemon's loop,
beside the audit trail and the bearer tokens it needs.

Isolation: :meth:`LiveHub.deliver` only appends to each listener's bounded queue; a listener whose
queue is full loses the new frames (counted per listener, per recording, and in ``/metrics``).
The sender of each websocket is a task of its own, so a slow or dead consumer only ever fills
its own queue; the recording (in the worker) never sees it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srs.service import live_formats as fmt
from srs.service.live_formats import CallInfo

FRAME_SAMPLES = 160
"""20 ms at 8 kHz: the unit every listener receives."""
FRAME_BYTES = 2 * FRAME_SAMPLES
ALIGN_WAIT_FRAMES = 5
"""A side with nothing buffered is waited for while another has less than 100 ms buffered, i.e. for
80 ms after the other's oldest frame: longer than the tap's 40 ms gap hold plus a packet interval,
so a gap the tap fills is never also stood in for here (a side that is silent costs 80 ms)."""
DEFAULT_QUEUE_FRAMES = 250
MIX_TYPES = ("mono", "mixed", "stereo", "streams")
FORMATS = ("jambonz", "twilio")

Message = tuple[str, Any]
"""("text", str), ("bytes", bytes) or ("close", reason)."""


@dataclass(eq=False)
class Listener:
    """One websocket's view of one call: assembles 20 ms frames in its format, queues them."""

    info: CallInfo
    format: str = "jambonz"
    mix: str = "mono"
    sample_rate: int = 8000
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    dtmf: bool = True
    queue: deque[Message] = field(default_factory=deque)
    dropped: int = 0
    sent: int = 0
    first_arrival: float | None = None
    """Monotonic arrival time of the first audio packet queued for this listener."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    buffers: dict[str, bytearray] = field(default_factory=dict)
    padded: dict[str, int] = field(default_factory=dict)
    """Samples of silence the assembler put in for a stream that had nothing yet, since its last
    audio: a gap fill arriving next covers the same time and is not played twice."""
    stream_sid: str = field(default_factory=lambda: "MZ" + secrets.token_hex(16))
    seq: int = 0
    chunks: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    """When the stream started (the clock of packet arrivals: CLOCK_MONOTONIC, shared by processes)."""
    track_start_ms: dict[str, int] = field(default_factory=dict)
    """Twilio ``timestamp`` of each track's first chunk: its audio's place from the stream's start."""
    closed: bool = False

    def __post_init__(self) -> None:
        if self.format == "twilio":
            self._put(("text", fmt.twilio_connected()), force=True)
            self.seq += 1
            self._put(("text", fmt.twilio_start(self.info, self.stream_sid, self.seq)), force=True)
        else:
            self._put(("text", fmt.jambonz_start(self.info, self.sample_rate, self.mix)), force=True)
            # every negotiated stream is waited for (at most 80 ms), so the first frame has both sides
            self.buffers = {label: bytearray() for label in self.info.labels}

    # ------------------------------------------------------------ queue
    def _put(self, message: Message, force: bool = False) -> None:
        if not force and len(self.queue) >= self.queue_frames:
            self.dropped += 1
            return
        self.queue.append(message)
        self.wake.set()

    async def next(self) -> Message:
        while not self.queue:
            self.wake.clear()
            await self.wake.wait()
        message = self.queue.popleft()
        if message[0] != "close":
            self.sent += 1
        return message

    # ------------------------------------------------------------ input
    def side_of(self, label: str) -> int:
        left, right = self.info.sides
        if label in left:
            return 0
        if label in right:
            return 1
        labels = self.info.labels
        return 0 if not labels or label == labels[0] else 1

    def feed(self, label: str, audio: bytes, arrival: float, fill: int = 0, assemble: bool = True) -> None:
        """20 ms-ish of a stream's audio; ``fill`` samples at its head are silence for a gap."""
        if self.closed:
            return
        owed = self.padded.pop(label, 0)
        if owed and fill:  # the assembler already stood in for this gap: skip that much of the fill
            audio = audio[2 * min(owed, fill):]
        if self.first_arrival is None:
            self.first_arrival = arrival
        if self.format == "twilio":
            track = "inbound" if self.side_of(label) == 0 else "outbound"
            if track not in self.track_start_ms:
                self.track_start_ms[track] = max(0, round((arrival - self.created) * 50)) * 20
            buf = self.buffers.setdefault(track, bytearray())
            buf += audio
            while len(buf) >= FRAME_BYTES:
                pcm = np.frombuffer(bytes(buf[:FRAME_BYTES]), dtype="<i2")
                del buf[:FRAME_BYTES]
                chunk = self.chunks.get(track, 0) + 1
                self.chunks[track] = chunk
                self.seq += 1
                self._put(("text", fmt.twilio_media(
                    self.stream_sid, self.seq, track, chunk, self.track_start_ms[track] + (chunk - 1) * 20,
                    fmt.ulaw_encode(pcm),
                )))
            return
        self.buffers.setdefault(label, bytearray()).extend(audio)
        if assemble:
            self._assemble()

    def flush(self) -> None:
        """Frame what a whole batch brought (streams of one poll are aligned together)."""
        if self.format != "twilio" and not self.closed:
            self._assemble()

    def dtmf_event(self, label: str, digit: str) -> None:
        if self.closed or not self.dtmf:
            return
        if self.format == "twilio":
            self.seq += 1
            track = "inbound" if self.side_of(label) == 0 else "outbound"
            self._put(("text", fmt.twilio_dtmf(self.stream_sid, self.seq, track, digit)))
        else:
            self._put(("text", fmt.jambonz_dtmf(digit)))

    def _assemble(self) -> None:
        """Release 20 ms frames once every stream has one (or one runs 100 ms ahead)."""
        buffers = self.buffers
        while buffers:
            longest = max(len(b) for b in buffers.values())
            shortest = min(len(b) for b in buffers.values())
            waiting = shortest < FRAME_BYTES and longest < ALIGN_WAIT_FRAMES * FRAME_BYTES
            if longest < FRAME_BYTES or waiting:
                return
            parts: dict[str, np.ndarray] = {}
            for label, buf in buffers.items():
                take = bytes(buf[:FRAME_BYTES])
                del buf[:FRAME_BYTES]
                pcm = np.frombuffer(take, dtype="<i2").astype(np.int32)
                if len(pcm) < FRAME_SAMPLES:
                    self.padded[label] = self.padded.get(label, 0) + FRAME_SAMPLES - len(pcm)
                    pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm), np.int32)])
                parts[label] = pcm
            self._put(("bytes", self._render(parts)))

    def _render(self, parts: dict[str, np.ndarray]) -> bytes:
        factor = self.sample_rate // 8000
        if self.mix == "stereo":
            sides = [np.zeros(FRAME_SAMPLES, np.int32), np.zeros(FRAME_SAMPLES, np.int32)]
            for label, pcm in parts.items():
                sides[self.side_of(label)] += pcm
            channels = [fmt.upsample(_to_int16(s), factor) for s in sides]
            return fmt.interleave(channels)
        if self.mix == "streams":
            order = list(self.info.labels) + sorted(set(parts) - set(self.info.labels))
            channels = [
                fmt.upsample(parts.get(label, np.zeros(FRAME_SAMPLES, np.int32)).astype(np.int16), factor)
                for label in order
            ]
            return fmt.interleave(channels)
        total = np.zeros(FRAME_SAMPLES, np.int32)
        for pcm in parts.values():
            total += pcm
        mixed = _to_int16(total)
        return fmt.upsample(mixed, factor).astype("<i2").tobytes()

    def metadata_event(self, info: CallInfo) -> None:
        """The call's metadata changed (a participant joined): told as an event, in the same stream."""
        self.info = info
        if self.format == "twilio":
            self.seq += 1
            self._put(("text", fmt.twilio_metadata(info, self.stream_sid, self.seq)), force=True)
        else:
            self._put(("text", fmt.jambonz_metadata(info)), force=True)

    def end(self, reason: str) -> None:
        if self.closed:
            return
        if self.format == "twilio":
            self.seq += 1
            self._put(("text", fmt.twilio_stop(self.info, self.stream_sid, self.seq)), force=True)
        self.closed = True
        self._put(("close", reason), force=True)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    """Saturate an int32 sum to int16 (two ufuncs: ``np.clip`` costs microseconds more per call)."""
    np.maximum(samples, -32768, out=samples)
    np.minimum(samples, 32767, out=samples)
    return samples.astype(np.int16)


class LiveHub:
    """Listeners by recording key; fed by the media plane, read by websocket tasks."""

    def __init__(
        self,
        *,
        describe: Callable[[str], CallInfo | None],
        subscribe: Callable[[str, bool], bool],
        registry: Any = None,
    ) -> None:
        self.describe = describe
        self.subscribe = subscribe
        self.listeners: dict[str, set[Listener]] = {}
        self.dropped_by_key: dict[str, int] = {}
        self.tap_dropped = 0
        self.queue_frames = DEFAULT_QUEUE_FRAMES
        self.frames_in = 0
        self._metrics(registry)

    def _metrics(self, registry: Any) -> None:
        self._listeners_gauge = self._frames = self._drops = None
        if registry is None:
            return
        from prometheus_client import Counter, Gauge

        self._listeners_gauge = Gauge(
            "srs_live_listeners", "Live audio listeners connected", registry=registry
        )
        self._frames = Counter("srs_live_frames", "Live audio frames queued to listeners", registry=registry)
        self._drops = Counter(
            "srs_live_frames_dropped", "Live audio frames dropped (slow listener)", registry=registry
        )

    def _count_drop(self, n: int) -> None:
        if self._drops is not None and n > 0:
            self._drops.inc(n)

    def attach(self, key: str, listener: Listener) -> bool:
        group = self.listeners.setdefault(key, set())
        first = not group
        group.add(listener)
        if self._listeners_gauge is not None:
            self._listeners_gauge.inc()
        if first and not self.subscribe(key, True):
            group.discard(listener)
            if not group:
                self.listeners.pop(key, None)
            if self._listeners_gauge is not None:
                self._listeners_gauge.dec()
            return False
        return True

    def detach(self, key: str, listener: Listener) -> None:
        group = self.listeners.get(key)
        if group is None or listener not in group:
            return
        group.discard(listener)
        if self._listeners_gauge is not None:
            self._listeners_gauge.dec()
        if not group:
            self.listeners.pop(key, None)
            self.subscribe(key, False)

    def deliver(self, frames: list[tuple[Any, ...]], tap_dropped: int = 0, worker: int = 0) -> None:
        """A batch from a tap: ``(key, port, label, seq, arrival, pcm, fill)`` or
        ``(key, port, label, "dtmf", digit, arrival)``; framed per listener once the batch is in."""
        if tap_dropped > self.tap_dropped:
            self._count_drop(tap_dropped - self.tap_dropped)
            self.tap_dropped = tap_dropped
        listeners = self.listeners
        counted = 0
        touched: dict[Listener, tuple[str, int]] = {}
        """Each listener fed by this batch: (key, frames it had dropped before the batch)."""
        for frame in frames:
            group = listeners.get(frame[0])
            if not group:
                continue
            if frame[3] == "dtmf":
                for listener in group:
                    listener.dtmf_event(frame[2], frame[4])
                continue
            for listener in group:
                if listener not in touched:
                    touched[listener] = (frame[0], listener.dropped)
                listener.feed(frame[2], frame[5], frame[4], frame[6], assemble=False)
                counted += 1
        for listener, (key, before) in touched.items():
            listener.flush()
            lost = listener.dropped - before
            if lost:
                self._count_drop(lost)
                self.dropped_by_key[key] = self.dropped_by_key.get(key, 0) + lost
        self.frames_in += counted
        if self._frames is not None and counted:
            self._frames.inc(counted)

    def metadata_changed(self, key: str, info: CallInfo) -> None:
        for listener in list(self.listeners.get(key, ())):
            listener.metadata_event(info)

    def ended(self, key: str, reason: str = "call ended") -> int:
        """The call is over: every listener gets its closing frames; returns the frames dropped."""
        for listener in list(self.listeners.get(key, ())):
            listener.end(reason)
        return self.dropped_by_key.pop(key, 0)


def now_ms() -> float:
    return time.monotonic() * 1000
