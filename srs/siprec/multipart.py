"""Splitting a SIPREC request body into its SDP and rs-metadata parts (RFC 7866 §9, RFC 2046 §5.1).

SBCs get multipart framing wrong in many small ways; each tolerated slip is reported as a warning so
an operator can see it, and only a body that holds nothing srs can use is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from srs.errors import MultipartError, UnsupportedMediaType

SDP_TYPE = "application/sdp"
METADATA_TYPE = "application/rs-metadata+xml"
_METADATA_TYPES = frozenset({METADATA_TYPE, "application/rs-metadata"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9!#$%&'*+.^_`|~-]+[ \t]*:")
MAX_PARTS = 32
"""A SIPREC body has two parts (SDP, metadata), a few more at most; thousands are an attack."""

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One MIME part; ``content_type`` is the header value as written ('' when absent)."""

    content_type: str
    headers: tuple[Header, ...]
    body: bytes

    @property
    def media_type(self) -> str:
        return media_type(self.content_type)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@dataclass(frozen=True, slots=True)
class SiprecBody:
    sdp: bytes | None
    metadata: bytes | None
    metadata_content_type: str | None
    other_parts: tuple[BodyPart, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MultipartBody:
    parts: tuple[BodyPart, ...]
    boundary: str
    warnings: tuple[str, ...]


def media_type(content_type: str | None) -> str:
    """``type/subtype`` in lower case, parameters dropped."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def content_type_params(content_type: str | None) -> dict[str, str]:
    """Parameters of a Content-Type value, names lower-cased, quotes removed."""
    params: dict[str, str] = {}
    if not content_type:
        return params
    for name, raw in _PARAM.findall(content_type):
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        params.setdefault(name.lower(), value)
    return params


def extract_siprec_body(
    content_type: str | None, body: bytes, content_disposition: str | None = None
) -> SiprecBody:
    """Find the SDP offer and the recording metadata in a request body.

    Raises UnsupportedMediaType (415) for a body type srs cannot use and MultipartError when a
    multipart body has no parts at all.
    """
    warnings: list[str] = []
    kind = media_type(content_type)
    if not kind:
        if not body.strip():
            return SiprecBody(None, None, None, (), ())
        kind = _sniff(body)
        if not kind:
            raise UnsupportedMediaType("untyped body that is neither SDP, metadata nor multipart")
        warnings.append(f"body has no Content-Type; read as {kind}")
    if kind.startswith("multipart/"):
        split = split_multipart(body, content_type_params(content_type).get("boundary"))
        warnings.extend(split.warnings)
        return _classify(split.parts, warnings)
    if kind == SDP_TYPE:
        return SiprecBody(body, None, None, (), tuple(warnings))
    if kind in _METADATA_TYPES:
        if kind != METADATA_TYPE:
            warnings.append(f"metadata declared as {kind} instead of {METADATA_TYPE}")
        if content_disposition is not None and "recording-session" not in content_disposition.lower():
            warnings.append(f"metadata body with Content-Disposition {content_disposition!r}")
        return SiprecBody(None, body, content_type, (), tuple(warnings))
    raise UnsupportedMediaType(f"unsupported body type {kind!r}")


def _sniff(body: bytes) -> str:
    start = body.lstrip()
    if start.startswith(b"--"):
        return "multipart/mixed"
    if start.startswith(b"v=0"):
        return SDP_TYPE
    if start.startswith(b"<"):
        return METADATA_TYPE
    return ""


def _classify(parts: tuple[BodyPart, ...], warnings: list[str]) -> SiprecBody:
    sdp: bytes | None = None
    metadata: bytes | None = None
    metadata_type: str | None = None
    others: list[BodyPart] = []
    for part in parts:
        kind = part.media_type
        disposition = (part.header("Content-Disposition") or "").lower()
        if kind in _XML_TYPES and "recording-session" in disposition and metadata is None:
            warnings.append(f"recording-session part typed {kind}; read as metadata")
            kind = METADATA_TYPE
        if kind == SDP_TYPE and sdp is None:
            sdp = part.body
        elif kind in _METADATA_TYPES and metadata is None:
            if kind != METADATA_TYPE:
                warnings.append(f"metadata part declared as {kind} instead of {METADATA_TYPE}")
            if sdp is None:
                warnings.append("metadata part comes before the SDP part")
            metadata, metadata_type = part.body, part.content_type
        else:
            if kind == SDP_TYPE or kind in _METADATA_TYPES:
                warnings.append(f"second {kind} part kept as an extra part")
            others.append(part)
    return SiprecBody(sdp, metadata, metadata_type, tuple(others), tuple(warnings))


def _iter_lines(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(start, end without line ending, start of next line) for every line, CRLF or bare LF."""
    start = 0
    length = len(data)
    while start < length:
        newline = data.find(b"\n", start)
        if newline < 0:
            yield start, length, length
            return
        end = newline - 1 if newline > start and data[newline - 1] == 0x0D else newline
        yield start, end, newline + 1
        start = newline + 1


def _lines(data: bytes) -> list[tuple[int, int, int]]:
    return list(_iter_lines(data))


def split_multipart(body: bytes, boundary: str | None, max_parts: int = MAX_PARTS) -> MultipartBody:
    """Split a multipart body into parts, recovering the boundary from the body when it is missing."""
    warnings: list[str] = []
    if boundary:
        delimiters = _delimiters(body, boundary.encode("utf-8", "replace"))
        if not delimiters:
            found = _first_dash_line(body, _lines(body))
            if found is None:
                raise MultipartError(f"boundary {boundary!r} never occurs in the body")
            warnings.append(
                f"boundary {boundary!r} not in the body; using {found!r} from its first '--' line"
            )
            boundary = found
            delimiters = _delimiters(body, boundary.encode("utf-8", "replace"))
    else:
        found = _first_dash_line(body, _lines(body))
        if found is None:
            raise MultipartError("multipart body without boundary and without any '--' delimiter line")
        warnings.append(f"Content-Type has no boundary; using {found!r} from the first '--' line")
        boundary = found
        delimiters = _delimiters(body, boundary.encode("utf-8", "replace"))

    if body.find(b"\r\n") < 0 and b"\n" in body:
        warnings.append("multipart body lines end in LF only")
    if not delimiters:
        raise MultipartError(f"no delimiter line for boundary {boundary!r}")
    first_start = delimiters[0][0]
    if body[:first_start].strip():
        warnings.append("multipart preamble before the first delimiter ignored")

    opening = next((i for i, (_start, _after, closing) in enumerate(delimiters) if closing), len(delimiters))
    if opening > max_parts:
        raise MultipartError(f"multipart body with {opening} delimiters; at most {max_parts} parts accepted")
    parts: list[BodyPart] = []
    closed = False
    for position, (_start, after, closing) in enumerate(delimiters):
        if closing:
            closed = True
            if body[after:].strip():
                warnings.append("multipart epilogue after the closing delimiter ignored")
            break
        end = delimiters[position + 1][0] if position + 1 < len(delimiters) else len(body)
        content = body[after:end]
        if position + 1 < len(delimiters):
            # The line ending before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            if content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
        parts.append(_part(content, len(parts), warnings))
    if not closed:
        warnings.append("multipart closing delimiter missing; the last part may be truncated")
    if not parts:
        raise MultipartError("multipart body has no parts")
    return MultipartBody(tuple(parts), boundary, tuple(warnings))


def _delimiters(body: bytes, boundary: bytes) -> list[tuple[int, int, bool]]:
    """(start, start of the next line, closing?) of every delimiter line: ``--boundary`` or
    ``--boundary--`` alone on its line, trailing blanks allowed (RFC 2046 §5.1.1), found by one
    regular-expression scan instead of a look at every line."""
    pattern = _DELIMITER_PATTERNS.get(boundary)
    if pattern is None:
        pattern = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r(?=\n))?$", re.MULTILINE)
        if len(_DELIMITER_PATTERNS) >= 64:
            _DELIMITER_PATTERNS.clear()
        _DELIMITER_PATTERNS[boundary] = pattern
    marker = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    for match in pattern.finditer(body):
        # the scan proposes, the line decides (a boundary recovered from a line may itself end in CR)
        start = match.start()
        newline = body.find(b"\n", start)
        if newline < 0:
            end = after = len(body)
        else:
            end = newline - 1 if newline > start and body[newline - 1] == 0x0D else newline
            after = newline + 1
        line = body[start:end].rstrip(b" \t")
        if line == marker or line == marker + b"--":
            found.append((start, after, line != marker))
    return found


