"""SIP over UDP, TCP and TLS: the only place SIP bytes meet sockets.

Every received message goes to one callback with its source, transport, the
local address it arrived on (for Contact and SDP) and its arrival time; the
sans-IO user agent decides the rest.  A UDP datagram's arrival is the kernel's
receive stamp (:mod:`srs.mediaplane.wire_clock`), so a BYE that waited in the socket while
the loop was busy still ends its recording where it arrived; the UDP listeners
are therefore read with ``recvmsg`` by the edge's own readers (an asyncio
datagram transport does not hand over ancillary data).  TCP/TLS messages are
stamped when the loop reads them.  Responses and requests leave through :meth:`SipEdge.send`:
UDP from the listener of the destination's family, TCP/TLS on the connection
the peer opened (or a new one to the same host when it is gone and the
Outgoing names where, see :func:`srs.sip.routing.reconnect_address`).

Stream connections are bounded (:mod:`srs.net.stream_limits`): a source the ACL
refuses, or one over its share of connections, is closed at accept before a byte
is read; TLS listeners are accepted by hand and the handshake starts only after
that check, so a refused source never gets a handshake either.  A periodic sweep
closes connections whose message stays incomplete or that stay silent too long.
Outgoing TLS verifies the peer with the client context the composition root gives.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from srs.config import HostPort
from srs.errors import ListenError, ParseError
from srs.mediaplane.wire_clock import (
    ANCILLARY_SIZE,
    enable_timestamps,
    realtime_offset,
    stamp_of,
    to_monotonic,
)
from srs.net.stream_limits import ConnectionTable, StreamClock, StreamLimits
from srs.sip.framing import StreamFramer
from srs.sip.routing import Address, Outgoing, Transport

MessageHandler = Callable[[bytes, Address, Transport, Address, float], None]
"""``(data, source, transport, local address, arrival)``; arrival on the monotonic clock."""
LimitHandler = Callable[[str, Address], None]
"""Told each time a bound closes or turns away a connection: the limit's name and the peer."""
_WILDCARDS = ("0.0.0.0", "::", "")
_READS_PER_WAKEUP = 64
"""Datagrams one readiness callback takes before yielding to the rest of the loop."""
_MAX_UNSENT = 1024
"""Datagrams kept while a UDP socket's send buffer is full; more are counted as send errors."""


def _address(peer: Any) -> Address:
    return Address(str(peer[0]), int(peer[1]))


_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_LISTEN_BACKLOG = 512


