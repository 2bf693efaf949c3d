"""SIP messages: parsing bytes into Request/Response, serializing them back, building responses.

The parser is liberal (RFC 3261 §7, "be liberal in what you accept"): LF-only lines,
leading blank lines, folded headers, compact names. What it tolerates it reports in
``warnings``; what it cannot understand raises SipParseError with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from srs.errors import MessageTooLarge, SipParseError
from srs.sip.grammar import HEADER_LINE_RE, REQUEST_LINE_RE, STATUS_LINE_RE, split_unquoted
from srs.sip.headers import CSeq, NameAddr, SipUri, Via

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "x": "session-expires",
    "y": "identity",
    "b": "referred-by",
    "a": "accept-contact",
    "d": "request-disposition",
    "j": "reject-contact",
}

LIST_HEADERS = frozenset(
    {
        "via",
        "supported",
        "require",
        "allow",
        "contact",
        "route",
        "record-route",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
    }
)

MANDATORY_HEADERS = ("via", "from", "to", "call-id", "cseq")

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}


_CANONICAL: dict[str, str] = {}
_CANONICAL_LIMIT = 2048
"""Names seen so far (bounded: header names come from the network)."""


def canonical_name(name: str) -> str:
    """Lower-case long form, so ``v`` and ``VIA`` both become ``via``."""
    known = _CANONICAL.get(name)
    if known is not None:
        return known
    lowered = name.strip().lower()
    canonical = COMPACT_FORMS.get(lowered, lowered)
    if len(_CANONICAL) < _CANONICAL_LIMIT:
        _CANONICAL[name] = canonical
    return canonical



_DISPLAY_NAMES = {"cseq": "CSeq", "from": "From", "to": "To"}

@dataclass(frozen=True, slots=True)
class Headers:
    """Header fields as written: ordered (name, value) pairs, one per header line."""

    items: tuple[tuple[str, str], ...] = ()
    _names: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)
    """Each line's canonical name, worked out on the first look-up (a message is read many times)."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _canonical_names(self) -> tuple[str, ...]:
        names = self._names
        if names is None:
            names = tuple(canonical_name(key) for key, _ in self.items)
            object.__setattr__(self, "_names", names)
        return names

    def get(self, name: str) -> str | None:
        """The first header line with this name (compact or long form, any case)."""
        wanted = canonical_name(name)
        names = self._canonical_names()
        if wanted not in names:
            return None
        return self.items[names.index(wanted)][1]

    def get_all(self, name: str) -> list[str]:
        """Every value; list headers are also split at commas (outside quotes and <>)."""
        wanted = canonical_name(name)
        names = self._canonical_names()
        if wanted not in names:
            return []
        values: list[str] = []
        split = wanted in LIST_HEADERS
        for key, (_, value) in zip(names, self.items, strict=True):
            if key != wanted:
                continue
            if split:
                values.extend(part.strip() for part in split_unquoted(value, ",") if part.strip())
            else:
                values.append(value)
        return values

    def add(self, name: str, value: str) -> Headers:
        return Headers((*self.items, (name, value)))

    def prepend(self, name: str, value: str) -> Headers:
        return Headers(((name, value), *self.items))

    def remove(self, name: str) -> Headers:
        wanted = canonical_name(name)
        return Headers(tuple(item for item in self.items if canonical_name(item[0]) != wanted))

    def replace(self, name: str, value: str) -> Headers:
        """One header line with ``value`` where the first one was (appended if there was none)."""
        wanted = canonical_name(name)
        items: list[tuple[str, str]] = []
        placed = False
        for key, old in self.items:
            if canonical_name(key) == wanted:
                if not placed:
                    items.append((key, value))
                    placed = True
                continue
            items.append((key, old))
        if not placed:
            items.append((name, value))
        return Headers(tuple(items))

    def replace_first_value(self, name: str, value: str) -> Headers:
        """Replace only the first element of a list header (the top Via), keeping the rest of its line."""
        wanted = canonical_name(name)
        items = list(self.items)
        for index, (key, old) in enumerate(items):
            if canonical_name(key) == wanted:
                parts = split_unquoted(old, ",")
                rest = [part.strip() for part in parts[1:]]
                items[index] = (key, ", ".join([value, *rest]))
                return Headers(tuple(items))
        return self.add(name, value)