_DELIMITER_PATTERNS: dict[bytes, re.Pattern[bytes]] = {}


def _first_dash_line(body: bytes, lines: list[tuple[int, int, int]]) -> str | None:
    for start, end, _ in lines:
        line = body[start:end].rstrip(b" \t")
        if line.startswith(b"--") and len(line) > 2:
            text = line[2:]
            if text.endswith(b"--"):
                text = text[:-2]
            if text:
                return text.decode("utf-8", "replace")
    return None


def _part(content: bytes, number: int, warnings: list[str]) -> BodyPart:
    lines = _iter_lines(content)  # read up to the blank line, not through the content
    headers: list[Header] = []
    body_start = len(content)
    blank_found = False
    for start, end, after in lines:
        raw = content[start:end]
        if not raw.strip():
            body_start = after
            blank_found = True
            break
        if raw[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {_text(raw).strip()}")
            continue
        if not _HEADER_LINE.match(raw):
            body_start = start
            break
        name, _, value = _text(raw).partition(":")
        headers.append((name.strip(), value.strip()))
    else:
        body_start = len(content)
    if not blank_found and body_start < len(content):
        warnings.append(f"part {number}: no blank line between part headers and content")
    body = content[body_start:]
    encoding = next((v for k, v in headers if k.lower() == "content-transfer-encoding"), "").lower()
    if encoding == "base64":
        try:
            body = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            warnings.append(f"part {number}: Content-Transfer-Encoding base64 but not base64; kept as is")
        else:
            warnings.append(f"part {number}: base64 content decoded")
    content_type = next((v for k, v in headers if k.lower() in ("content-type", "c")), "")
    if not content_type:
        sniffed = _sniff(body)
        if sniffed and sniffed != "multipart/mixed":
            warnings.append(f"part {number}: no Content-Type; read as {sniffed}")
            content_type = sniffed
        else:
            warnings.append(f"part {number}: no Content-Type")
    return BodyPart(content_type, tuple(headers), body)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
