"""RFC 3261 §25 grammar pieces, as regular expressions and list-splitting functions.

Each pattern carries the ABNF it implements so a reader can check it against the
RFC. The patterns are deliberately a little wider than the ABNF where real
devices are known to be sloppy (extra whitespace, lower-case protocol names).
"""

from __future__ import annotations

import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(rf"\A{TOKEN}\Z")

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION = r"SIP/[0-9]+\.[0-9]+"

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
# Method       = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# (runs of SP/HTAB between the parts are tolerated)
REQUEST_LINE_RE = re.compile(rf"\A({TOKEN})[ \t]+(\S+)[ \t]+(SIP/\S+)[ \t]*\Z", re.IGNORECASE)

# Status-Line   = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Status-Code   = 3DIGIT
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
STATUS_LINE_RE = re.compile(r"\A(SIP/\S+)[ \t]+([0-9]{3})(?:[ \t]+(.*))?\Z", re.IGNORECASE | re.DOTALL)

# message-header = field-name HCOLON field-value CRLF
# HCOLON         = *( SP / HTAB ) ":" SWS
HEADER_LINE_RE = re.compile(rf"\A({TOKEN})[ \t]*:[ \t]*(.*)\Z", re.DOTALL)

# via-parm          = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol     = protocol-name SLASH protocol-version SLASH transport
# sent-by           = host [ COLON port ]
# host              = hostname / IPv4address / IPv6reference
VIA_RE = re.compile(
    rf"\A({TOKEN})\s*/\s*({TOKEN})\s*/\s*({TOKEN})\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[^\s:;\[\]]+)"
    r"(?:\s*:\s*([0-9]+))?\s*(;.*)?\Z",
    re.DOTALL,
)

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_RE = re.compile(rf"\A([0-9]+)\s+({TOKEN})\Z")

# hostport = host [ ":" port ]
# IPv6reference = "[" IPv6address "]"
HOSTPORT_RE = re.compile(r"\A(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]*))?\Z")

# generic-param = token [ EQUAL gen-value ]
# gen-value     = token / host / quoted-string
PARAM_NAME_RE = re.compile(rf"\A{TOKEN}\Z")

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE = re.compile(r"\A([A-Za-z][A-Za-z0-9+\-.]*):(.*)\Z", re.DOTALL)

# magic cookie of RFC 3261 branches (§8.1.1.7)
MAGIC_COOKIE = "z9hG4bK"


def split_unquoted(value: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted strings and outside ``<...>``.

    Comma lists like ``Contact: "Doe, J" <sip:a@b>, <sip:c@d;x=1,2>`` must not be
    cut inside a display name or a URI.
    """
    if '"' not in value and "<" not in value:
        return value.split(separator)
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for char in value:
        if in_quotes:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
            continue
        if char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == separator and not in_angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """Remove the quotes and backslash escapes of a quoted-string (others pass through)."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        # quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F)
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    return value


def quote(value: str) -> str:
    """Make a quoted-string (used for display names that are not plain tokens)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def is_token(value: str) -> bool:
    return bool(TOKEN_RE.match(value))