class _MessageFields:
    """Typed accessors shared by requests and responses.

    A message is immutable, so each structured header is parsed once and kept (``_parsed``):
    the transaction layer, the dialog and the response builder all ask for the same ones.
    """

    __slots__ = ()
    headers: Headers
    _parsed: dict[str, Any]

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if not value:
            raise SipParseError("missing Call-ID")
        return value.strip()

    def _header_once(self, name: str, parse: Callable[[str], Any]) -> Any:
        """``parse`` of the first ``name`` header, worked out on the first look-up and kept."""
        cached = self._parsed.get(name)
        if cached is None:
            value = self.headers.get(name)
            if value is None:
                raise SipParseError(f"missing {_DISPLAY_NAMES[name]}")
            cached = self._parsed[name] = parse(value)
        return cached

    @property
    def cseq(self) -> CSeq:
        return cast(CSeq, self._header_once("cseq", CSeq.parse))

    @property
    def from_addr(self) -> NameAddr:
        return cast(NameAddr, self._header_once("from", NameAddr.parse))

    @property
    def to_addr(self) -> NameAddr:
        return cast(NameAddr, self._header_once("to", NameAddr.parse))

    @property
    def vias(self) -> list[Via]:
        cached = self._parsed.get("vias")
        if cached is None:
            cached = self._parsed["vias"] = tuple(Via.parse(value) for value in self.headers.get_all("via"))
        return list(cached)

    @property
    def top_via(self) -> Via:
        cached = self._parsed.get("vias")
        if cached:
            return cast(Via, cached[0])
        values = self.headers.get_all("via")
        if not values:
            raise SipParseError("missing Via")
        return Via.parse(values[0])

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def max_forwards(self) -> int | None:
        value = (self.headers.get("max-forwards") or "").strip()
        if not value.isascii() or not value.isdigit():
            return None
        return int(value)


@dataclass(frozen=True, slots=True)
class Request(_MessageFields):
    method: str
    uri: SipUri
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    _parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Response(_MessageFields):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    _parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)


Message = Request | Response

# SIP-message = start-line *message-header CRLF [ message-body ]
# (the CRLF that closes the last header line plus the empty line; bare LF tolerated)
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


def parse_message(
    data: bytes,
    *,
    max_size: int = 65535,
    max_headers: int = 256,
    max_header_length: int = 8192,
) -> Request | Response:
    """Parse one datagram or one framed stream message.

    Content-Length shorter than the body truncates it (warning); missing takes the
    rest; longer than the data is an error (RFC 3261 §18.3: a truncated datagram).
    """
    if len(data) > max_size:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {max_size}")
    warnings: list[str] = []
    stripped = data.lstrip(b"\r\n")
    if not stripped:
        raise SipParseError("empty message")
    if len(stripped) != len(data):
        warnings.append("leading blank lines ignored")
    end = _HEADER_END_RE.search(stripped)
    if end is None:
        head_bytes, body = stripped, b""
        warnings.append("no empty line after the headers")
    else:
        head_bytes, body = stripped[: end.start()], stripped[end.end() :]
    head = head_bytes.decode("utf-8", errors="surrogateescape")
    if "\n" not in head and "\r" in head:
        raise SipParseError("lines end with a bare CR")
    lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
    if b"\n" in head_bytes.replace(b"\r\n", b""):
        warnings.append("LF-only line endings")
    start_line = lines[0]
    if len(start_line) > max_header_length:
        raise SipParseError(f"start line longer than {max_header_length} characters")
    headers = _parse_header_lines(lines[1:], max_headers, max_header_length, warnings)
    body = _apply_content_length(headers, body, warnings)

    message: Request | Response
    if start_line.upper().startswith("SIP/"):
        message = _parse_status_line(start_line, headers, body, warnings)
    else:
        message = _parse_request_line(start_line, headers, body, warnings)
    _check_mandatory(message)
    return message


def _parse_header_lines(
    lines: list[str], max_headers: int, max_header_length: int, warnings: list[str]
) -> Headers:
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("continuation line before the first header")
            unfolded[-1] = unfolded[-1].rstrip() + " " + line.strip()
            if "folded headers" not in warnings:
                warnings.append("folded headers")
        else:
            unfolded.append(line)
        if len(unfolded[-1]) > max_header_length:
            raise SipParseError(f"header line longer than {max_header_length} characters")
        if len(unfolded) > max_headers:
            raise SipParseError(f"more than {max_headers} header lines")
    items: list[tuple[str, str]] = []
    for line in unfolded:
        if not line.strip():
            continue
        match = HEADER_LINE_RE.match(line)
        if not match:
            raise SipParseError(f"malformed header line: {line[:80]!r}")
        items.append((match.group(1), match.group(2).strip()))
    return Headers(tuple(items))


