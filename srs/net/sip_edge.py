"""SIP over UDP, TCP and TLS: the only place SIP bytes meet sockets.

Every received message goes to one callback with its source, transport, the
local address it arrived on (for Contact and SDP) and its arrival time; the
sans-IO user agent decides the rest.  A UDP datagram's arrival is the kernel's
receive stamp (:mod:`srs.wire_clock`), so a BYE that waited in the socket while
the loop was busy still ends its recording where it arrived; the UDP listeners
are therefore read with ``recvmsg`` by the edge's own readers (an asyncio
datagram transport does not hand over ancillary data).  TCP/TLS messages are
stamped when the loop reads them.  Responses and requests leave through :meth:`SipEdge.send`:
UDP from the listener of the destination's family, TCP/TLS on the connection
the peer opened (or a new one when it is gone).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from srs.config import HostPort
from srs.errors import ParseError
from srs.sip.framing import StreamFramer
from srs.sip.routing import Address, Outgoing, Transport
from srs.wire_clock import ANCILLARY_SIZE, enable_timestamps, realtime_offset, stamp_of, to_monotonic

MessageHandler = Callable[[bytes, Address, Transport, Address, float], None]
"""``(data, source, transport, local address, arrival)``; arrival on the monotonic clock."""
_WILDCARDS = ("0.0.0.0", "::", "")
_READS_PER_WAKEUP = 64
"""Datagrams one readiness callback takes before yielding to the rest of the loop."""
_MAX_UNSENT = 1024
"""Datagrams kept while a UDP socket's send buffer is full; more are counted as send errors."""


def _address(peer: Any) -> Address:
    return Address(str(peer[0]), int(peer[1]))


_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)

class _LocalAddressGuess:
    """Which local address reaches a peer, for listeners bound to a wildcard address."""

    def __init__(self, advertised: str) -> None:
        self._advertised = advertised
        self._cache: dict[str, str] = {}

    def for_peer(self, bound: Address, peer: Address) -> Address:
        if bound.host not in _WILDCARDS:
            return bound
        if self._advertised:
            return Address(self._advertised, bound.port)
        host = self._cache.get(peer.host)
        if host is None:
            family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((peer.host, 9))
                    host = str(probe.getsockname()[0])
            except OSError:
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[peer.host] = host
        return Address(host, bound.port)


