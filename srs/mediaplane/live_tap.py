"""The live tap: a call's audio decoded packet by packet for listeners, beside the recorder.

The recorder holds audio for its reorder window (about half a second) before it places and
decodes it; a live listener cannot wait that long. A tap sits where a port hands a datagram to
its track: the datagram still goes to the track unchanged (the recording never depends on the
tap), and a copy is decoded at once with the same codecs and released in sequence order through
a small jitter buffer of its own (``hold``, 40 ms by default): a packet that fills the expected
place goes out at once, a gap is waited for at most ``hold`` and then skipped (the missing time
is filled with silence by its successor, from the RTP timestamps).

Only ports of calls that someone listens to are tapped (:meth:`LiveTaps.subscribe`): an
unlistened call keeps its plain ``track.push`` sink and pays nothing. Frames leave as tuples
``(key, port, label, seq, arrival, pcm, fill)`` (``fill``: silent samples at the head of ``pcm``
standing for a gap) or ``(key, port, label, "dtmf", digit, arrival)``
collected by :meth:`LiveTaps.take`; the caller decides how they travel (see
:mod:`srs.mediaplane.worker_loop` and :mod:`srs.mediaplane.worker_plane`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srs.errors import RtpError
from srs.media.rendering import Decoder, DecoderFactory, PayloadFormat
from srs.rtp.dtmf import event_name, parse_telephone_event
from srs.rtp.packet import split_rtp

Sink = Callable[[bytes, Any, float], None]
DEFAULT_HOLD_S = 0.04
MAX_FILL_SAMPLES = 8000
"""Silence inserted for a timestamp jump is capped at one second (longer: a new talk spurt)."""
MAX_PENDING_FRAMES = 2000
"""Frames kept for the consumer between two ``take`` calls; beyond that the oldest are dropped."""
OUT_RATE = 8000


@dataclass
class StreamTap:
    """One port's decoder and jitter buffer; emits 8 kHz int16 bytes in sequence order."""

    key: str
    port: int
    label: str
    formats: Mapping[int, PayloadFormat]
    decoder_factory: DecoderFactory
    emit: Callable[[tuple[Any, ...]], None]
    hold: float = DEFAULT_HOLD_S
    decoders: dict[int, Decoder | None] = field(default_factory=dict)
    next_seq: int | None = None
    pending: dict[int, tuple[int, int, bytes, float]] = field(default_factory=dict)
    """seq -> (payload type, timestamp, payload, arrival) of packets waiting for a gap to close."""
    last_end_ts: int | None = None
    """RTP timestamp just past the last emitted audio, in the stream's clock."""
    clock: int = 8000
    dtmf_done: set[int] = field(default_factory=set)
    late: int = 0

    def push(self, data: bytes, arrival: float) -> None:
        try:
            b1, seq, ts, _ssrc, payload = split_rtp(data)
        except RtpError:
            return
        pt = b1 & 0x7F
        expected = self.next_seq
        if expected is None:
            expected = self.next_seq = seq
        ahead = (seq - expected) & 0xFFFF
        if ahead >= 0x8000:
            self.late += 1  # already skipped or emitted: the listener has moved on
            return
        self.pending[seq] = (pt, ts, payload, arrival)
        self._release()

    def _release(self) -> None:
        seq = self.next_seq
        pending = self.pending
        while seq is not None and seq in pending:
            pt, ts, payload, arrival = pending.pop(seq)
            self._emit_packet(seq, pt, ts, payload, arrival)
            seq = (seq + 1) & 0xFFFF
        self.next_seq = seq

    def tick(self, now: float) -> None:
        """Give up on a gap once the packet after it has waited ``hold``."""
        if not self.pending or self.next_seq is None:
            return
        base = self.next_seq
        first = min(self.pending, key=lambda s: (s - base) & 0xFFFF)
        if now - self.pending[first][3] >= self.hold:
            self.next_seq = first
            self._release()

    def _decoder(self, pt: int) -> Decoder | None:
        if pt not in self.decoders:
            fmt = self.formats.get(pt)
            decoder: Decoder | None = None
            if fmt is not None and fmt.encoding.lower() not in ("telephone-event", "cn"):
                try:
                    decoder = self.decoder_factory(fmt.encoding, fmt.clock_rate, fmt.channels, fmt.fmtp)
                except Exception:  # an unsupported codec: the recorder reports it; the tap stays silent
                    decoder = None
            self.decoders[pt] = decoder
        return self.decoders[pt]

    def _emit_packet(self, seq: int, pt: int, ts: int, payload: bytes, arrival: float) -> None:
        fmt = self.formats.get(pt)
        if fmt is not None and fmt.encoding.lower() == "telephone-event":
            self._dtmf(ts, payload, arrival)
            return
        decoder = self._decoder(pt)
        if decoder is None:
            return
        try:
            pcm = decoder.decode(payload)
        except Exception:
            return
        clock = decoder.clock_rate or 8000
        self.clock = clock
        fill = 0
        if self.last_end_ts is not None:
            jump = (ts - self.last_end_ts) & 0xFFFFFFFF
            if jump < 0x80000000:
                fill = min(MAX_FILL_SAMPLES, jump * OUT_RATE // clock)
        self.last_end_ts = (ts + len(pcm) * clock // OUT_RATE) & 0xFFFFFFFF
        audio = pcm.astype(np.int16, copy=False).tobytes()
        if fill:
            audio = bytes(2 * fill) + audio
        self.emit((self.key, self.port, self.label, seq, arrival, audio, fill))

    def _dtmf(self, ts: int, payload: bytes, arrival: float) -> None:
        try:
            event = parse_telephone_event(payload)
        except RtpError:
            return
        if not event.end or ts in self.dtmf_done:
            return
        self.dtmf_done.add(ts)
        self.emit((self.key, self.port, self.label, "dtmf", event_name(event.event), arrival))


@dataclass
class _PortState:
    key: str
    label: str
    formats: Mapping[int, PayloadFormat]
    sink: Sink | None
    tap: StreamTap | None = None


class LiveTaps:
    """The taps of one process: which keys are listened to, and the frames waiting to leave."""

    def __init__(self, decoder_factory: DecoderFactory, hold: float = DEFAULT_HOLD_S) -> None:
        self.decoder_factory = decoder_factory
        self.hold = hold
        self.keys: set[str] = set()
        self.ports: dict[int, _PortState] = {}
        self.tapped: dict[int, StreamTap] = {}
        """The taps in use, by port: what :meth:`tick` visits (not every port of the process)."""
        self.out: list[tuple[Any, ...]] = []
        self.dropped = 0
        """Frames dropped because the consumer did not take them in time."""

    @property
    def active(self) -> bool:
        return bool(self.keys)

    def _emit(self, frame: tuple[Any, ...]) -> None:
        if len(self.out) >= MAX_PENDING_FRAMES:
            self.dropped += 1
            return
        self.out.append(frame)

    def stream(self, key: str, port: int, label: str, formats: Mapping[int, PayloadFormat] | None,
               sink: Sink | None) -> Sink | None:
        """A port got a new track (or lost it): returns the sink the port should use."""
        if sink is None or formats is None:
            self.forget(port)
            return sink
        state = _PortState(key, label, formats, sink)
        self.ports[port] = state
        return self._sink(port, state)

    def forget(self, port: int) -> None:
        self.ports.pop(port, None)
        self.tapped.pop(port, None)

    def subscribe(self, key: str, on: bool) -> dict[int, Sink | None]:
        """Start or stop tapping ``key``; returns the new sink of each of its ports."""
        if on:
            self.keys.add(key)
        else:
            self.keys.discard(key)
        return {port: self._sink(port, state) for port, state in self.ports.items() if state.key == key}

    def _sink(self, port: int, state: _PortState) -> Sink | None:
        plain = state.sink
        if state.key not in self.keys or plain is None:
            state.tap = None
            self.tapped.pop(port, None)
            return plain
        tap = state.tap = self.tapped[port] = StreamTap(
            state.key, port, state.label, state.formats, self.decoder_factory, self._emit, self.hold
        )
        feed = tap.push

        def tapped(data: bytes, addr: Any, arrival: float) -> None:
            plain(data, addr, arrival)  # the recording first, always
            feed(data, arrival)

        return tapped

    def tick(self, now: float) -> None:
        for tap in self.tapped.values():
            if tap.pending:
                tap.tick(now)

    def take(self, now: float) -> list[tuple[Any, ...]]:
        """Frames ready to leave (after releasing gaps that waited long enough)."""
        self.tick(now)
        out, self.out = self.out, []
        return out
