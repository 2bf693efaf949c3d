"""The UAS side of a dialog (RFC 3261 §12): state from the INVITE, in-dialog requests srs sends (BYE, UPDATE).

Randomness (tags, branches) comes in as parameters so the same inputs always
build the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from srs.errors import SipParseError
from srs.sip.headers import NameAddr, SipUri, Via
from srs.sip.message import Headers, Request
from srs.sip.routing import Transport
from srs.sip.transaction import new_branch

__all__ = ["CSeqOutOfOrder", "Dialog", "new_branch"]

DialogKey = tuple[str, str, str]


class CSeqOutOfOrder(SipParseError):
    """§12.2.2: a request with a lower CSeq than the last one is rejected with 500."""

    status = 500
    reason = "Server Internal Error"


@dataclass(slots=True)
class Dialog:
    """Mutable on purpose: the CSeq counters advance as requests come and go."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    route_set: tuple[NameAddr, ...] = ()
    local_cseq: int = 0
    remote_cseq: int | None = None
    secure: bool = False
    local_contact: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_invite(
        cls,
        request: Request,
        local_tag: str,
        local_contact: SipUri | str | None = None,
        *,
        local_cseq: int = 0,
    ) -> Dialog:
        """§12.1.1: the route set is the Record-Route list in order, the target the Contact."""
        warnings: list[str] = []
        remote = request.from_addr
        remote_tag = remote.tag or ""
        if not remote_tag:
            warnings.append("INVITE without From tag (RFC 2543 peer)")
        contacts = request.headers.get_all("contact")
        if not contacts or contacts[0] == "*":
            raise SipParseError("INVITE without a usable Contact")
        try:
            target = NameAddr.parse(contacts[0]).uri
            routes = tuple(NameAddr.parse(value) for value in request.headers.get_all("record-route"))
        except SipParseError as exc:
            raise SipParseError(f"cannot build dialog: {exc.message}") from exc
        local = request.to_addr
        if local.tag is None:
            local = local.with_tag(local_tag)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=local,
            remote_uri=remote,
            remote_target=target,
            route_set=routes,
            local_cseq=local_cseq,
            remote_cseq=request.cseq.number,
            secure=request.uri.scheme == "sips",
            local_contact=None if local_contact is None else str(local_contact),
            warnings=tuple(warnings),
        )

    @property
    def key(self) -> DialogKey:
        return (self.call_id, self.local_tag, self.remote_tag)

    def check_remote_cseq(self, cseq: int) -> None:
        """Accept an in-dialog request's CSeq or raise CSeqOutOfOrder (lower than the last one)."""
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            raise CSeqOutOfOrder(f"CSeq {cseq} is lower than {self.remote_cseq}")
        self.remote_cseq = cseq

    def update_target(self, contact: str) -> None:
        """Target refresh (re-INVITE/UPDATE with a Contact) per §12.2.2."""
        self.remote_target = NameAddr.parse(contact).uri

    def build_request(
        self,
        method: str,
        *,
        via_host: str,
        via_port: int,
        transport: Transport,
        branch: str,
        extra_headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """§12.2.1.1: Request-URI and Route from the route set (loose or strict routing), CSeq + 1."""
        self.local_cseq += 1
        uri = self.remote_target
        routes = [str(route) for route in self.route_set]
        if self.route_set and not self.route_set[0].uri.params.has("lr"):
            # strict router: it becomes the Request-URI, the remote target goes last
            uri = SipUri(
                scheme=self.route_set[0].uri.scheme,
                host=self.route_set[0].uri.host,
                user=self.route_set[0].uri.user,
                port=self.route_set[0].uri.port,
                params=self.route_set[0].uri.params.without("method").without("maddr").without("ttl"),
            )
            routes = [*routes[1:], f"<{self.remote_target}>"]
        via = Via(transport=transport.value, host=via_host, port=via_port).with_param("branch", branch)
        via = via.with_param("rport", None)
        items: list[tuple[str, str]] = [("Via", str(via)), ("Max-Forwards", "70")]
        items.extend(("Route", route) for route in routes)
        items += [
            ("From", str(self.local_uri.with_tag(self.local_tag))),
            ("To", str(self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
        ]
        if method in ("INVITE", "UPDATE") and self.local_contact is not None:
            items.append(("Contact", _contact_value(self.local_contact)))
        items.extend(extra_headers)
        if body and content_type is not None:
            items.append(("Content-Type", content_type))
        return Request(method, uri, Headers(tuple(items)), body)


def _contact_value(contact: str) -> str:
    return contact if "<" in contact else f"<{contact}>"
