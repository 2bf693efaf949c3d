"""SIP over UDP, TCP and TLS: the only place SIP bytes meet sockets.

Every received message goes to one callback with its source, transport and
the local address it arrived on (for Contact and SDP); the sans-IO user agent
decides the rest.  Responses and requests leave through :meth:`SipEdge.send`:
UDP from the listener of the destination's family, TCP/TLS on the connection
the peer opened (or a new one when it is gone).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

from srs.config import HostPort
from srs.errors import ListenError, ParseError
from srs.sip.framing import StreamFramer
from srs.sip.routing import Address, Outgoing, Transport

MessageHandler = Callable[[bytes, Address, Transport, Address], None]
_WILDCARDS = ("0.0.0.0", "::", "")


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


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, edge: SipEdge, bound: Address) -> None:
        self.edge = edge
        self.bound = bound
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's class is not a subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        peer = _address(addr)
        if data.strip(b"\r\n") == b"":
            return  # keep-alive
        self.edge.handler(data, peer, Transport.UDP, self.edge.local.for_peer(self.bound, peer))

    def error_received(self, exc: Exception) -> None:
        self.edge.counters["udp_errors"] += 1


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
        messages, error = self.framer.feed_until_error(data)
        pongs = self.framer.take_pongs()
        if pongs:
            self.write(pongs)  # RFC 5626 §4.4.1: CRLF answers a double-CRLF ping
        for message in messages:
            self.edge.handler(message, self.peer, self.kind, self.local)
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
    ) -> None:
        self.handler = handler
        self.max_message_size = max_message_size
        self.local = _LocalAddressGuess(advertised_host)
        self.connections: dict[tuple[Transport, Address], _StreamProtocol] = {}
        self.counters = {"udp_errors": 0, "stream_errors": 0, "send_errors": 0}
        self._udp: list[_UdpProtocol] = []
        self._udp_sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._stream_error_handler = on_stream_error
        self._client_ssl: ssl.SSLContext | None = None
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
                protocol = _UdpProtocol(self, bound)
                await loop.create_datagram_endpoint(lambda p=protocol: p, sock=sock)  # type: ignore[misc]
                self._udp.append(protocol)
            else:
                assert kind is Transport.TCP or server_ssl is not None
                server = await loop.create_server(
                    lambda k=kind: _StreamProtocol(self, k),  # type: ignore[misc]
                    sock=sock,
                    ssl=server_ssl if kind is Transport.TLS else None,
                )
                self._servers.append(server)
            self.bound.append((kind, bound))
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
        for protocol in self._udp:
            if (":" in protocol.bound.host) == want_v6 and protocol.transport is not None:
                protocol.transport.sendto(
                    outgoing.data, (outgoing.destination.host, outgoing.destination.port)
                )
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
        for _, sock in self._bound_sockets:
            sock.close()
        self._bound_sockets = []
        self._udp_sockets.clear()
        for protocol in self._udp:
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
