"""The media plane's contract: what the daemon's live recordings ask of a plane, and its specs.

:class:`~srs.daemon.recordings.LiveRecordings` decides *what* happens to a recording (opened, a stream set up
or ended, paused, closed); a plane does it. Two planes share this contract:

* :class:`~srs.mediaplane.inprocess.InProcessPlane` receives on the daemon's own event loop (simple;
  used by tests and small installations);
* :class:`~srs.mediaplane.worker_plane.WorkerPlane` hands each recording to one of N worker
  processes (:mod:`srs.mediaplane.worker_loop`), each an epoll loop of its own, so media work never
  waits behind SIP or HTTP and scales by adding processes.

Ports are always bound by the daemon (so an unbindable port is skipped while the offer is
answered); a worker plane passes the bound sockets to its worker.  Closing is asynchronous:
:meth:`MediaPlane.close` returns a future of the :class:`~srs.media.result.RecordingResult`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from srs.errors import RtpError
from srs.media.rendering import PayloadFormat
from srs.media.result import RecordingResult
from srs.media.track import ActivityTuple
from srs.mediaplane.ports import RtpPort

PacketFilter = Callable[[bytes], "bytes | None"]
Activity = tuple[float, Mapping[str, Mapping[int, ActivityTuple]]]


@dataclass(frozen=True, slots=True)
class RecorderSpec:
    """Everything needed to open one recording's file, as plain (picklable) values."""

    path: str
    start: float
    reorder_window: float = 0.5
    pause_mode: str = "silence"
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further keyword arguments of :class:`Recorder` (output options), passed through as given."""
    resume: bool = False
    """Continue the file at ``path`` from its crash journal (its media worker died) instead of creating it."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One m-line's receive side: payload formats, label and the SRTP key, if any."""

    formats: Mapping[int, PayloadFormat]
    label: str
    relatch_after: float = 1.0
    srtp: tuple[str, str] | None = None
    """(crypto suite, inline key parameters) of the sender."""
    sources: tuple[str, ...] | None = None
    """Hosts allowed to send this stream (from the SBC's SDP or SIP address); None: the first sender
    latches (see :class:`~srs.media.track.StreamTrack`)."""


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


class MediaPlane(ABC):
    """The operations :class:`~srs.daemon.recordings.LiveRecordings` needs.

    ``key`` names a recording (its session).
    """

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
    def relatch(self, key: str, port: int, sources: tuple[str, ...] | None) -> None:
        """New SDP for the stream on ``port``: ``sources`` are now allowed, and another allowed
        address may take the stream over at once (an SBC failover announced by re-INVITE/UPDATE)."""

    @abstractmethod
    def poll_activity(self) -> None:
        """Ask for fresh per-stream activity (a worker plane answers asynchronously)."""

    @abstractmethod
    def activity(self) -> Activity:
        """The latest known activity of every live track: (when it was taken, key -> port -> activity)."""

    @abstractmethod
    def pause(self, key: str, at: float) -> None: ...

    @abstractmethod
    def resume(self, key: str, at: float) -> None: ...

    @abstractmethod
    def packets_received(self, key: str, port: int) -> int:
        """Packets accepted so far on ``port`` (0 where the plane cannot tell without asking)."""

    def packets_lost(self, key: str, port: int) -> int:
        """Packets missing so far on ``port`` (0 where the plane cannot tell)."""
        return 0

    def interruptions(self, key: str) -> list[dict[str, Any]]:
        """Media worker deaths the recording lived through (continued from its journal), once its
        close has completed: ``at_ms`` on its timeline, ``reason``, ``resumed_at_ms``,
        ``replayed_packets``."""
        return []

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

    def live_subscribe(self, key: str, on: bool) -> bool:
        """Start or stop the live tap of ``key`` (:mod:`srs.mediaplane.live_tap`); False: not here."""
        return False

    @abstractmethod
    def stop(self) -> None:
        """Release the plane's processes and files, if any."""
