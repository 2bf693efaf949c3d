"""Event dispatch: a table with a handler for every event the user agent and the media watch emit,
and a call driven through it (real user agent, real SIP edge on loopback, real SQLite index, a
media plane that records what it is asked)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import srs_codecs

import srs.mediaplane.watch as watch_events
import srs.siprec.events as ua_events
from srs.config import HostPort
from srs.daemon.alerts import MediaAlerts
from srs.daemon.dispatch import Dispatcher
from srs.daemon.live_info import CallDirectory
from srs.daemon.logs import get_logger
from srs.daemon.metrics import DaemonMetrics
from srs.daemon.publish import Publisher
from srs.daemon.recordings import LiveRecordings, MediaOptions
from srs.mediaplane.inprocess import RtpReceiver
from srs.mediaplane.ports import PortAllocator
from srs.mediaplane.watch import RtpTimeout
from srs.net.sip_edge import SipEdge
from srs.service.live_hub import LiveHub
from srs.service.live_push import LivePusher
from srs.sip.message import Request, Response, parse_message
from srs.sip.routing import Address, Transport
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter
from tests.unit.daemon.fakes import FakePlane, stats
from tests.unit.siprec.sbc import ack_for, invite, make_ua, request

LOOPBACK = "127.0.0.1"


def ua_event_types() -> set[type]:
    """Every class the user agent's event module defines, and every member of its union."""
    defined = {
        cls
        for _, cls in inspect.getmembers(ua_events, inspect.isclass)
        if cls.__module__ == ua_events.__name__
    }
    return defined | set(typing.get_args(ua_events.UaEvent))


def test_every_user_agent_event_has_a_handler() -> None:
    kinds = ua_event_types()
    assert len(kinds) >= 8  # the seven session events and Outgoing: the derivation found them
    missing = kinds - set(Dispatcher.ua_event_types())
    assert not missing, f"no handler for {sorted(k.__name__ for k in missing)}"


def test_every_media_watch_event_has_a_handler() -> None:
    kinds = set(typing.get_args(watch_events.WatchEvent))
    assert {k.__name__ for k in kinds} >= {"NoMedia", "SourceChanged", "RtpTimeout"}
    missing = kinds - set(Dispatcher.media_event_types())
    assert not missing, f"no handler for {sorted(k.__name__ for k in missing)}"


@dataclass
class Rig:
    dispatcher: Dispatcher
    plane: FakePlane
    index: RecordingIndex
    sbc: socket.socket
    local: Address
    announced: list[tuple[str, str]]
    metrics: DaemonMetrics

    @property
    def sbc_address(self) -> Address:
        host, port = self.sbc.getsockname()
        return Address(host, port)

    def send(self, data: bytes) -> None:
        ua = self.dispatcher.ua
        now = time.monotonic()
        self.dispatcher.handle(ua.receive(data, self.sbc_address, Transport.UDP, self.local, now))

    async def receive(self) -> Response | Request:
        """The next message srs sent the SBC, as read from the SBC's socket."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sbc, 65536), 5.0)
        return parse_message(data)

    async def response(self, status: int) -> Response:
        while True:
            message = await self.receive()
            if isinstance(message, Response) and message.status == status:
                return message


@contextlib.asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    index = RecordingIndex(layout.index_path, layout=layout, node="rec-1")
    plane = FakePlane(streams=(stats("1"), stats("2", packets_late=3)))
    live = LiveRecordings(
        index=index, layout=layout, allocator=PortAllocator(41000, 41020, LOOPBACK),
        receiver=RtpReceiver(loop), decoder_factory=srs_codecs.get_decoder, options=MediaOptions(),
        plane=plane, write_behind=False,
    )
    log = get_logger("test")
    edge = SipEdge(lambda *args: None)
    await edge.start([HostPort(LOOPBACK, 0)])
    local = next(address for kind, address in edge.bound if kind is Transport.UDP)
    metrics = DaemonMetrics()
    announced: list[tuple[str, str]] = []
    calls = CallDirectory(live.sessions)
    hub = LiveHub(describe=calls.describe, subscribe=plane.live_subscribe, registry=metrics.registry)
    pusher = LivePusher([], hub, log=log)
    alerts = MediaAlerts(metrics, log, lambda event, recording, details: announced.append((event, recording)))
    publisher = Publisher(
        live=live, metrics=metrics, log=log, alerts=alerts, announce=alerts.announce, uploader=None,
        data_dir=layout.data_dir,
    )
    dispatcher = Dispatcher(
        loop=loop, ua=make_ua(), edge=edge, live=live, metrics=metrics, log=log, disk_low=lambda: False,
        announce=alerts.announce, alerts=alerts, publisher=publisher, calls=calls, hub=hub, pusher=pusher,
    )
    sbc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sbc.bind((LOOPBACK, 0))
    sbc.setblocking(False)
    try:
        yield Rig(dispatcher, plane, index, sbc, local, announced, metrics)
    finally:
        sbc.close()
        await pusher.stop()
        edge.close()
        index.close()


def loopback_invite(rig: Rig, call_id: str) -> bytes:
    """The SBC's INVITE, its Contact on loopback so that in-dialog requests stay on this host."""
    host, port = rig.sbc.getsockname()
    branch = "z9hG4bK" + call_id.replace("@", "-")
    return invite(call_id=call_id, branch=branch, contact=f"<sip:sbc@{host}:{port}>")


