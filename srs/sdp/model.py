"""SDP as srs sees it: the parts of RFC 8866 a recording server acts on, kept immutable."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Direction(enum.Enum):
    """RFC 3264 §5.1 media direction, from the sender of the SDP's point of view."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format; ``encoding`` is upper-cased so lookups need one spelling."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None


@dataclass(frozen=True, slots=True)
class Crypto:
    """An RFC 4568 ``a=crypto`` line."""

    tag: int
    suite: str
    key_params: str
    session_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section with session-level defaults already applied."""

    index: int
    media: str
    port: int
    port_count: int
    proto: str
    formats: tuple[str, ...]
    codecs: tuple[Codec, ...]
    connection_address: str | None
    direction: Direction
    label: str | None
    crypto: tuple[Crypto, ...]
    rtcp_port: int | None
    ptime: int | None
    attributes: tuple[tuple[str, str | None], ...]
    held_by_zero_address: bool = False

    def attribute(self, name: str) -> str | None:
        """First value of a media-level attribute (``""`` for a flag), or None."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: str | None
    session_name: str | None
    connection_address: str | None
    direction: Direction
    media: tuple[MediaDescription, ...]
    attributes: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class ParsedSdp:
    session: SessionDescription
    warnings: tuple[str, ...]


# RFC 3551 §6 static payload types an SBC may offer without a=rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}
