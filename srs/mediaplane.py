"""The media plane: where recordings' RTP is received, placed, mixed and written.

:class:`~srs.live.LiveRecordings` decides *what* happens to a recording (opened, a stream set up
or ended, paused, closed); a plane does it. Two planes share one contract:

* :class:`InProcessPlane` receives on the daemon's own event loop (simple; used by tests and
  small installations);
* :class:`~srs.net.media_worker.WorkerPlane` hands each recording to one of N worker processes,
  each an epoll loop of its own, so media work never waits behind SIP or HTTP and scales by
  adding processes.

Ports are always bound by the daemon (so an unbindable port is skipped while the offer is
answered); a worker plane passes the bound sockets to its worker.  Closing is asynchronous:
:meth:`MediaPlane.close` returns a future of the :class:`~srs.media.recorder.RecordingResult`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from srs.errors import RtpError
from srs.media.recorder import Recorder, RecordingResult
from srs.media.track import DecoderFactory, PayloadFormat, StreamTrack
from srs.net.rtp_edge import RtpPort, RtpReceiver

PacketFilter = Callable[[bytes], "bytes | None"]


@dataclass(frozen=True, slots=True)
class RecorderSpec:
    """Everything needed to open one recording's file, as plain (picklable) values."""

    path: str
    start: float
    reorder_window: float = 0.5
    pause_mode: str = "silence"
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further keyword arguments of :class:`Recorder` (output options), passed through as given."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One m-line's receive side: payload formats, label and the SRTP key, if any."""

    formats: Mapping[int, PayloadFormat]
    label: str
    relatch_after: float = 1.0
    srtp: tuple[str, str] | None = None
    """(crypto suite, inline key parameters) of the sender."""


def srtp_filter(srtp: tuple[str, str]) -> PacketFilter:
    """A datagram transform that decrypts SRTP and drops (returns None) what fails to authenticate."""
    from srs.rtp.srtp import SrtpInbound

    inbound = SrtpInbound(srtp[0], srtp[1])

    def unprotect(data: bytes) -> bytes | None:
        try:
            return inbound.unprotect(data)
        except RtpError:
            return None

    return unprotect


@dataclass
class _Recording:
    recorder: Recorder
    tracks: dict[int, int] = field(default_factory=dict)
    """RTP port -> track index in the recorder."""
    failure: str | None = None


