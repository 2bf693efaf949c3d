"""Liberal SDP parsing (RFC 8866): accept what real SBCs send, refuse only what cannot be answered.

An m= line that cannot be read is fatal because the answer must mirror every offered m= line
(RFC 3264 §6); everything else that is odd becomes a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srs.errors import SdpError
from srs.sdp.model import (
    STATIC_PAYLOAD_TYPES,
    Codec,
    Crypto,
    Direction,
    MediaDescription,
    ParsedSdp,
    SessionDescription,
)
from srs.sdp.redact import redact_keys

_DIRECTIONS = {d.value: d for d in Direction}
_ZERO_ADDRESSES = frozenset({"0.0.0.0"})
Attribute = tuple[str, str | None]


@dataclass
class _Section:
    """Lines of one level (session or one m=) collected before they are interpreted."""

    line: str | None = None
    connection: str | None = None
    attributes: list[Attribute] = field(default_factory=list)


def parse_sdp(data: bytes | str) -> ParsedSdp:
    """Parse an SDP offer; raises SdpError (488) only when nothing usable is there."""
    warnings: list[str] = []
    text = _decode(data, warnings)
    session = _Section()
    media_sections: list[_Section] = []
    origin: str | None = None
    name: str | None = None
    saw_version = False
    trailing_space = False
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if line != raw:
            trailing_space = True
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            warnings.append(f"line {number}: not an SDP type=value line, ignored: {redact_keys(line[:40])!r}")
            continue
        kind, value = line[0], line[2:]
        current = media_sections[-1] if media_sections else session
        if kind == "v":
            saw_version = True
            if value.strip() != "0":
                warnings.append(f"line {number}: unexpected version v={value}")
        elif kind == "m":
            media_sections.append(_Section(line=value))
        elif kind == "o" and not media_sections:
            origin = value
        elif kind == "s" and not media_sections:
            name = value
        elif kind == "c":
            current.connection = _connection_address(value, number, warnings)
        elif kind == "a":
            attr_name, sep, attr_value = value.partition(":")
            current.attributes.append((attr_name.strip(), attr_value.strip() if sep else None))
    if trailing_space:
        warnings.append("trailing whitespace on SDP lines ignored")
    if not saw_version and not media_sections:
        raise SdpError("no SDP here: neither a v= line nor any m= line")
    if not saw_version:
        warnings.append("SDP has no v= line")
    if "\r\n" not in text and "\n" in text:
        warnings.append("SDP lines end in LF only")

    session_direction = _direction(session.attributes, Direction.SENDRECV, "session", warnings)
    media = tuple(
        _media(index, section, session, session_direction, warnings)
        for index, section in enumerate(media_sections)
    )
    description = SessionDescription(
        origin=origin,
        session_name=name,
        connection_address=session.connection,
        direction=session_direction,
        media=media,
        attributes=tuple(session.attributes),
    )
    return ParsedSdp(description, tuple(warnings))


def _decode(data: bytes | str, warnings: list[str]) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        warnings.append("SDP is not UTF-8; undecodable bytes replaced")
        return data.decode("utf-8", errors="replace")


def _connection_address(value: str, number: int, warnings: list[str]) -> str | None:
    parts = value.split()
    if len(parts) < 3:
        warnings.append(f"line {number}: malformed c= line ignored: {value!r}")
        return None
    # Multicast TTL / address count suffixes do not change where srs sends nothing to.
    return parts[2].split("/")[0]


def _direction(attributes: list[Attribute], default: Direction, where: str, warnings: list[str]) -> Direction:
    # a=direction:both (comedia) has the name "direction", never one of these four, so it is ignored.
    found = [_DIRECTIONS[name] for name, value in attributes if value is None and name in _DIRECTIONS]
    if len(found) > 1:
        warnings.append(f"{where}: several direction attributes, the last one wins")
    return found[-1] if found else default


def _int(text: str) -> int:
    """int() for SDP numbers: ASCII digits only, so '²' or '1_0' do not slip through."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    return int(text)


@dataclass(frozen=True, slots=True)
class _MLine:
    """The fields of one m= line."""

    media: str
    port: int
    port_count: int
    proto: str
    formats: tuple[str, ...]


@dataclass(slots=True)
class _MediaAttributes:
    """The attributes of one media section that srs reads; the rest is kept as it came."""

    label: str | None = None
    rtcp_port: int | None = None
    ptime: int | None = None
    crypto: list[Crypto] = field(default_factory=list)
    rtpmaps: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)


