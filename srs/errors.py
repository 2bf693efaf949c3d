"""One family of errors for everything srs parses.

Every parser in the pure layers raises a subclass of :class:`ParseError`; the
network edge maps ``status`` to the SIP response it sends (or counts a drop for
media), so bad input never becomes a traceback or a lost call.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `srs` command, one per kind of failure an operator can cause and fix.

    Scripts and service managers tell these apart (a port in use is worth a retry, a bad config file
    is not), so a code never changes meaning; new kinds get new numbers. README.md lists them.
    """

    OK = 0
    FAILURE = 1
    """The command ran and failed (not found, a refused change, an I/O error mid-way)."""
    USAGE = 2
    """Bad flags, an unreadable or invalid config file, a config value out of range."""
    DATA_DIR = 3
    """The data directory is missing, not a directory, not writable, or not an srs data directory."""
    DATA_DIR_IN_USE = 4
    """Another `srs serve` holds the data directory's lock."""
    ADDRESS_IN_USE = 5
    """A SIP or HTTP listen address is already taken."""
    ADDRESS_NOT_PERMITTED = 6
    """A SIP or HTTP listen address cannot be bound (privileged port, address not on this host)."""
    TLS = 7
    """The TLS certificate, key or client CA cannot be loaded."""


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

    exit_code: int = ExitCode.USAGE


class StartupError(SrsError):
    """Something outside srs keeps it from starting or from opening its data: told in one line.

    ``exit_code`` is what the `srs` command exits with (:class:`ExitCode`).
    """

    exit_code: int = ExitCode.FAILURE


class DataDirError(StartupError):
    """The data directory is missing, not a directory, not writable or not an srs data directory."""

    exit_code = ExitCode.DATA_DIR


class DataDirInUse(StartupError):
    """Another daemon holds the data directory: two would repair and finalize each other's calls."""

    exit_code = ExitCode.DATA_DIR_IN_USE

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class ListenError(StartupError):
    """A listen address that cannot be bound; ``exit_code`` tells "in use" from "not permitted"."""

    def __init__(self, what: str, address: str, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot listen on {what} {address}: {reason}")
        self.exit_code = (
            ExitCode.ADDRESS_IN_USE if error.errno == errno.EADDRINUSE else ExitCode.ADDRESS_NOT_PERMITTED
        )


class TlsSetupError(StartupError):
    """A TLS certificate, key or CA file that cannot be loaded."""

    exit_code = ExitCode.TLS