class RecordingSet:
    """The recorders of one plane (or one worker), by key; no I/O besides the WAV files."""

    def __init__(self, decoder_factory: DecoderFactory) -> None:
        self.decoder_factory = decoder_factory
        self.recordings: dict[str, _Recording] = {}

    def open(self, key: str, spec: RecorderSpec) -> None:
        pause_mode: Literal["silence", "cut"] = "cut" if spec.pause_mode == "cut" else "silence"
        recorder = Recorder(
            spec.path,
            spec.start,
            reorder_window=spec.reorder_window,
            pause_mode=pause_mode,
            **dict(spec.extra),
        )
        self.recordings[key] = _Recording(recorder)

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> StreamTrack | None:
        """End the track fed from ``port`` (if any) at ``at`` and start a new one from ``spec``."""
        rec = self.recordings.get(key)
        if rec is None:
            return None
        old = rec.tracks.pop(port, None)
        if old is not None:
            rec.recorder.end_track(old, at)
        if spec is None:
            return None
        track = StreamTrack(
            dict(spec.formats),
            start=rec.recorder.start,
            sample_rate=rec.recorder.sample_rate,
            decoder_factory=self.decoder_factory,
            label=spec.label,
            relatch_after=spec.relatch_after,
        )
        rec.tracks[port] = rec.recorder.add_track(track)
        return track

    def track(self, key: str, port: int) -> StreamTrack | None:
        rec = self.recordings.get(key)
        if rec is None or port not in rec.tracks:
            return None
        return rec.recorder.tracks[rec.tracks[port]]

    def pause(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.pause(at)

    def resume(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.resume(at)

    def flush_one(self, key: str, now: float) -> str | None:
        """Flush one recording; returns the failure reason when its file cannot be written."""
        rec = self.recordings.get(key)
        if rec is None or rec.failure is not None:
            return None
        try:
            rec.recorder.flush(now)
        except OSError as exc:
            rec.failure = f"write failed: {exc.strerror or exc}"
            return rec.failure
        return None

    def flush(self, now: float) -> list[str]:
        return [key for key in list(self.recordings) if self.flush_one(key, now) is not None]

    def close(self, key: str, at: float) -> RecordingResult:
        """Write up to ``at`` and finish the file; raises OSError when it cannot be written."""
        rec = self.recordings.pop(key)
        if rec.failure is not None:
            rec.recorder.abort()
            raise OSError(rec.failure)
        try:
            return rec.recorder.close(at)
        except OSError as exc:
            raise OSError(f"write failed: {exc.strerror or exc}") from exc

    def abort(self, key: str) -> None:
        rec = self.recordings.pop(key, None)
        if rec is not None:
            rec.recorder.abort()

    def abort_all(self) -> None:
        for key in list(self.recordings):
            self.abort(key)


class MediaPlane(ABC):
    """The operations :class:`~srs.live.LiveRecordings` needs; ``key`` names a recording (its session)."""

    @abstractmethod
    def open(self, key: str, spec: RecorderSpec) -> None: ...

    @abstractmethod
    def attach(self, key: str, port: RtpPort) -> None:
        """Start receiving on a bound port; datagrams are dropped until a stream is set on it."""

    @abstractmethod
    def detach(self, key: str, port: RtpPort) -> None:
        """Stop receiving on ``port`` (the daemon closes and releases it afterwards)."""

    @abstractmethod
    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        """Feed a new track of ``key`` from ``port`` (ending the previous one at ``at``); None only ends."""

    @abstractmethod
    def relatch(self, key: str, port: int) -> None: ...

    @abstractmethod
    def pause(self, key: str, at: float) -> None: ...

    @abstractmethod
    def resume(self, key: str, at: float) -> None: ...

    @abstractmethod
    def packets_received(self, key: str, port: int) -> int:
        """Packets accepted so far on ``port`` (0 where the plane cannot tell without asking)."""

    @abstractmethod
    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
        """Finish the file at ``at``; the future fails with OSError when it could not be written."""

    @abstractmethod
    def abort(self, key: str) -> None: ...

    @abstractmethod
    def srtp_dropped(self, key: str) -> dict[int, int]:
        """SRTP datagrams that failed authentication, by RTP port, once ``close`` has completed."""

    @abstractmethod
    def flush(self, now: float) -> list[str]:
        """Write what is due (or collect what workers wrote); returns keys whose file failed."""

    @abstractmethod
    def stop(self) -> None:
        """Release the plane's processes and files, if any."""


class InProcessPlane(MediaPlane):
    """Media on the daemon's event loop: readers registered with ``loop.add_reader``."""

    def __init__(self, receiver: RtpReceiver, decoder_factory: DecoderFactory) -> None:
        self.receiver = receiver
        self.set = RecordingSet(decoder_factory)
        self._ports: dict[int, RtpPort] = {}
        self._dropped: dict[str, dict[int, int]] = {}

    def open(self, key: str, spec: RecorderSpec) -> None:
        self.set.open(key, spec)

    def attach(self, key: str, port: RtpPort) -> None:
        self._ports[port.port] = port
        self.receiver.watch(port)

    def detach(self, key: str, port: RtpPort) -> None:
        self._ports.pop(port.port, None)
        self.receiver.unwatch(port)
        port.sink = None
        if port.counters.dropped_srtp:
            self._dropped.setdefault(key, {})[port.port] = port.counters.dropped_srtp

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        track = self.set.set_stream(key, port, spec, at)
        rtp_port = self._ports.get(port)
        if rtp_port is None:
            return
        rtp_port.sink = track.push if track is not None else None
        rtp_port.filter = srtp_filter(spec.srtp) if spec is not None and spec.srtp is not None else None
        # sender reports align streams; SRTCP is not decrypted yet, so encrypted streams go without
        plain = spec is not None and spec.srtp is None
        rtp_port.rtcp_sink = track.push_rtcp if track is not None and plain else None

    def relatch(self, key: str, port: int) -> None:
        track = self.set.track(key, port)
        if track is not None:
            track.relatch()

    def pause(self, key: str, at: float) -> None:
        self.set.pause(key, at)

    def resume(self, key: str, at: float) -> None:
        self.set.resume(key, at)

    def packets_received(self, key: str, port: int) -> int:
        track = self.set.track(key, port)
        return track.packets_received if track is not None else 0

    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
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
