"""One family of errors for everything srs parses.

Every parser in the pure layers raises a subclass of :class:`ParseError`; the
network edge maps ``status`` to the SIP response it sends (or counts a drop for
media), so bad input never becomes a traceback or a lost call.
"""

from __future__ import annotations


class SrsError(Exception):
    """Base of every error srs raises on purpose."""


class ParseError(SrsError):
    """Input that could not be understood.

    ``status`` and ``reason`` are what a SIP UAS answers when this error ends
    the processing of a request.
    """

    status: int = 400
    reason: str = "Bad Request"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class SipParseError(ParseError):
    """A SIP message that violates RFC 3261 syntax beyond what srs tolerates."""


class MessageTooLarge(SipParseError):
    status = 513
    reason = "Message Too Large"


class MultipartError(ParseError):
    """A multipart body that cannot be split into parts."""


class UnsupportedMediaType(ParseError):
    status = 415
    reason = "Unsupported Media Type"


class BadExtension(ParseError):
    status = 420
    reason = "Bad Extension"


class SdpError(ParseError):
    status = 488
    reason = "Not Acceptable Here"


class MetadataError(ParseError):
    """rs-metadata that cannot be read at all (a recoverable problem is a warning instead)."""


class RtpError(ParseError):
    """A malformed RTP/RTCP packet; the media edge drops and counts it."""


class ConfigError(SrsError):
    """A configuration file or flag srs refuses to start with."""
