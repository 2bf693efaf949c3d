"""The worker protocol: every message survives the pipe, every type has a handler on its receiving
side, and a message nobody handles is reported and dropped instead of ending the worker."""

from __future__ import annotations

import os
import pickle
import socket
import typing
from pathlib import Path
from typing import Any

import pytest

from srs.media.outputs import OutputFile
from srs.media.rendering import PayloadFormat
from srs.media.result import RecordingResult
from srs.mediaplane import protocol
from srs.mediaplane.contract import RecorderSpec, StreamSpec
from srs.mediaplane.protocol import (
    COMMANDS,
    REPORTS,
    Abort,
    ActivityReport,
    Attach,
    Batch,
    Close,
    Closed,
    Counters,
    Detach,
    Error,
    Failed,
    Live,
    LiveFrames,
    OpenRecording,
    Pause,
    PollActivity,
    Ready,
    Relatch,
    Resume,
    Resumed,
    SetStream,
    Stop,
    decode,
    encode,
)
from srs.mediaplane.worker_loop import _HANDLERS, WorkerLoop
from srs.mediaplane.worker_plane import _REPORT_HANDLERS, WorkerPlane, _Kept

PCMU = {0: PayloadFormat("PCMU", 8000)}

EXAMPLE_COMMANDS = [
    OpenRecording("call", RecorderSpec("/rec/call.wav", 12.5, resume=True)),
    Attach("call", 40000),
    Detach("call", 40000),
    SetStream("call", 40000, StreamSpec(PCMU, "caller", sources=("192.0.2.1",)), 13.0),
    SetStream("call", 40002, None, 13.0),
    Relatch("call", 40000, ("192.0.2.9",)),
    Relatch("call", 40000, None),
    Pause("call", 20.0),
    Resume("call", 21.5),
    Close("call", 30.0),
    Abort("call"),
    Live("call", True),
    PollActivity(),
    Stop(),
]
EXAMPLE_REPORTS = [
    Ready(),
    Error("ValueError('x')"),
    Failed("call", "cannot create file: No space left on device"),
    Resumed("call", 8000, 250, 17.25),
    Resumed("call", 0, 0, None),
    Counters({"call": {40000: (500, 3)}}),
    ActivityReport(99.0, {"call": {40000: (5, 98.5, "192.0.2.1:4000", 0, (("198.51.100.7:9", 2),), None)}}),
    Closed(
        "call",
        RecordingResult(
            "/rec/call.wav", 1000, 8000, 0, (), (), ("stream 1 empty: received no RTP",),
            (OutputFile("/rec/call.wav", "wav", 1, 8000, 16044, 8000),),
        ),
        None,
        {},
    ),
    Closed("call", None, "No such file or directory", {40000: 2}),
    LiveFrames([("call", 40000, b"\x00\x01")], 3),
]


def test_the_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLE_COMMANDS} == set(COMMANDS)
    assert {type(m) for m in EXAMPLE_REPORTS} == set(REPORTS)
    # the tuples the tables are checked against are the unions the type checker sees
    assert set(typing.get_args(protocol.Command)) == set(COMMANDS)
    assert set(typing.get_args(protocol.Report)) == set(REPORTS)


