"""The messages between the daemon and its media workers (:mod:`~srs.mediaplane.worker_plane`,
:mod:`~srs.mediaplane.worker_loop`): one frozen dataclass per command and per report.

Each message is pickled whole over the ``SOCK_SEQPACKET`` pair, one datagram per message (the
daemon batches a loop turn's commands into one :class:`Batch`). A type, not a string tag, names
the message, so a receiver dispatches through a table from type to handler and a type checker
sees every field; ``slots=True`` keeps both the objects and their pickles small. Bound RTP sockets
ride along as ``SCM_RIGHTS``: an :class:`Attach` carries two descriptors (RTP, RTCP), every other
command none.

Both ends run the same code (the worker is a child of the daemon), so the protocol has no
version; a message a receiver has no handler for is still reported and dropped, never a crash.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from srs.media.result import RecordingResult
from srs.media.track import ActivityTuple
from srs.mediaplane.contract import RecorderSpec, StreamSpec


class _Message:
    """Pickles as ``(type, field values)``: a third smaller and about twice as fast to pickle and
    unpickle as the default state of a slotted dataclass (a dict built and set field by field)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        names: tuple[str, ...] = self.__slots__  # type: ignore[assignment]  # the dataclass's fields
        return type(self), tuple([getattr(self, name) for name in names])


# ---------------------------------------------------------------- commands (daemon -> worker)


@dataclass(frozen=True, slots=True)
class OpenRecording(_Message):
    """Create (or, with ``spec.resume``, continue from its journal) the recording ``key``."""

    key: str
    spec: RecorderSpec


@dataclass(frozen=True, slots=True)
class Attach(_Message):
    """Take over the bound RTP/RTCP sockets of ``port`` (the two descriptors of the message)."""

    key: str
    port: int


ATTACH_FDS = 2
"""Descriptors an :class:`Attach` carries: the RTP socket, then the RTCP socket."""


@dataclass(frozen=True, slots=True)
class Detach(_Message):
    """Drain and close ``port``'s sockets (the call no longer uses that m-line)."""

    key: str
    port: int


@dataclass(frozen=True, slots=True)
class SetStream(_Message):
    """What the stream on ``port`` carries from ``at`` on (None: no stream, the port idles)."""

    key: str
    port: int
    spec: StreamSpec | None
    at: float


@dataclass(frozen=True, slots=True)
class Relatch(_Message):
    """New SDP for the stream on ``port``: it allows ``sources`` and may move to another of them."""

    key: str
    port: int
    sources: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Pause(_Message):
    key: str
    at: float


@dataclass(frozen=True, slots=True)
class Resume(_Message):
    key: str
    at: float


@dataclass(frozen=True, slots=True)
class Close(_Message):
    """Finish the recording at ``at``; answered by :class:`Closed`."""

    key: str
    at: float


@dataclass(frozen=True, slots=True)
class Abort(_Message):
    """Drop the recording without a result (its file and journal go)."""

    key: str


@dataclass(frozen=True, slots=True)
class Live(_Message):
    """A listener came (``on``) or the last one went: tap or untap the call's ports."""

    key: str
    on: bool


@dataclass(frozen=True, slots=True)
class PollActivity(_Message):
    """Ask for every stream's activity; answered by :class:`ActivityReport`."""


@dataclass(frozen=True, slots=True)
class Stop(_Message):
    """Close every file and exit."""


Command = (
    OpenRecording | Attach | Detach | SetStream | Relatch | Pause | Resume | Close | Abort | Live
    | PollActivity | Stop
)
COMMANDS: tuple[type[Command], ...] = (
    OpenRecording, Attach, Detach, SetStream, Relatch, Pause, Resume, Close, Abort, Live,
    PollActivity, Stop,
)


@dataclass(frozen=True, slots=True)
class Batch(_Message):
    """Commands in order, each with how many of the message's descriptors are its own."""

    items: tuple[tuple[Command, int], ...]


# ---------------------------------------------------------------- reports (worker -> daemon)


@dataclass(frozen=True, slots=True)
class Ready(_Message):
    """The worker has started and takes commands."""


@dataclass(frozen=True, slots=True)
class Error(_Message):
    """A command could not be read or failed; the worker goes on with the next one."""

    error: str


@dataclass(frozen=True, slots=True)
class Failed(_Message):
    """The recording can no longer be written (the daemon ends its call)."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Resumed(_Message):
    """A recording opened with ``resume`` took over its dead worker's file and journal."""

    key: str
    written_from: int
    replayed: int
    last_arrival: float | None


@dataclass(frozen=True, slots=True)
class Counters(_Message):
    """Recording key -> RTP port -> (packets received, packets lost), once per flush cycle."""

    counters: Mapping[str, Mapping[int, tuple[int, int]]]


@dataclass(frozen=True, slots=True)
class ActivityReport(_Message):
    """Recording key -> RTP port -> :data:`~srs.media.track.ActivityTuple`, taken at ``taken_at``."""

    taken_at: float
    tracks: Mapping[str, Mapping[int, ActivityTuple]]


@dataclass(frozen=True, slots=True)
class Closed(_Message):
    """The answer to :class:`Close`: the result, or None and why; SRTP drops of detached ports."""

    key: str
    result: RecordingResult | None
    error: str | None
    dropped: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class LiveFrames(_Message):
    """One receive round's frames for live listeners, and how many were dropped so far."""

    frames: list[tuple[Any, ...]]
    dropped: int


Report = Ready | Error | Failed | Resumed | Counters | ActivityReport | Closed | LiveFrames
REPORTS: tuple[type[Report], ...] = (
    Ready, Error, Failed, Resumed, Counters, ActivityReport, Closed, LiveFrames,
)


def encode(message: Command | Batch | Report) -> bytes:
    """One message as the bytes of one datagram."""
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> object:
    """The message in a datagram; raises what unpickling raises. The result is whatever was sent:
    the receiver's dispatch table decides whether it is a message it knows."""
    return pickle.loads(data)
