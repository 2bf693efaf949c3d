"""Is this INVITE a recording session (RFC 7866 §6.1.1), or an ordinary call sent to the SRS by mistake?"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

_SRC_FEATURE = re.compile(r"[;<\s]\+sip\.src\b", re.IGNORECASE)
# BroadWorks marks its recording leg with a bare ';src' Contact parameter.
_BARE_SRC = re.compile(r";\s*src\s*(?=$|[;,>\s])", re.IGNORECASE)
_OPTION_HEADERS = frozenset({"require", "supported", "k"})
_CONTACT_HEADERS = frozenset({"contact", "m"})
_CONTENT_TYPE_HEADERS = frozenset({"content-type", "c"})


class _Message(Protocol):
    @property
    def headers(self) -> Iterable[tuple[str, str]]: ...

    @property
    def body(self) -> bytes: ...


def is_siprec_request(headers: Iterable[tuple[str, str]], body: bytes = b"") -> bool:
    """True when any RFC 7866 (or BroadWorks) marker of a recording session is present."""
    for name, value in headers:
        lowered = name.strip().lower()
        if lowered in _OPTION_HEADERS:
            if any(token.strip().lower() == "siprec" for token in value.split(",")):
                return True
        elif lowered in _CONTACT_HEADERS:
            if _SRC_FEATURE.search(value) or _BARE_SRC.search(value):
                return True
        elif lowered in _CONTENT_TYPE_HEADERS:
            kind = value.split(";", 1)[0].strip().lower()
            if kind.startswith("application/rs-metadata"):
                return True
            if kind.startswith("multipart/") and b"application/rs-metadata" in body.lower():
                return True
    return False


def detect_siprec(request: _Message) -> bool:
    """``is_siprec_request`` for a parsed request."""
    return is_siprec_request(request.headers, request.body)