def _apply_content_length(headers: Headers, body: bytes, warnings: list[str]) -> bytes:
    lengths = headers.get_all("content-length")
    if not lengths:
        return body
    if len({value.strip() for value in lengths}) > 1:
        raise SipParseError(f"conflicting Content-Length values {lengths}")
    text = lengths[0].strip()
    if not text.isdigit() or not text.isascii():
        raise SipParseError(f"invalid Content-Length: {text!r}")
    length = int(text)
    if length > len(body):
        raise SipParseError(f"Content-Length {length} but only {len(body)} body bytes")
    if length < len(body):
        warnings.append(f"{len(body) - length} bytes after the Content-Length body ignored")
        return body[:length]
    return body


def _check_version(version: str) -> str:
    if version.upper() != "SIP/2.0":
        raise SipParseError(
            f"unsupported SIP version {version!r}", status=505, reason="Version Not Supported"
        )
    return "SIP/2.0"


def _parse_request_line(line: str, headers: Headers, body: bytes, warnings: list[str]) -> Request:
    match = REQUEST_LINE_RE.match(line)
    if not match:
        raise SipParseError(f"malformed request line: {line[:80]!r}")
    method, uri_text, version = match.groups()
    version = _check_version(version)
    try:
        uri = SipUri.parse(uri_text)
    except SipParseError as exc:
        raise SipParseError(f"bad Request-URI: {exc.message}") from exc
    if uri.scheme not in ("sip", "sips", "tel"):
        raise SipParseError(
            f"unsupported Request-URI scheme {uri.scheme!r}", status=416, reason="Unsupported URI Scheme"
        )
    return Request(method, uri, headers, body, version, tuple(warnings))


def _parse_status_line(line: str, headers: Headers, body: bytes, warnings: list[str]) -> Response:
    match = STATUS_LINE_RE.match(line)
    if not match:
        raise SipParseError(f"malformed status line: {line[:80]!r}")
    version = _check_version(match.group(1))
    status = int(match.group(2))
    if not 100 <= status <= 699:
        raise SipParseError(f"status code out of range: {status}")
    return Response(status, (match.group(3) or "").strip(), headers, body, version, tuple(warnings))


def _check_mandatory(message: Request | Response) -> None:
    """Parse the headers transactions rely on now, so later accessors cannot fail."""
    for name in MANDATORY_HEADERS:
        if message.headers.get(name) is None:
            raise SipParseError(f"missing mandatory header {name!r}")
    try:
        message.vias  # noqa: B018 - parsed for validation
        message.from_addr  # noqa: B018
        message.to_addr  # noqa: B018
        cseq = message.cseq
        message.call_id  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(f"bad mandatory header: {exc.message}") from exc
    if isinstance(message, Request) and cseq.method.upper() != message.method.upper():
        raise SipParseError(f"CSeq method {cseq.method!r} does not match {message.method!r}")


def serialize(message: Request | Response) -> bytes:
    """CRLF lines and a Content-Length that matches the body (replaced in place, or appended)."""
    if isinstance(message, Request):
        start = f"{message.method} {message.uri} SIP/2.0"
    else:
        start = f"SIP/2.0 {message.status} {message.reason}"
    headers = message.headers.replace("Content-Length", str(len(message.body)))
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", errors="surrogateescape")
    return head + message.body


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response per RFC 3261 §8.2.6: Via (all, in order), From, To (+tag), Call-ID, CSeq copied.

    Record-Route is copied into dialog-creating responses to INVITE (§12.1.1).
    A To tag already present is kept and never doubled.
    """
    items: list[tuple[str, str]] = []
    for name, value in request.headers:
        canon = canonical_name(name)
        if canon == "via":
            items.append(("Via", value))
    items.append(("From", _header(request, "from")))
    to_value = _header(request, "to")
    if to_tag is not None and request.to_addr.tag is None:
        to_value = f"{to_value};tag={to_tag}"
    items.append(("To", to_value))
    items.append(("Call-ID", _header(request, "call-id")))
    items.append(("CSeq", _header(request, "cseq")))
    if request.method == "INVITE" and 101 <= status < 300:
        items.extend(
            ("Record-Route", value)
            for name, value in request.headers
            if canonical_name(name) == "record-route"
        )
    if status == 100:
        timestamp = request.headers.get("timestamp")
        if timestamp is not None:
            items.append(("Timestamp", timestamp))
    items.extend(extra_headers)
    if body and content_type is not None:
        items.append(("Content-Type", content_type))
    return Response(
        status=status,
        reason=reason if reason is not None else REASON_PHRASES.get(status, _class_reason(status)),
        headers=Headers(tuple(items)),
        body=body,
    )


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if value is None:
        raise SipParseError(f"request has no {name} header")
    return value


def _class_reason(status: int) -> str:
    return {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}.get(
        status // 100, "Global Failure"
    )