@pytest.mark.parametrize("message", EXAMPLE_COMMANDS + EXAMPLE_REPORTS, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_pickle(message: object) -> None:
    back = decode(encode(message))  # type: ignore[arg-type]
    assert type(back) is type(message)
    assert back == message
    assert not hasattr(message, "__dict__")  # slots: no per-object dict to build or pickle


def test_a_batch_round_trips_with_its_descriptor_counts() -> None:
    batch = Batch(tuple((command, 2 if isinstance(command, Attach) else 0) for command in EXAMPLE_COMMANDS))
    assert decode(encode(batch)) == batch


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Close("call", 1.0).at = 2.0  # type: ignore[misc]


def test_the_worker_has_a_handler_for_every_command() -> None:
    assert set(_HANDLERS) == set(COMMANDS)


def test_the_daemon_has_a_handler_for_every_report() -> None:
    assert set(_REPORT_HANDLERS) == set(REPORTS)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def worker(tmp_path: Path) -> Any:
    control, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    loop = WorkerLoop(control, native=False)
    yield loop, daemon
    loop.recordings.abort_all()
    loop.receiver.close()
    control.close()
    daemon.close()


@pytest.mark.parametrize(
    "message",
    [("attach", "call", 40000), {"op": "stop"}, Ready(), "stop"],
    ids=["old-tuple", "dict", "a-report", "a-string"],
)
def test_an_unknown_command_is_reported_and_dropped(worker: Any, message: object) -> None:
    """Sent over the real command socket with a descriptor riding along: the worker answers with
    an error, closes the descriptor, keeps running and takes the next command."""
    loop, daemon = worker
    spare = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    before = _open_fds()
    socket.send_fds(daemon, [pickle.dumps(message)], [spare.fileno()])
    spare.close()
    loop._commands()
    reply = decode(daemon.recv(1 << 16))
    assert isinstance(reply, Error) and "unknown command" in reply.error
    assert loop.running
    assert _open_fds() == before - 1  # the worker's copy is closed too, not leaked
    daemon.send(encode(PollActivity()))
    loop._commands()
    assert isinstance(decode(daemon.recv(1 << 16)), ActivityReport)
    daemon.send(encode(Stop()))
    loop._commands()
    assert not loop.running


def test_an_unknown_command_inside_a_batch_does_not_drop_the_rest(worker: Any, tmp_path: Path) -> None:
    loop, daemon = worker
    path = tmp_path / "call.wav"
    stray: Any = ("open", "x")
    batch = Batch(((stray, 0), (OpenRecording("call", RecorderSpec(str(path), 1.0)), 0)))
    daemon.send(encode(batch))
    loop._commands()
    reply = decode(daemon.recv(1 << 16))
    assert isinstance(reply, Error) and "tuple" in reply.error
    assert "call" in loop.recordings.recordings


def test_an_attach_without_its_descriptors_is_an_error_not_a_crash(worker: Any) -> None:
    loop, daemon = worker
    daemon.send(encode(Attach("call", 40000)))
    loop._commands()
    reply = decode(daemon.recv(1 << 16))
    assert isinstance(reply, Error) and "descriptors" in reply.error
    assert 40000 not in loop.by_port and loop.running


def test_undecodable_bytes_are_reported(worker: Any) -> None:
    loop, daemon = worker
    daemon.send(b"\x80\x05not a pickle")
    loop._commands()
    assert isinstance(decode(daemon.recv(1 << 16)), Error)
    assert loop.running


class _Log:
    def __init__(self) -> None:
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append((event, fields))


class _Peer:
    """The daemon's end of one worker's socket pair (what :meth:`WorkerPlane._on_readable` reads)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.index = 0


def test_the_daemon_logs_and_drops_an_unknown_report() -> None:
    log = _Log()
    plane = WorkerPlane(log=log)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        plane._kept["call"] = _Kept(RecorderSpec("/rec/call.wav", 0.0))
        theirs.send(pickle.dumps(("counters", {"call": {40000: (9, 9)}})))
        theirs.send(b"garbage")
        theirs.send(encode(Counters({"call": {40000: (5, 1)}})))
        plane._on_readable(_Peer(ours))  # type: ignore[arg-type]
        assert [event for event, _ in log.errors] == ["media_worker_error", "media_worker_error"]
        assert "unknown report tuple" in log.errors[0][1]["error"]
        assert "undecodable" in log.errors[1][1]["error"]
        # the report after them was still taken
        assert plane.packets_received("call", 40000) == 5
        assert plane.packets_lost("call", 40000) == 1
    finally:
        ours.close()
        theirs.close()
