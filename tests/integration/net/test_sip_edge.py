"""The SIP edge on real loopback sockets, driving a real SiprecUserAgent (RFC 3261 §18, RFC 5626 §4.4.1).

Everything binds to port 0 on 127.0.0.1 / ::1 and every wait is bounded, so
the tests run anywhere and never hang.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from srs.config import HostPort
from srs.errors import ParseError
from srs.net.sip_edge import SipEdge
from srs.sip.framing import StreamFramer
from srs.sip.message import Response, parse_message
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.events import SessionOffered, UaEvent
from tests.unit.siprec.sbc import invite, make_ua, multipart, request, sdp

pytestmark = pytest.mark.timeout(30)
WAIT = 5.0


class WiredAgent:
    """What the daemon does, minus recording: the edge feeds the user agent, its events go back out."""

    def __init__(self, max_message_size: int = 65535) -> None:
        self.ua = make_ua()
        self.edge = SipEdge(
            self.on_sip, max_message_size=max_message_size, on_stream_error=self.on_stream_error
        )
        self.received: list[tuple[bytes, Address, Transport, Address]] = []
        self.stream_errors: list[ParseError] = []
        self.arrivals: list[float] = []
        self._next_port = 30000

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def on_sip(
        self, data: bytes, source: Address, transport: Transport, local: Address, arrival: float
    ) -> None:
        self.received.append((data, source, transport, local))
        self.arrivals.append(arrival)
        self.handle(self.ua.receive(data, source, transport, local, arrival))

    def on_stream_error(
        self, head: bytes, peer: Address, kind: Transport, local: Address, exc: ParseError
    ) -> None:
        self.stream_errors.append(exc)
        self.handle(self.ua.answer_unframeable(head, exc, peer, kind, local, self.now()))

    def handle(self, events: list[UaEvent]) -> None:
        for event in events:
            if isinstance(event, Outgoing):
                self.edge.send(event)
            elif isinstance(event, SessionOffered):
                ports = [self._next_port + 2 * i for i in range(event.ports_needed)]
                self._next_port += 2 * event.ports_needed
                self.handle(self.ua.accept(event.session_id, ports, self.now()))

    def address(self, transport: Transport, v6: bool = False) -> Address:
        for kind, address in self.edge.bound:
            if kind is transport and (":" in address.host) == v6:
                return address
        raise AssertionError(f"no {transport} listener")


def run(
    scenario: Callable[[WiredAgent], Awaitable[None]],
    *,
    max_message_size: int = 65535,
    tls: ssl.SSLContext | None = None,
) -> WiredAgent:
    async def main() -> WiredAgent:
        agent = WiredAgent(max_message_size)
        listen = [HostPort("127.0.0.1", 0)]
        if ipv6_available():
            listen.append(HostPort("::1", 0))
        if tls is not None:
            await agent.edge.start(listen, [HostPort("127.0.0.1", 0)], tls)
        else:
            await agent.edge.start(listen)
        try:
            await asyncio.wait_for(scenario(agent), WAIT * 3)
        finally:
            agent.edge.close()
            await asyncio.sleep(0)
        return agent

    return asyncio.run(main())


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def options(branch: str, *, transport: str = "UDP", call_id: str = "opt@sbc") -> bytes:
    return request("OPTIONS", branch=branch, via_transport=transport, call_id=call_id, contact=None)


async def udp_exchange(address: Address, data: bytes, want: int) -> list[Response]:
    """Send one datagram, collect ``want`` response datagrams."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((address.host, 0))
        await loop.sock_sendto(sock, data, (address.host, address.port))
        answers: list[Response] = []
        while len(answers) < want:
            payload = await asyncio.wait_for(loop.sock_recv(sock, 65535), WAIT)
            message = parse_message(payload)
            assert isinstance(message, Response)
            answers.append(message)
        return answers


async def read_responses(reader: asyncio.StreamReader, want: int) -> list[Response]:
    framer = StreamFramer()
    answers: list[Response] = []
    while len(answers) < want:
        chunk = await asyncio.wait_for(reader.read(65535), WAIT)
        assert chunk, f"connection closed after {len(answers)} of {want} responses"
        for data in framer.feed(chunk):
            message = parse_message(data)
            assert isinstance(message, Response)
            answers.append(message)
    return answers


async def closed_by_peer(reader: asyncio.StreamReader) -> bytes:
    """Everything left on the connection until the server closes it."""
    return await asyncio.wait_for(reader.read(), WAIT)


# ---------------------------------------------------------------------------------------------


def big_invite(transport: str = "UDP") -> bytes:
    streams = "".join(
        f"m=audio {40000 + 2 * i} RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
        f"a=label:{i}\na=sendonly\na=x-padding:{'p' * 700}\n"
        for i in range(8)  # the per-call stream bound; the padding keeps it above 6 KB
    )
    content = multipart(("application/sdp", sdp(streams)))
    data = invite(content=content, via_transport=transport, call_id="big@sbc")
    assert len(data) > 6000
    return data


def test_udp_6kb_invite_gets_100_and_200() -> None:
    async def scenario(agent: WiredAgent) -> None:
        answers = await udp_exchange(agent.address(Transport.UDP), big_invite(), want=2)
        assert [a.status for a in answers] == [100, 200]
        assert answers[1].body.count(b"m=audio") == 8

    run(scenario)