def _bind(hp: HostPort, kind: socket.SocketKind, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT after a restart
        sock.bind((hp.host, hp.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(what, str(hp), exc) from None
    return sock



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

    def __init__(
        self, edge: SipEdge, kind: Transport, *, outbound: bool = False, admitted: bool = False
    ) -> None:
        """``outbound``: srs opened it; ``admitted``: the TLS accept loop already checked and
        counted it (before the handshake)."""
        self.edge = edge
        self.kind = kind
        self.outbound = outbound
        self.admitted = admitted
        self.framer = StreamFramer(edge.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = Address("", 0)
        self.local = Address("", 0)
        self.failed = False
        self.registered = False
        self.clock = StreamClock(0.0, None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        edge = self.edge
        if not self.outbound and not self.admitted:
            refusal = edge.table.refusal(self.peer.host)
            if refusal is not None:
                self.failed = True
                transport.abort()  # type: ignore[attr-defined]  # nothing read, nothing buffered
                edge.limit_reached(refusal, self.peer)
                return
        now = asyncio.get_running_loop().time()
        self.clock = StreamClock(now, None if self.outbound else now)
        if not self.admitted:
            edge.table.opened(self.peer.host)
        self.registered = True
        edge.connections[(self.kind, self.peer)] = self

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return  # closing: the rest of a broken stream means nothing
        arrival = self.edge.clock()
        messages, error = self.framer.feed_until_error(data)
        self.clock.received(
            asyncio.get_running_loop().time(), framed=bool(messages), buffered=self.framer.buffered
        )
        pongs = self.framer.take_pongs()
        if pongs:
            self.write(pongs)  # RFC 5626 §4.4.1: CRLF answers a double-CRLF ping
        for message in messages:
            self.edge.handler(message, self.peer, self.kind, self.local, arrival)
        if error is not None:
            self.failed = True
            self.edge.counters["stream_errors"] += 1
            self.edge.on_stream_error(self, error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.registered:
            self.registered = False
            self.edge.table.closed(self.peer.host)
        if self.edge.connections.get((self.kind, self.peer)) is self:
            del self.edge.connections[(self.kind, self.peer)]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop at once, unsent data included: a peer that stalls gets no graceful close."""
        self.failed = True
        if self.transport is not None:
            self.transport.abort()


class SipEdge:
    """Listeners and senders for SIP; owns no protocol logic."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        max_message_size: int = 65535,
        advertised_host: str = "",
        on_stream_error: Callable[[bytes, Address, Transport, Address, ParseError], None] | None = None,
        allows: Callable[[str], bool] | None = None,
        stream_limits: StreamLimits | None = None,
        on_limit: LimitHandler | None = None,
        client_ssl: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``allows`` is the source ACL (applied at accept to streams); ``client_ssl`` the context
        for connections srs opens over TLS (a verifying default one when None)."""
        self.handler = handler
        self.clock = clock
        """The monotonic clock kernel stamps are bounded by (and stream messages are stamped with)."""
        self.max_message_size = max_message_size
        self.local = _LocalAddressGuess(advertised_host)
        self.connections: dict[tuple[Transport, Address], _StreamProtocol] = {}
        self.limits = stream_limits if stream_limits is not None else StreamLimits()
        self.table = ConnectionTable(self.limits, allows)
        self._on_limit = on_limit
        self._sweeper: asyncio.Task[None] | None = None
        self._tls_tasks: set[asyncio.Task[None]] = set()
        self._tls_listeners: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self.counters = {"udp_errors": 0, "stream_errors": 0, "send_errors": 0, "tls_handshake_failures": 0}
        self._udp: list[_UdpListener] = []
        self._udp_sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._stream_error_handler = on_stream_error
        self._client_ssl = client_ssl if client_ssl is not None else ssl.create_default_context()
        self.bound: list[tuple[Transport, Address]] = []
        self._bound_sockets: list[tuple[Transport, socket.socket]] = []

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

    def bind(self, listen: Sequence[HostPort], tls_listen: Sequence[HostPort] = ()) -> None:
        """Bind every listener now, before the daemon touches its data: a taken or forbidden
        address is a :class:`ListenError` naming it. The kernel queues what arrives until
        :meth:`start` attaches the sockets to the event loop.

        UDP listeners do not set ``SO_REUSEADDR``: on Linux it lets a second process bind the same
        UDP port and silently take half of the SIP traffic.
        """
        if self._bound_sockets:
            return
        made: list[tuple[Transport, socket.socket]] = []
        try:
            for hp in listen:
                made.append((Transport.UDP, _bind(hp, socket.SOCK_DGRAM, "SIP UDP")))
                made.append((Transport.TCP, _bind(hp, socket.SOCK_STREAM, "SIP TCP")))
            for hp in tls_listen:
                made.append((Transport.TLS, _bind(hp, socket.SOCK_STREAM, "SIP TLS")))
        except BaseException:
            for _, sock in made:
                sock.close()
            raise
        self._bound_sockets = made

    async def start(
        self,
        listen: Sequence[HostPort],
        tls_listen: Sequence[HostPort] = (),
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.bind(listen, tls_listen)
        sockets, self._bound_sockets = self._bound_sockets, []
        for kind, sock in sockets:
            bound = _address(sock.getsockname())
            if kind is Transport.UDP:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                self._udp_sockets.append(sock)
                listener = _UdpListener(self, sock, bound)
                listener.start(loop)
                self._udp.append(listener)
            elif kind is Transport.TCP:
                server = await loop.create_server(lambda: _StreamProtocol(self, Transport.TCP), sock=sock)
                self._servers.append(server)
            else:
                assert server_ssl is not None
                self._tls_listeners.append(sock)
                self._acceptors.append(loop.create_task(self._accept_tls(sock, server_ssl)))
            self.bound.append((kind, bound))
        self._sweeper = loop.create_task(self._sweep())

    def limit_reached(self, limit: str, peer: Address) -> None:
        self.counters[f"limit_{limit}"] = self.counters.get(f"limit_{limit}", 0) + 1
        if self._on_limit is not None:
            self._on_limit(limit, peer)

    async def _accept_tls(self, listener: socket.socket, server_ssl: ssl.SSLContext) -> None:
        """Accept TLS connections by hand: the source is checked and counted before the handshake
        (a listener with ``ssl=`` would shake hands with anyone first), then each handshake runs
        in its own task, bounded by the header timeout."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.1)  # out of descriptors: let the others close
                continue
            address = _address(peer)
            refusal = self.table.refusal(address.host)
            if refusal is not None:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # reset: nothing read, no handshake
                self.limit_reached(refusal, address)
                continue
            self.table.opened(address.host)
            task = loop.create_task(self._handshake(conn, address, server_ssl))
            self._tls_tasks.add(task)
            task.add_done_callback(self._tls_tasks.discard)

    async def _handshake(self, conn: socket.socket, peer: Address, server_ssl: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _StreamProtocol(self, Transport.TLS, admitted=True),
                conn,
                ssl=server_ssl,
                ssl_handshake_timeout=self.limits.header_timeout or None,
            )
        except (OSError, TimeoutError, asyncio.CancelledError):  # ssl.SSLError is an OSError
            self.counters["tls_handshake_failures"] += 1
            self.table.closed(peer.host)
            conn.close()

    async def _sweep(self) -> None:
        """Close stalled and silent connections; a pass every quarter of the header timeout (≤ 1 s)."""
        period = min(1.0, (self.limits.header_timeout or 4.0) / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in list(self.connections.values()):
                expired = connection.clock.expired(now, self.limits)
                if expired is not None:
                    connection.abort()
                    self.limit_reached(expired, connection.peer)

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
        """On the connection the peer opened; when it is gone, on one to ``reconnect`` (the same
        host at its listening port), never to a host that did not connect to srs."""
        connection = self.connections.get((outgoing.transport, outgoing.destination))
        if connection is None and outgoing.reconnect is not None:
            connection = self.connections.get((outgoing.transport, outgoing.reconnect))
        if connection is not None:
            connection.write(outgoing.data)  # a failing one still flushes its last answer
            return
        if outgoing.reconnect is None:
            self.counters["send_errors"] += 1
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(outgoing, outgoing.reconnect))

    async def _connect_and_send(self, outgoing: Outgoing, target: Address) -> None:
        loop = asyncio.get_running_loop()
        kind = outgoing.transport
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(self, kind, outbound=True),
                    target.host,
                    target.port,
                    ssl=self._client_ssl if kind is Transport.TLS else None,
                ),
                timeout=5,
            )
        except (TimeoutError, OSError):  # ssl.SSLError (an untrusted peer) is an OSError
            self.counters["send_errors"] += 1
            return
        protocol.write(outgoing.data)

    def close(self) -> None:
        for _, sock in self._bound_sockets:
            sock.close()
        self._bound_sockets = []
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in [*self._acceptors, *self._tls_tasks]:
            task.cancel()
        for listener in self._tls_listeners:
            listener.close()
        self._udp_sockets.clear()
        for udp in self._udp:
            udp.close()
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