class _UdpListener:
    """One UDP listener read by the edge itself: each datagram with its kernel arrival stamp."""

    def __init__(self, edge: SipEdge, sock: socket.socket, bound: Address) -> None:
        self.edge = edge
        self.sock = sock
        self.bound = bound
        self.loop: asyncio.AbstractEventLoop | None = None
        self._unsent: collections.deque[tuple[bytes, tuple[str, int]]] = collections.deque()
        self._writing = False
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sock.setblocking(False)
        enable_timestamps(self.sock)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        size = self.edge.max_message_size
        clock = self.edge.clock
        offset = realtime_offset()
        read_at = clock()
        for _ in range(_READS_PER_WAKEUP):
            if self.closed:
                return
            try:
                data, ancdata, _flags, addr = recvmsg(size, ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error of an earlier send: counted, the queue goes on
                self.edge.counters["udp_errors"] += 1
                continue
            if data.strip(b"\r\n") == b"":
                continue  # keep-alive
            peer = _address(addr)
            arrival = to_monotonic(stamp_of(ancdata), offset, read_at)
            self.edge.handler(data, peer, Transport.UDP, self.edge.local.for_peer(self.bound, peer), arrival)

    def sendto(self, data: bytes, destination: tuple[str, int]) -> None:
        if self.closed:
            raise OSError("listener closed")
        if not self._unsent:
            try:
                self.sock.sendto(data, destination)
                return
            except (BlockingIOError, InterruptedError):
                pass
        if len(self._unsent) >= _MAX_UNSENT:
            raise OSError("send buffer full")
        self._unsent.append((data, destination))
        if not self._writing and self.loop is not None:
            self._writing = True
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        while self._unsent:
            data, destination = self._unsent[0]
            try:
                self.sock.sendto(data, destination)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.edge.counters["send_errors"] += 1
            self._unsent.popleft()
        self._stop_writing()

    def _stop_writing(self) -> None:
        if self._writing and self.loop is not None:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
            self._stop_writing()
        self._unsent.clear()
        self.sock.close()


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: framed by Content-Length, garbage closes only this connection.

    Messages framed before the garbage are still delivered; then the stream-error
    callback may answer (513/400 through :meth:`SipEdge.send`, which still finds
    this connection) and the connection is closed, flushing that answer first.
    """

    def __init__(self, edge: SipEdge, kind: Transport) -> None:
        self.edge = edge
        self.kind = kind
        self.framer = StreamFramer(edge.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = Address("", 0)
        self.local = Address("", 0)
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.edge.connections[(self.kind, self.peer)] = self

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return  # closing: the rest of a broken stream means nothing
        arrival = self.edge.clock()
        messages, error = self.framer.feed_until_error(data)
        pongs = self.framer.take_pongs()
        if pongs:
            self.write(pongs)  # RFC 5626 §4.4.1: CRLF answers a double-CRLF ping
        for message in messages:
            self.edge.handler(message, self.peer, self.kind, self.local, arrival)
        if error is not None:
            self.failed = True
            self.edge.counters["stream_errors"] += 1
            self.edge.on_stream_error(self, error)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.edge.connections.get((self.kind, self.peer)) is self:
            del self.edge.connections[(self.kind, self.peer)]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class SipEdge:
    """Listeners and senders for SIP; owns no protocol logic."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        max_message_size: int = 65535,
        advertised_host: str = "",
        on_stream_error: Callable[[bytes, Address, Transport, Address, ParseError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.clock = clock
        """The monotonic clock kernel stamps are bounded by (and stream messages are stamped with)."""
        self.max_message_size = max_message_size
        self.local = _LocalAddressGuess(advertised_host)
        self.connections: dict[tuple[Transport, Address], _StreamProtocol] = {}
        self.counters = {"udp_errors": 0, "stream_errors": 0, "send_errors": 0}
        self._udp: list[_UdpListener] = []
        self._udp_sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._stream_error_handler = on_stream_error
        self._client_ssl: ssl.SSLContext | None = None
        self.bound: list[tuple[Transport, Address]] = []

    def udp_backlog(self) -> int | None:
        """Bytes of SIP waiting unread in the kernel on the UDP listeners (``SO_MEMINFO``'s receive
        allocation, Linux); None where the kernel does not say. A backlog is work the event loop's
        lag cannot see yet: the datagrams are not in the process."""
        total = 0
        for sock in self._udp_sockets:
            try:
                info = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 64)
            except OSError:
                return None
            if len(info) < 4:
                return None
            total += int.from_bytes(info[:4], sys.byteorder)
        return total

    async def start(
        self,
        listen: Sequence[HostPort],
        tls_listen: Sequence[HostPort] = (),
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for hp in listen:
            family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            if family == socket.AF_INET6:
                udp_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp_sock.bind((hp.host, hp.port))
            self._udp_sockets.append(udp_sock)
            bound = _address(udp_sock.getsockname())
            listener = _UdpListener(self, udp_sock, bound)
            listener.start(loop)
            self._udp.append(listener)
            self.bound.append((Transport.UDP, bound))
            server = await loop.create_server(
                lambda: _StreamProtocol(self, Transport.TCP), hp.host, hp.port, reuse_address=True
            )
            self._servers.append(server)
            self.bound.append((Transport.TCP, _address(server.sockets[0].getsockname())))
        for hp in tls_listen:
            assert server_ssl is not None
            server = await loop.create_server(
                lambda: _StreamProtocol(self, Transport.TLS),
                hp.host,
                hp.port,
                ssl=server_ssl,
                reuse_address=True,
            )
            self._servers.append(server)
            self.bound.append((Transport.TLS, _address(server.sockets[0].getsockname())))
        self._client_ssl = ssl.create_default_context()
        self._client_ssl.check_hostname = False
        self._client_ssl.verify_mode = ssl.CERT_NONE

    def on_stream_error(self, connection: _StreamProtocol, exc: ParseError) -> None:
        if self._stream_error_handler is not None:
            self._stream_error_handler(
                self.framer_head(connection), connection.peer, connection.kind, connection.local, exc
            )

    @staticmethod
    def framer_head(connection: _StreamProtocol) -> bytes:
        return connection.framer.head

    def send(self, outgoing: Outgoing) -> None:
        try:
            if outgoing.transport is Transport.UDP:
                self._send_udp(outgoing)
            else:
                self._send_stream(outgoing)
        except OSError:
            self.counters["send_errors"] += 1

    def reply_on_connection(self, kind: Transport, peer: Address, data: bytes) -> None:
        connection = self.connections.get((kind, peer))
        if connection is not None:
            connection.write(data)

    def _send_udp(self, outgoing: Outgoing) -> None:
        want_v6 = ":" in outgoing.destination.host
        for listener in self._udp:
            if (":" in listener.bound.host) == want_v6 and not listener.closed:
                listener.sendto(outgoing.data, (outgoing.destination.host, outgoing.destination.port))
                return
        self.counters["send_errors"] += 1

    def _send_stream(self, outgoing: Outgoing) -> None:
        connection = self.connections.get((outgoing.transport, outgoing.destination))
        if connection is not None:
            connection.write(outgoing.data)
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(outgoing))

    async def _connect_and_send(self, outgoing: Outgoing) -> None:
        loop = asyncio.get_running_loop()
        kind = outgoing.transport
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(self, kind),
                    outgoing.destination.host,
                    outgoing.destination.port,
                    ssl=self._client_ssl if kind is Transport.TLS else None,
                ),
                timeout=5,
            )
        except (TimeoutError, OSError):
            self.counters["send_errors"] += 1
            return
        protocol.write(outgoing.data)

    def close(self) -> None:
        self._udp_sockets.clear()
        for listener in self._udp:
            listener.close()
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