def test_udp_over_ipv6_listener() -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback")

    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.UDP, v6=True)
        (answer,) = await udp_exchange(address, options("z9hG4bKv6"), want=1)
        assert answer.status == 200
        _, source, transport, local = agent.received[-1]
        assert transport is Transport.UDP and source.host == "::1" and local.host == "::1"

    run(scenario)


def test_tcp_over_ipv6_listener() -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback")

    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP, v6=True)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(options("z9hG4bKv6t", transport="TCP"))
        (answer,) = await read_responses(reader, 1)
        assert answer.status == 200
        writer.close()

    run(scenario)


def test_tcp_several_messages_in_one_segment() -> None:
    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(b"".join(options(f"z9hG4bKseg{i}", transport="TCP") for i in range(3)))
        answers = await read_responses(reader, 3)
        assert [a.status for a in answers] == [200, 200, 200]
        assert [a.top_via.branch for a in answers] == ["z9hG4bKseg0", "z9hG4bKseg1", "z9hG4bKseg2"]
        writer.close()

    run(scenario)


def test_tcp_message_byte_by_byte() -> None:
    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = big_invite("TCP")
        for index in range(len(data)):
            writer.write(data[index : index + 1])
            if index % 64 == 0:
                await writer.drain()
                await asyncio.sleep(0)
        answers = await read_responses(reader, 2)
        assert [a.status for a in answers] == [100, 200]
        assert len(agent.received) == 1
        writer.close()

    run(scenario)


def test_tcp_keepalive_ping_gets_a_pong() -> None:
    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
        writer.close()

    run(scenario)


def test_garbage_closes_only_its_own_connection() -> None:
    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP)
        bad_reader, bad_writer = await asyncio.open_connection(address.host, address.port)
        good_reader, good_writer = await asyncio.open_connection(address.host, address.port)
        # a good message, then one without Content-Length: the first is still answered
        bad_writer.write(
            options("z9hG4bKfirst", transport="TCP") + b"GARBAGE sip:x SIP/2.0\r\nFoo: bar\r\n\r\n"
        )
        (first,) = await read_responses(bad_reader, 1)
        assert first.status == 200
        assert await closed_by_peer(bad_reader) == b""
        good_writer.write(options("z9hG4bKgood", transport="TCP"))
        (answer,) = await read_responses(good_reader, 1)
        assert answer.status == 200
        good_writer.close()
        bad_writer.close()

    agent = run(scenario)
    assert len(agent.stream_errors) == 1 and agent.edge.counters["stream_errors"] == 1


def test_oversize_on_tcp_gets_513_then_close() -> None:
    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TCP)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        head = invite(via_transport="TCP", content=None).replace(
            b"Content-Length: 0", b"Content-Length: 100000"
        )
        writer.write(head)
        rest = await closed_by_peer(reader)
        framer = StreamFramer()
        (data,) = framer.feed(rest)
        response = parse_message(data)
        assert isinstance(response, Response)
        assert response.status == 513 and response.cseq.method == "INVITE"
        writer.close()

    agent = run(scenario, max_message_size=8192)
    assert agent.ua.active_sessions == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def test_options_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False

    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.TLS)
        reader, writer = await asyncio.open_connection(address.host, address.port, ssl=client)
        writer.write(options("z9hG4bKtls", transport="TLS"))
        (answer,) = await read_responses(reader, 1)
        assert answer.status == 200 and "siprec" in (answer.headers.get("supported") or "")
        assert agent.received[-1][2] is Transport.TLS
        writer.close()

    run(scenario, tls=server)


def test_udp_backlog_counts_what_waits_unread_in_the_kernel() -> None:
    """Datagrams sent while the loop is busy stay in the socket: the edge reports their bytes, and
    nothing once the loop has read them."""

    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.UDP)
        assert agent.edge.udp_backlog() == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(20):  # no await: the loop cannot read any of them yet
                sock.sendto(options(f"z9hG4bKbacklog{i}"), (address.host, address.port))
            queued = agent.edge.udp_backlog()
            assert queued is not None and queued >= 20 * len(options("z9hG4bKbacklog0"))
        deadline = asyncio.get_running_loop().time() + WAIT
        while len(agent.received) < 20:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert agent.edge.udp_backlog() == 0

    run(scenario)


def test_a_udp_message_read_late_keeps_its_kernel_arrival() -> None:
    """The loop held up for 300 ms while a request waits in the socket: the user agent is told when
    it arrived (a BYE ends its recording there), not when the loop got round to reading it."""

    async def scenario(agent: WiredAgent) -> None:
        address = agent.address(Transport.UDP)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            before = time.monotonic()
            sock.sendto(options("z9hG4bKlate"), (address.host, address.port))
            after = time.monotonic()
            time.sleep(0.3)  # no await: the loop cannot read it yet
            deadline = time.monotonic() + WAIT
            while not agent.received:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        (arrival,) = agent.arrivals
        assert before - 0.0005 <= arrival <= after + 0.0005, (before, arrival, after)

    run(scenario)