def _media(
    index: int,
    section: _Section,
    session: _Section,
    session_direction: Direction,
    warnings: list[str],
) -> MediaDescription:
    where = f"m-line {index}"
    line = _m_line(section, where, warnings)
    attributes = section.attributes
    connection = section.connection if section.connection is not None else session.connection
    direction = _direction(attributes, session_direction, where, warnings)
    held = connection in _ZERO_ADDRESSES
    if held:
        direction = Direction.INACTIVE
    read = _media_attributes(attributes, where, warnings)
    return MediaDescription(
        index=index,
        media=line.media,
        port=line.port,
        port_count=line.port_count,
        proto=line.proto,
        formats=line.formats,
        codecs=_codecs(line, read, where, warnings),
        connection_address=connection,
        direction=direction,
        label=read.label,
        crypto=tuple(read.crypto),
        rtcp_port=read.rtcp_port,
        ptime=read.ptime,
        attributes=tuple(attributes),
        held_by_zero_address=held,
    )


def _m_line(section: _Section, where: str, warnings: list[str]) -> _MLine:
    """An m= line that cannot be read is fatal: the answer must mirror it (RFC 3264 §6)."""
    fields = (section.line or "").split()
    if len(fields) < 3:
        raise SdpError(f"{where}: malformed m= line {section.line!r}")
    media, port_text, proto = fields[0], fields[1], fields[2]
    formats = tuple(fields[3:])
    if not formats:
        warnings.append(f"{where}: no formats listed")
    port_part, _, count_part = port_text.partition("/")
    try:
        port = _int(port_part)
        port_count = _int(count_part) if count_part else 1
    except ValueError:
        raise SdpError(f"{where}: port is not a number: {port_text!r}") from None
    if port > 65535:
        raise SdpError(f"{where}: port out of range: {port}")
    return _MLine(media, port, port_count, proto, formats)


def _media_attributes(attributes: list[Attribute], where: str, warnings: list[str]) -> _MediaAttributes:
    """label, rtcp, ptime, crypto, rtpmap and fmtp; an unreadable one is a warning, never fatal."""
    read = _MediaAttributes()
    for name, value in attributes:
        if value is None:
            continue
        if name == "label" and read.label is None:
            read.label = value
        elif name == "rtcp":
            try:
                read.rtcp_port = _int(value.split()[0])
            except (ValueError, IndexError):
                warnings.append(f"{where}: unreadable a=rtcp:{value}")
        elif name == "ptime":
            try:
                read.ptime = int(float(value))
            except (ValueError, OverflowError):
                warnings.append(f"{where}: unreadable a=ptime:{value}")
        elif name == "crypto":
            parsed = _crypto(value)
            if parsed is None:
                warnings.append(f"{where}: unreadable a=crypto:{redact_keys(value)}")
            else:
                read.crypto.append(parsed)
        elif name == "rtpmap":
            entry = _rtpmap(value)
            if entry is None:
                warnings.append(f"{where}: unreadable a=rtpmap:{value}")
            else:
                read.rtpmaps[entry[0]] = entry[1]
        elif name == "fmtp":
            pt_text, _, params = value.partition(" ")
            try:
                read.fmtps[_int(pt_text)] = params.strip()
            except ValueError:
                warnings.append(f"{where}: unreadable a=fmtp:{value}")
    return read


def _codecs(line: _MLine, read: _MediaAttributes, where: str, warnings: list[str]) -> tuple[Codec, ...]:
    """The RTP formats with a known encoding (static or by a=rtpmap), in the order offered."""
    codecs: list[Codec] = []
    if "RTP" not in line.proto.upper():
        return ()
    for fmt in line.formats:
        try:
            pt = _int(fmt)
        except ValueError:
            warnings.append(f"{where}: payload type {fmt!r} is not a number")
            continue
        mapped = read.rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if mapped is None:
            if pt in read.fmtps:
                warnings.append(f"{where}: payload type {pt} has a=fmtp but no a=rtpmap")
            else:
                warnings.append(f"{where}: dynamic payload type {pt} has no a=rtpmap")
            continue
        encoding, rate, channels = mapped
        codecs.append(Codec(pt, encoding, rate, channels, read.fmtps.get(pt)))
    return tuple(codecs)


def _rtpmap(value: str) -> tuple[int, tuple[str, int, int]] | None:
    pt_text, _, mapping = value.partition(" ")
    pieces = mapping.strip().split("/")
    try:
        pt = _int(pt_text)
        rate = _int(pieces[1].strip())
        channels = _int(pieces[2].strip()) if len(pieces) > 2 and pieces[2].strip() else 1
    except (ValueError, IndexError):
        return None
    encoding = pieces[0].strip().upper()
    if not encoding:
        return None
    return pt, (encoding, rate, channels)


def _crypto(value: str) -> Crypto | None:
    parts = value.split()
    if len(parts) < 3:
        return None
    try:
        tag = _int(parts[0])
    except ValueError:
        return None
    return Crypto(tag, parts[1], parts[2], tuple(parts[3:]))
