"""Structured SIP header values: URIs, name-addrs, Via, CSeq.

Values keep their parameters in the order written and render back to text, so
that a header srs copies (Via, Record-Route) leaves as it came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srs.errors import SipParseError
from srs.sip.grammar import (
    CSEQ_RE,
    HOSTPORT_RE,
    MAGIC_COOKIE,
    PARAM_NAME_RE,
    SCHEME_RE,
    VIA_RE,
    quote,
    split_unquoted,
    unquote,
)

ParamItems = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Params:
    """``;name[=value]`` parameters; names compare case-insensitively, values stay as written."""

    items: ParamItems = ()

    @classmethod
    def parse(cls, text: str) -> Params:
        """Parse ``;a=1;b;c="x;y"`` (the leading ``;`` is optional)."""
        text = text.strip()
        if not text:
            return cls()
        if text.startswith(";"):
            text = text[1:]
        items: list[tuple[str, str | None]] = []
        for raw in split_unquoted(text, ";"):
            raw = raw.strip()
            if not raw:
                continue
            name, sep, value = raw.partition("=")
            name = name.strip()
            if not PARAM_NAME_RE.match(name):
                raise SipParseError(f"invalid parameter name {name!r}")
            items.append((name, value.strip() if sep else None))
        return cls(tuple(items))

    def has(self, name: str) -> bool:
        lowered = name.lower()
        return any(key.lower() == lowered for key, _ in self.items)

    def get(self, name: str) -> str | None:
        """The unquoted value; ``""`` for a flag parameter, ``None`` when absent."""
        lowered = name.lower()
        for key, value in self.items:
            if key.lower() == lowered:
                return "" if value is None else unquote(value)
        return None

    def with_param(self, name: str, value: str | None) -> Params:
        """Replace the parameter in place, or append it."""
        lowered = name.lower()
        replaced = False
        items: list[tuple[str, str | None]] = []
        for key, old in self.items:
            if key.lower() == lowered:
                if not replaced:
                    items.append((key, value))
                    replaced = True
                continue
            items.append((key, old))
        if not replaced:
            items.append((name, value))
        return Params(tuple(items))

    def without(self, name: str) -> Params:
        lowered = name.lower()
        return Params(tuple((k, v) for k, v in self.items if k.lower() != lowered))

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.items)


def format_host(host: str) -> str:
    """Bracket IPv6 literals for use in a URI or sent-by."""
    return f"[{host}]" if ":" in host else host


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    match = HOSTPORT_RE.match(text.strip())
    if not match:
        raise SipParseError(f"invalid host in {what}: {text!r}")
    host, port_text = match.group(1), match.group(2)
    if host.startswith("["):
        host = host[1:-1]
    if not host:
        raise SipParseError(f"empty host in {what}")
    port: int | None = None
    if port_text:
        port = int(port_text)
        if port > 65535:
            raise SipParseError(f"port out of range in {what}: {port}")
    return host, port


_URI_CACHE: dict[str, SipUri] = {}
_URI_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:, sips: or tel: URI (other schemes keep their opaque part in ``user``).

    ``host`` holds IPv6 addresses without brackets; ``str()`` adds them back.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=Params)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parsed once per distinct text: a trunk repeats the same request URI, Contact and From/To
        addresses in every call, and the result is immutable, so it can be shared."""
        known = _URI_CACHE.get(text)
        if known is not None:
            return known
        uri = cls._parse(text)
        if len(_URI_CACHE) >= _URI_CACHE_LIMIT:  # a sender inventing URIs cannot grow it
            _URI_CACHE.clear()
        _URI_CACHE[text] = uri
        return uri

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        text = text.strip()
        match = SCHEME_RE.match(text)
        if not match:
            raise SipParseError(f"URI without scheme: {text!r}")
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme not in ("sip", "sips"):
            opaque, _, param_text = rest.partition(";")
            if not opaque:
                raise SipParseError(f"empty {scheme}: URI")
            return cls(scheme=scheme, host="", user=opaque, params=Params.parse(param_text))
        rest, _, uri_headers = rest.partition("?")
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, sep, pw = userinfo.partition(":")
            password = pw if sep else None
            if not user:
                raise SipParseError(f"empty user part in URI {text!r}")
        hostport, _, param_text = rest.partition(";")
        host, port = _split_hostport(hostport, "URI")
        return cls(
            scheme=scheme,
            host=host,
            user=user,
            password=password,
            port=port,
            params=Params.parse(param_text),
            headers=uri_headers,
        )

    def param(self, name: str) -> str | None:
        return self.params.get(name)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.upper() if value else None

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user}{self.params}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        uri_headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{format_host(self.host)}{port}{self.params}{uri_headers}"


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;params`` as used by From, To, Contact, Route, Record-Route.

    Without angle brackets every ``;param`` belongs to the header, not the URI
    (RFC 3261 §20.10), which is what makes ``From: sip:a@b;tag=1`` work.
    """

    uri: SipUri
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty name-addr")
        if text == "*":
            raise SipParseError("'*' is not an address")
        display: str | None = None
        rest = text
        if text.startswith('"'):
            end = _closing_quote(text)
            display = unquote(text[: end + 1])
            rest = text[end + 1 :].strip()
            if not rest.startswith("<"):
                raise SipParseError(f"display name without <uri>: {text!r}")
        if "<" in rest:
            before, _, after = rest.partition("<")
            if display is None and before.strip():
                display = before.strip()
            uri_text, closed, param_text = after.partition(">")
            if not closed:
                raise SipParseError(f"unterminated <uri> in {text!r}")
            return cls(uri=SipUri.parse(uri_text), display_name=display, params=Params.parse(param_text))
        if ">" in rest:
            raise SipParseError(f"'>' without '<' in {text!r}")
        uri_text, _, param_text = rest.partition(";")
        if uri_text.count(":") == 0:
            raise SipParseError(f"not an address: {text!r}")
        return cls(uri=SipUri.parse(uri_text), display_name=None, params=Params.parse(param_text))

    @property
    def tag(self) -> str | None:
        value = self.params.get("tag")
        return value or None

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(
            uri=self.uri, display_name=self.display_name, params=self.params.with_param("tag", tag)
        )

    def __str__(self) -> str:
        # Always quoted: token-only display names are legal bare, but quoting never hurts a peer.
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{self.params}"


def _closing_quote(text: str) -> int:
    escaped = False
    for index in range(1, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return index
    raise SipParseError(f"unterminated quoted string in {text!r}")


@dataclass(frozen=True, slots=True)
class Via:
    """One via-parm. ``rport`` is ``""`` when only requested (flag), digits once filled."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        match = VIA_RE.match(text.strip())
        if not match:
            raise SipParseError(f"invalid Via: {text!r}")
        name, version, transport, host_text, port_text, param_text = match.groups()
        host = host_text[1:-1] if host_text.startswith("[") else host_text
        port = int(port_text) if port_text else None
        if port is not None and port > 65535:
            raise SipParseError(f"Via port out of range: {port}")
        return cls(
            transport=transport.upper(),
            host=host,
            port=port,
            params=Params.parse(param_text or ""),
            protocol=f"{name.upper()}/{version}",
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch") or None

    @property
    def has_magic_cookie(self) -> bool:
        branch = self.branch
        return branch is not None and branch.startswith(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        value = self.params.get("received")
        if not value:
            return None
        return value[1:-1] if value.startswith("[") else value

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr") or None

    @property
    def rport_requested(self) -> bool:
        return self.params.has("rport")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        if value and value.isascii() and value.isdigit() and int(value) <= 65535:
            return int(value)
        return None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    def with_param(self, name: str, value: str | None) -> Via:
        return Via(self.transport, self.host, self.port, self.params.with_param(name, value), self.protocol)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {format_host(self.host)}{port}{self.params}"


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        match = CSEQ_RE.match(text.strip())
        if not match:
            raise SipParseError(f"invalid CSeq: {text!r}")
        number = int(match.group(1))
        if number >= 2**31:
            raise SipParseError(f"CSeq number out of range: {number}")
        return cls(number, match.group(2))

    def __str__(self) -> str:
        return f"{self.number} {self.method}"
