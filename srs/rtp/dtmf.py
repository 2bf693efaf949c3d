"""RFC 4733 telephone-event payloads and the digits they describe.

A digit is sent as a run of packets sharing one RTP timestamp (the event
start) with a growing duration; the end packet carries the E bit and is
normally sent three times. The collector reports each event once, from its
first end packet, or from the last update seen when every end packet was lost.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from srs.errors import RtpError

_EVENT = struct.Struct("!BBH")

_DIGITS = "0123456789*#ABCD"


def event_name(event: int) -> str:
    """Digit for DTMF events 0-15 (RFC 4733 §3.2), ``flash`` for 16, else ``event-N``."""
    if event < 16:
        return _DIGITS[event]
    if event == 16:
        return "flash"
    return f"event-{event}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int
    """Duration so far in RTP timestamp units."""


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str
    offset_ms: int
    """Start of the event on the recording timeline."""
    duration_ms: int


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise RtpError(f"telephone-event payload of {len(payload)} bytes, expected at least 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


class DtmfCollector:
    """Turns a stream of telephone-event packets into one :class:`DtmfEvent` per key press."""

    __slots__ = ("_clock_rate", "_current", "_done", "_events")

    def __init__(self, clock_rate: int = 8000) -> None:
        self._clock_rate = clock_rate
        # (start timestamp, event, longest duration, offset_ms, ended)
        self._current: tuple[int, int, int, int, bool] | None = None
        self._done: set[int] = set()
        self._events: list[DtmfEvent] = []

    @property
    def events(self) -> list[DtmfEvent]:
        return list(self._events)

    def _emit(self, event: int, duration: int, offset_ms: int) -> DtmfEvent:
        found = DtmfEvent(event_name(event), offset_ms, duration * 1000 // self._clock_rate)
        self._events.append(found)
        return found

    def add(self, packet: TelephoneEvent, timestamp: int, offset_ms: int) -> DtmfEvent | None:
        """Feed one packet (``timestamp`` extended); returns an event when this packet completes one."""
        if timestamp in self._done:
            return None
        current = self._current
        completed: DtmfEvent | None = None
        if current is not None and current[0] != timestamp:
            if timestamp < current[0]:
                return None  # a stray update of an event that was already superseded
            if not current[4]:
                completed = self._emit(current[1], current[2], current[3])
            self._done.add(current[0])
            current = None
        if current is None:
            current = (timestamp, packet.event, packet.duration, offset_ms, False)
        else:
            current = (timestamp, current[1], max(current[2], packet.duration), current[3], current[4])
        if packet.end and not current[4]:
            completed = self._emit(current[1], current[2], current[3])
            current = (*current[:4], True)
        self._current = current
        return completed

    def finish(self) -> list[DtmfEvent]:
        """Report an event whose end packets never arrived; returns all events."""
        current = self._current
        if current is not None and not current[4]:
            self._emit(current[1], current[2], current[3])
            self._current = (*current[:4], True)
        return list(self._events)
