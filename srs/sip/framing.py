"""Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §4.4.1 keep-alives).

On a stream the Content-Length is the only way to find where a body ends, so it
is mandatory here; a message too large to buffer is refused before it is read.
"""

from __future__ import annotations

import re

from srs.errors import MessageTooLarge, SipParseError

# SIP-message = start-line *message-header CRLF [ message-body ]
# (the CRLF that closes the last header line plus the empty line; bare LF tolerated)
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")

# Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)

_PING = b"\r\n\r\n"
PONG = b"\r\n"


class StreamFramer:
    """Accumulates stream bytes and yields whole messages.

    A double-CRLF between messages is an RFC 5626 ping; each one increments
    ``pending_pongs`` and the edge answers with :meth:`take_pongs`. After an error
    the connection is beyond repair: the edge answers (513/400) and closes it.
    """

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self.pending_pongs = 0
        self._buffer = bytearray()
        self._scanned = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def take_pongs(self) -> bytes:
        """The bytes to send back for the pings seen so far (one CRLF each)."""
        pongs, self.pending_pongs = self.pending_pongs, 0
        return PONG * pongs

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            if not self._skip_keepalives():
                break
            message = self._next_message()
            if message is None:
                break
            messages.append(message)
        return messages

    def feed_until_error(self, data: bytes) -> tuple[list[bytes], SipParseError | None]:
        """Like :meth:`feed`, but the messages framed before an error are kept, not lost.

        Several messages can arrive in one segment with garbage after them; the
        good ones are still delivered and the error is returned next to them.
        """
        self._buffer += data
        messages: list[bytes] = []
        try:
            while self._skip_keepalives():
                message = self._next_message()
                if message is None:
                    break
                messages.append(message)
        except SipParseError as exc:
            return messages, exc
        return messages, None

    @property
    def head(self) -> bytes:
        """What is buffered of the message being framed (for answering it when framing fails)."""
        return bytes(self._buffer[:8192])

    def _skip_keepalives(self) -> bool:
        """Drop CR/LF between messages; False when the buffer may still become a ping."""
        buffer = self._buffer
        while bytes(buffer[:1]) in (b"\r", b"\n"):
            if buffer.startswith(_PING):
                self.pending_pongs += 1
                del buffer[:4]
                continue
            if len(buffer) < 4 and _PING.startswith(bytes(buffer)):
                return False
            del buffer[: 2 if buffer.startswith(b"\r\n") else 1]
        self._scanned = min(self._scanned, len(buffer))
        return bool(buffer)

    def _next_message(self) -> bytes | None:
        buffer = self._buffer
        end = _HEADER_END_RE.search(buffer, max(0, self._scanned - 3))
        if end is None:
            self._scanned = len(buffer)
            if len(buffer) > self.max_message_size:
                raise MessageTooLarge(f"headers exceed {self.max_message_size} bytes")
            return None
        head = bytes(buffer[: end.start()])
        lengths = _CONTENT_LENGTH_RE.findall(head)
        if not lengths:
            raise SipParseError("Content-Length is mandatory on stream transports")
        if len(set(lengths)) > 1:
            raise SipParseError("conflicting Content-Length values")
        text = lengths[0]
        if not text.isdigit():
            raise SipParseError(f"invalid Content-Length: {text[:20]!r}")
        total = end.end() + int(text)
        if total > self.max_message_size:
            raise MessageTooLarge(f"message of {total} bytes exceeds {self.max_message_size}")
        if len(buffer) < total:
            self._scanned = end.start()
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        self._scanned = 0
        return message