async def establish(rig: Rig, call_id: str) -> Response:
    rig.send(loopback_invite(rig, call_id))
    ok = await rig.response(200)
    host, port = rig.sbc.getsockname()
    rig.send(ack_for(ok, call_id=call_id, contact=f"<sip:sbc@{host}:{port}>"))
    return ok


async def a_call_is_recorded_and_published(rig: Rig) -> None:
    ok = await establish(rig, "call-a@sbc")
    assert rig.plane.names().count("attach") == 2 and rig.plane.names().count("set_stream") == 2
    assert "open" in rig.plane.names()
    (session,) = rig.dispatcher.live.sessions.values()
    rig.send(request("BYE", call_id="call-a@sbc", branch="z9hG4bKbye1", cseq=2, to_tag=ok.to_addr.tag))
    assert (await rig.response(200)).cseq.method == "BYE"
    await rig.dispatcher.publisher.drain()
    row = rig.index.get(session.recording_id)
    assert row is not None
    assert (row["state"], row["duration_ms"]) == ("available", 1000)
    assert row["sha256"] and Path(row["file_path"]).exists()
    assert rig.announced == [
        ("recording_started", session.recording_id),
        ("recording_finished", session.recording_id),
        ("recording_available", session.recording_id),
    ]
    assert rig.metrics.registry.get_sample_value("srs_rtp_packets_dropped_total") == 3


async def an_rtp_timeout_hangs_the_call_up(rig: Rig) -> None:
    await establish(rig, "call-b@sbc")
    (key,) = rig.dispatcher.live.sessions
    rig.dispatcher.on_media([RtpTimeout(key, 61.0, 60.0)])
    bye = await rig.receive()
    assert isinstance(bye, Request) and bye.method == "BYE"


async def a_new_call_is_refused_while_the_disk_is_low(rig: Rig) -> None:
    rig.dispatcher.disk_low = lambda: True
    rig.send(loopback_invite(rig, "call-c@sbc"))
    refused = await rig.response(503)
    assert refused.headers.get("retry-after") == "60"
    assert rig.plane.calls == [] and not rig.dispatcher.live.sessions


async def a_recording_that_cannot_open_its_file_ends_that_call_only(rig: Rig) -> None:
    rig.plane.open_error = OSError(28, "No space left on device")
    await establish(rig, "call-d@sbc")
    await rig.dispatcher.publisher.drain()
    (row,) = rig.index.find(RecordingFilter()).items
    reason = "recording failed: [Errno 28] No space left on device"
    assert (row["state"], row["incomplete_reason"]) == ("failed", reason)
    assert not rig.dispatcher.live.sessions
    rig.plane.open_error = None
    await establish(rig, "call-d2@sbc")  # the next call is recorded: one failure ended one call
    (session,) = rig.dispatcher.live.sessions.values()
    assert session.opened


async def a_write_failure_at_flush_hangs_the_call_up(rig: Rig) -> None:
    await establish(rig, "call-e@sbc")
    (key,) = rig.dispatcher.live.sessions
    rig.plane.failing = {key}
    flushing = asyncio.get_running_loop().create_task(rig.dispatcher.flush_loop(0.01))
    try:
        bye = await rig.receive()
    finally:
        flushing.cancel()
    assert isinstance(bye, Request) and bye.method == "BYE"
    await rig.dispatcher.publisher.drain()
    (row,) = rig.index.find(RecordingFilter()).items
    assert (row["state"], row["incomplete_reason"]) == ("failed", "write failed")
    assert ("abort", key) in rig.plane.calls and ("close", key) not in rig.plane.calls


@pytest.mark.parametrize(
    "scenario",
    [
        a_recording_that_cannot_open_its_file_ends_that_call_only,
        a_write_failure_at_flush_hangs_the_call_up,
        a_call_is_recorded_and_published,
        an_rtp_timeout_hangs_the_call_up,
        a_new_call_is_refused_while_the_disk_is_low,
    ],
    ids=lambda scenario: scenario.__name__,
)
def test_through_the_dispatcher(tmp_path: Path, scenario: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        async with started(tmp_path) as rig:
            await scenario(rig)

    asyncio.run(main())
