"""The SRS user agent: RFC 3261 UAS core and RFC 7866 recording-session handling, sans-IO.

``SiprecUserAgent.receive(data, source, transport, local, now)`` takes the bytes
of one SIP message and returns what to send and what happened
(:mod:`srs.siprec.events`).  Timers are driven by ``next_deadline()`` and
``on_timer(now)``.  Nothing here reads a clock, opens a socket or touches a file,
so every exchange is testable byte for byte.

One recording session is one SIP dialog: re-INVITEs, UPDATEs, pauses and
metadata updates change that session and never start another.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import re
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from srs.errors import ParseError, SdpError, SipParseError
from srs.sdp.answer import Answer, build_answer
from srs.sdp.model import Codec, SessionDescription
from srs.sdp.parse import parse_sdp
from srs.sip.badrequest import answer_unparseable, read_headers, safe_text
from srs.sip.client import ClientTimeout, ClientTransactionLayer
from srs.sip.deadlines import DeadlineHeap
from srs.sip.dialog import Dialog
from srs.sip.headers import NameAddr, SipUri
from srs.sip.message import Request, Response, build_response, parse_message, serialize
from srs.sip.routing import (
    Address,
    Outgoing,
    Transport,
    reconnect_address,
    response_destination,
    stamp_received,
)
from srs.sip.transaction import (
    DispositionKind,
    InviteServerTransaction,
    ServerTransaction,
    ServerTransactionLayer,
    TransactionTimeout,
    new_branch,
)
from srs.sip.uas import AckTimeout, TwoXxRetransmitter
from srs.siprec.admission import SourceAcl, SourceQuota, SourceRateLimiter
from srs.siprec.detect import detect_siprec
from srs.siprec.events import (
    LimitReached,
    MessageDropped,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
    UaEvent,
)
from srs.siprec.metadata import RecordingMetadata, merge_metadata, parse_metadata
from srs.siprec.multipart import SiprecBody, extract_siprec_body

SUPPORTED_OPTIONS = frozenset({"siprec", "timer", "100rel"})
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
ACCEPT = "application/sdp, application/rs-metadata+xml, multipart/mixed"


@dataclass(frozen=True, slots=True)
class UaSettings:
    """Plain values the composition root hands over; times in seconds."""

    can_decode: Callable[[Codec], bool]
    new_token: Callable[[], str]
    srtp_key: Callable[[str], str] | None = None
    codec_preference: tuple[str, ...] = ()
    user: str = "srs"
    user_agent: str = "srs"
    answer_delay: float = 0.0
    reject_status: int = 488
    reject_reason: str = "Not a SIPREC session"
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    min_se: int = 90
    max_duration: float = 86400.0
    max_sessions: int = 5000
    retry_after: int = 30
    allowed_networks: tuple[str, ...] = ()
    rate_limit_per_source: float = 0.0
    rate_limit_burst: float = 20.0
    max_streams_per_call: int = 8
    max_sessions_per_source: int = 0
    max_streams_per_source: int = 0
    max_metadata_versions: int = 100
    max_metadata_bytes: int = 1048576
    sdes_over_plain_sip: str = "warn"
    """SRTP keys (SDES a=crypto) offered over UDP/TCP: "warn" (accept, with a warning in the
    recording), "allow" (accept quietly) or "refuse" (488)."""


SDES_IN_CLEAR = (
    "SRTP keys (SDES a=crypto) were offered over unencrypted SIP: whoever can read the SIP traffic can "
    "decrypt this call's media and inject packets into it; use SIP over TLS, or set "
    "[media] sdes_over_plain_sip = true if the SIP path is protected otherwise"
)


SDES_REFUSED = "SDES keys over unencrypted SIP refused ([media] sdes_over_plain_sip = false)"


def _offers_sdes(offer: SessionDescription) -> bool:
    return any(media.crypto for media in offer.media)


class CallPhase(enum.Enum):
    OFFERED = "waiting for local ports"
    ANSWERING = "answer delayed"
    ANSWERED = "2xx sent, waiting for ACK"
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class _PendingOffer:
    """A re-INVITE or UPDATE offer waiting for ports from the layer above."""

    transaction: ServerTransaction
    request: Request
    offer: SessionDescription
    quota_streams: int = 0
    """Streams this offer took from the source's quota (given back if it is refused)."""


@dataclass
class _Call:
    session_id: str
    call_id: str
    local_tag: str
    invite: Request
    invite_transaction: InviteServerTransaction
    source: Address
    transport: Transport
    local: Address
    offer: SessionDescription
    metadata: RecordingMetadata | None
    phase: CallPhase = CallPhase.OFFERED
    dialog: Dialog | None = None
    ports: list[int] = field(default_factory=list)
    answer: Answer | None = None
    sdp_session_id: int = 0
    sdp_version: int = 0
    answer_due: float | None = None
    pending: _PendingOffer | None = None
    awaiting_ack: Hashable | None = None
    offer_outstanding: bool = False
    session_interval: int | None = None
    refresher_uac: bool = True
    uac_supports_timer: bool = False
    expires_at: float | None = None
    refresh_at: float | None = None
    max_end: float | None = None
    rank: int = 0  # creation order: due calls fire in it, as a scan of all calls would
    quota_streams: int = 0  # streams counted against the source's quota (released when the call ends)
    metadata_versions: int = 0
    metadata_bytes: int = 0

    @property
    def remote_tag(self) -> str:
        return self.invite.from_addr.tag or ""


_M_LINE_RE = re.compile(rb"^m=", re.M)


def _count_m_lines(sdp: bytes) -> int:
    """m-lines in an SDP body, counted before it is parsed: a 490-stream offer is refused
    without building 490 media descriptions."""
    return len(_M_LINE_RE.findall(sdp))


def _options(request: Request, name: str) -> set[str]:
    return {token.strip().lower() for value in request.headers.get_all(name) for token in value.split(",")}


def _routable(uri: SipUri) -> bool:
    """A target srs can put in a Request-URI or Route: SIP or SIPS, no whitespace or control bytes."""
    text = str(uri)
    return (
        uri.scheme in ("sip", "sips")
        and bool(uri.host)
        and text.isascii()
        and text.isprintable()
        and " " not in text
    )


def _session_expires(request: Request) -> tuple[int | None, str | None]:
    value = request.headers.get("session-expires") or request.headers.get("x")
    if value is None:
        return None, None
    head, _, params = value.partition(";")
    try:
        seconds = int(head.strip())
    except ValueError as exc:
        raise SipParseError(f"Session-Expires {value!r} is not a number of seconds") from exc
    refresher = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "refresher":
            refresher = val.strip().lower()
    return seconds, refresher


class SiprecUserAgent:
    """All recording sessions of one srs instance."""

    def __init__(self, settings: UaSettings) -> None:
        self.settings = settings
        self.transactions = ServerTransactionLayer(settings.t1, settings.t2, settings.t4)
        self.retransmitter = TwoXxRetransmitter(settings.t1, settings.t2)
        self.clients = ClientTransactionLayer(settings.t1, settings.t2, settings.t4)
        self.acl = SourceAcl(settings.allowed_networks)
        self.rate_limiter = SourceRateLimiter(settings.rate_limit_per_source, settings.rate_limit_burst)
        self.quota = SourceQuota(settings.max_sessions_per_source, settings.max_streams_per_source)
        self._calls: dict[str, _Call] = {}
        self._by_dialog: dict[tuple[str, str, str], _Call] = {}
        self._by_origin: dict[tuple[str, str, int], _Call] = {}
        """Live calls by their initial INVITE's Call-ID, From tag and CSeq (§8.2.2.2 merged requests)."""
        self._by_invite: dict[int, _Call] = {}
        self._awaiting_final: dict[tuple[str, str], str] = {}
        self._refreshes: dict[tuple[str, str], str] = {}
        # each live call's earliest deadline, re-armed on every change, disarmed when it ends
        self._call_deadlines: DeadlineHeap[_Call] = DeadlineHeap()
        self._seq = itertools.count()
        self.draining = False
        self.shedding: str | None = None
        """Set by the daemon while it is overloaded: new INVITEs get 503 before their bodies are read."""
        self.unavailable: str | None = None
        self.low_disk: str | None = None
        """Set by the daemon while free space is under ``min_free_mb``: OPTIONS pings get 503."""
        """Set by the daemon while it cannot reach its index: new INVITEs and out-of-dialog OPTIONS
        (an SBC's keep-alive ping) get 503 with Retry-After, so SBCs send calls to another SRS;
        calls already running go on."""

    # ----------------------------------------------------------------- queries
    @property
    def active_sessions(self) -> int:
        return len(self._calls)

    def session_ids(self) -> list[str]:
        return list(self._calls)

    def has_pending_requests(self) -> bool:
        """True while a request srs sent (BYE) still waits for its final response."""
        return bool(self._awaiting_final)

    def next_deadline(self) -> float | None:
        """The earliest timer of all layers; O(1) amortised, called after every message."""
        candidates = [
            self.transactions.next_deadline(),
            self.retransmitter.next_deadline(),
            self.clients.next_deadline(),
            self._next_call_deadline(),
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    @property
    def call_heap_size(self) -> int:
        """Entries in the call deadline heap, stale ones included (bounded by a multiple of live ones)."""
        return len(self._call_deadlines)

    @staticmethod
    def _call_deadline(call: _Call) -> float | None:
        present = [
            d for d in (call.answer_due, call.expires_at, call.max_end, call.refresh_at) if d is not None
        ]
        return min(present) if present else None

    def _rearm(self, call: _Call) -> None:
        """Queue the call's earliest deadline; every change of a deadline field ends here."""
        deadline = self._call_deadline(call)
        if deadline is not None and self._calls.get(call.session_id) is not call:
            return
        self._call_deadlines.arm(call, deadline)

    def _next_call_deadline(self) -> float | None:
        return self._call_deadlines.earliest()

    def _due_calls(self, now: float) -> list[_Call]:
        return sorted(self._call_deadlines.pop_due(now), key=lambda c: c.rank)

    # --------------------------------------------------------------- receiving
    def receive(
        self, data: bytes, source: Address, transport: Transport, local: Address, now: float
    ) -> list[UaEvent]:
        """One received message in, what to send and what happened out; never raises.

        Bad input is normal input: an unparseable request is answered when its
        transaction headers can be read, otherwise dropped with an event.
        """
        try:
            return self._receive(data, source, transport, local, now)
        except Exception as exc:  # one bad message must never stop the recorder
            return [MessageDropped(f"internal error on this message: {type(exc).__name__}: {exc}", source)]

    def answer_unframeable(
        self,
        head: bytes,
        error: ParseError,
        source: Address,
        transport: Transport,
        local: Address,
        now: float,
    ) -> list[UaEvent]:
        """A stream message that could not be framed (too large, no Content-Length).

        The edge closes the connection afterwards; before that the client gets
        513 (or 400) if the head it sent so far names its transaction.
        """
        try:
            return self._answer_unparseable(head, error, source, transport)
        except Exception as exc:
            return [
                MessageDropped(f"internal error on unframeable data: {type(exc).__name__}: {exc}", source)
            ]

    def _receive(
        self, data: bytes, source: Address, transport: Transport, local: Address, now: float
    ) -> list[UaEvent]:
        try:
            message = parse_message(data)
        except ParseError as exc:
            return self._answer_unparseable(data, exc, source, transport)
        if isinstance(message, Response):
            if not self.acl.allows(source.host):
                return [MessageDropped("response from a source outside allowed_networks", source)]
            return self._receive_response(message, source, now)
        if not self.acl.allows(source.host):
            refused = self._refuse_stateless(
                message, 403, "Forbidden", "source not allowed", source, transport
            )
            return [*refused, LimitReached("acl", "source not allowed", source, message.call_id)]
        if message.method != "ACK" and not self.rate_limiter.allow(source.host, now):
            return [MessageDropped(f"{message.method} over the request rate limit for this source", source)]
        try:
            request = stamp_received(message, source)
        except ParseError as exc:
            return self._refuse_stateless(
                message, 400, "Bad Request", f"bad Via: {exc.message}", source, transport
            )
        disposition = self.transactions.receive_request(request, source, transport, now)
        kind = disposition.kind
        if kind is DispositionKind.RETRANSMISSION:
            return list(disposition.outgoing)
        if kind is DispositionKind.ACK_ABSORBED:
            return []
        if kind is DispositionKind.ACK_FOR_CORE:
            return self._receive_ack(request, now)
        txn = disposition.transaction
        assert txn is not None
        try:
            if kind is DispositionKind.CANCEL:
                return self._receive_cancel(request, txn, disposition.cancelled, now)
            return self._dispatch(request, txn, source, transport, local, now)
        except ParseError as exc:
            return self._refuse(txn, exc.status, exc.reason, exc.message, now)
        except Exception as exc:  # answer 500 rather than leave the client hanging
            detail = f"internal error: {type(exc).__name__}: {exc}"
            return self._refuse(txn, 500, "Server Internal Error", detail, now)

    def _answer_unparseable(
        self, data: bytes, error: ParseError, source: Address, transport: Transport
    ) -> list[UaEvent]:
        if not self.acl.allows(source.host):
            return [
                MessageDropped(
                    f"unparseable message from a source outside allowed_networks: {error.message}", source
                )
            ]
        outgoing = answer_unparseable(data, error, source, transport, to_tag=self.settings.new_token())
        if outgoing is None:
            return [MessageDropped(f"unparseable SIP message: {error.message}", source)]
        readable = read_headers(data)
        method = readable.method if readable is not None else ""
        call_id = readable.call_id if readable is not None else None
        status = error.status if 400 <= error.status <= 699 else 400
        return [outgoing, RequestRefused(method, status, error.reason, error.message, source, call_id)]

    def _refuse_stateless(
        self,
        request: Request,
        status: int,
        reason: str,
        detail: str,
        source: Address,
        transport: Transport,
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[UaEvent]:
        """An error without a transaction: admission refusals must not cost state."""
        refused = RequestRefused(request.method, status, reason, detail, source, request.call_id)
        if request.method == "ACK":
            return [refused]
        response = build_response(
            request,
            status,
            reason,
            to_tag=self.settings.new_token(),
            extra_headers=[*extra, ("Warning", f'399 srs "{safe_text(detail)}"')],
        )
        try:
            destination = response_destination(stamp_received(request, source).top_via, source, transport)
        except ParseError:
            destination = source
        return [Outgoing(serialize(response), destination, transport), refused]

    def _dispatch(
        self,
        request: Request,
        txn: ServerTransaction,
        source: Address,
        transport: Transport,
        local: Address,
        now: float,
    ) -> list[UaEvent]:
        method = request.method
        to_tag = request.to_addr.tag
        if to_tag:
            call = self._by_dialog.get((request.call_id, to_tag, request.from_addr.tag or ""))
            if call is None or call.dialog is None:
                return self._refuse(txn, 481, "Call/Transaction Does Not Exist", "unknown dialog", now)
            call.dialog.check_remote_cseq(request.cseq.number)
            if method == "BYE":
                return self._receive_bye(call, txn, now)
            if method == "INVITE":
                trying = self._respond(txn, 100, now)  # ports for a re-offer may take a while
                return [*trying, *self._receive_reoffer(call, txn, request, now)]
            if method == "UPDATE":
                return self._receive_reoffer(call, txn, request, now)
            if method in ("INFO", "OPTIONS", "NOTIFY"):
                body = self._metadata_body(request)
                over = self._metadata_over(call, body) if body is not None else None
                if over is not None:
                    # the call keeps recording; only this update is refused (RFC 6086 §4.2.2:
                    # a failed INFO does not end the dialog)
                    return self._limit_refusal(txn, over, now, call=call)
                events = self._metadata_update(call, body, now) if body is not None else []
                return [*events, *self._respond(txn, 200, now, extra=self._capabilities())]
            return self._refuse(
                txn, 405, "Method Not Allowed", f"{method} in dialog", now, [("Allow", ALLOW)]
            )
        if method == "INVITE":
            origin = (request.call_id, request.from_addr.tag or "", request.cseq.number)
            if origin in self._by_origin:
                # §8.2.2.2: the same request by another path (or resent with a new branch) is not a new call
                return self._refuse(txn, 482, "Loop Detected", "merged request", now)
            return self._receive_invite(request, txn, source, transport, local, now)
        if method == "OPTIONS":
            # an SBC's ping decides whether it sends its next call here: 503 whenever a new INVITE
            # would be refused for this node's state, so the SBC hunts the next recorder at once
            busy = self._not_taking_calls()
            if busy is not None:
                retry = [("Retry-After", str(self.settings.retry_after))]
                return self._refuse(txn, 503, "Service Unavailable", busy, now, retry)
            return self._respond(txn, 200, now, extra=self._capabilities(), to_tag=self.settings.new_token())
        if method in ("BYE", "UPDATE", "INFO", "PRACK"):
            return self._refuse(
                txn, 481, "Call/Transaction Does Not Exist", f"{method} outside a dialog", now
            )
        return self._refuse(
            txn, 405, "Method Not Allowed", f"{method} not supported", now, [("Allow", ALLOW)]
        )

    def _not_taking_calls(self) -> str | None:
        """Why this node takes no new call now (draining, shedding, disk, index), or None."""
        if self.draining:
            return "draining"
        return self.shedding or self.low_disk or self.unavailable

    # --------------------------------------------------------------- INVITE
    def _receive_invite(
        self,
        request: Request,
        txn: ServerTransaction,
        source: Address,
        transport: Transport,
        local: Address,
        now: float,
    ) -> list[UaEvent]:
        assert isinstance(txn, InviteServerTransaction)
        trying = self._respond(txn, 100, now)
        settings = self.settings
        retry = [("Retry-After", str(settings.retry_after))]
        if self.draining:
            return [*trying, *self._refuse(txn, 503, "Service Unavailable", "shutting down", now, retry)]
        if self.shedding is not None:
            return [*trying, *self._refuse(txn, 503, "Service Unavailable", self.shedding, now, retry)]
        if self.unavailable is not None:
            return [*trying, *self._refuse(txn, 503, "Service Unavailable", self.unavailable, now, retry)]
        if len(self._calls) >= settings.max_sessions:
            return [
                *trying,
                *self._refuse(txn, 503, "Service Unavailable", "max_sessions reached", now, retry),
            ]
        over = self.quota.refusal(source.host, 1, 0)
        if over is not None:
            return [*trying, *self._limit_refusal(txn, over, now)]
        unsupported = sorted(_options(request, "require") - SUPPORTED_OPTIONS - {""})
        if unsupported:
            detail = ", ".join(unsupported)
            return [
                *trying,
                *self._refuse(
                    txn, 420, "Bad Extension", f"unsupported: {detail}", now, [("Unsupported", detail)]
                ),
            ]
        if not detect_siprec(request):
            return [
                *trying,
                *self._refuse(txn, settings.reject_status, settings.reject_reason, "no SIPREC marker", now),
            ]
        body = self._body(request)
        if body.sdp is None:
            raise SdpError("INVITE without an SDP offer (offerless INVITE) is not supported")
        streams = _count_m_lines(body.sdp)
        if settings.max_streams_per_call and streams > settings.max_streams_per_call:
            return [*trying, *self._limit_refusal(txn, "streams_per_call", now, streams=streams)]
        over = self.quota.refusal(source.host, 1, streams)
        if over is not None:
            return [*trying, *self._limit_refusal(txn, over, now, streams=streams)]
        parsed = parse_sdp(body.sdp)
        warnings = [*body.warnings, *parsed.warnings]
        sdes = self._sdes_in_clear(transport, parsed.session)
        if sdes == "refuse":
            return [*trying, *self._refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)]
        if sdes == "warn":
            warnings.append(SDES_IN_CLEAR)
        metadata = self._metadata(body, warnings)
        interval, refresher = _session_expires(request)
        if interval is not None and interval < settings.min_se:
            return [
                *trying,
                *self._refuse(
                    txn,
                    422,
                    "Session Interval Too Small",
                    f"{interval} s",
                    now,
                    [("Min-SE", str(settings.min_se))],
                ),
            ]
        session_id = settings.new_token()
        local_tag = settings.new_token()
        call = _Call(
            session_id=session_id,
            call_id=request.call_id,
            local_tag=local_tag,
            invite=request,
            invite_transaction=txn,
            source=source,
            transport=transport,
            local=local,
            offer=parsed.session,
            metadata=metadata,
            sdp_session_id=zlib.crc32(session_id.encode()) % 10**9,
        )
        # §12.1.1: a dialog needs the peer's Contact; refuse now rather than fail at answer time
        call.dialog = Dialog.from_invite(request, local_tag, self._contact(call))
        if not _routable(call.dialog.remote_target):
            raise SipParseError(f"Contact {call.dialog.remote_target} is not a usable SIP URI (§8.1.1.8)")
        if not all(_routable(route.uri) for route in call.dialog.route_set):
            raise SipParseError("Record-Route holds an unusable URI")
        call.uac_supports_timer = "timer" in (_options(request, "supported") | _options(request, "require"))
        if interval is not None and call.uac_supports_timer:
            call.session_interval = interval
            call.refresher_uac = refresher != "uas"
        call.rank = next(self._seq)
        call.quota_streams = len(parsed.session.media)
        self.quota.take(source.host, 1, call.quota_streams)
        if metadata is not None:
            self._count_metadata(call, body)
        self._calls[session_id] = call
        self._by_invite[id(txn)] = call
        self._by_origin[(request.call_id, request.from_addr.tag or "", request.cseq.number)] = call
        events: list[UaEvent] = [*trying]
        events.append(
            SessionOffered(
                session_id=session_id,
                call_id=request.call_id,
                source=source,
                transport=transport,
                offer=parsed.session,
                ports_needed=len(parsed.session.media),
                initial=True,
                metadata=metadata,
                warnings=tuple(warnings),
                from_uri=str(request.from_addr.uri),
                to_uri=str(request.to_addr.uri),
            )
        )
        if metadata is not None:
            events.append(MetadataReceived(session_id, now, metadata, metadata))
        return events

    def _sdes_in_clear(self, transport: Transport, offer: SessionDescription) -> str | None:
        """The ``sdes_over_plain_sip`` policy when ``offer`` carries SDES keys over UDP/TCP, else None."""
        if transport is Transport.TLS or not _offers_sdes(offer):
            return None
        return self.settings.sdes_over_plain_sip

    def _body(self, request: Request) -> SiprecBody:
        return extract_siprec_body(
            request.headers.get("content-type"), request.body, request.headers.get("content-disposition")
        )

    @staticmethod
    def _metadata(body: SiprecBody, warnings: list[str]) -> RecordingMetadata | None:
        """Unreadable metadata never costs the recording: it becomes a warning."""
        if body.metadata is None:
            return None
        try:
            metadata = parse_metadata(body.metadata)
        except ParseError as exc:
            warnings.append(f"metadata ignored: {exc.message}")
            return None
        warnings.extend(metadata.warnings)
        return metadata

    # ----------------------------------------------------- answers from above
    def accept(self, session_id: str, ports: Sequence[int], now: float) -> list[UaEvent]:
        """Ports for the pending offer are bound: answer it (after ``answer_delay`` for an initial one).

        Never raises: an answer that cannot be built refuses the offer instead (488
        or 500); for an initial offer that also ends the session (answered=False),
        so the layer above releases what it bound.
        """
        call = self._calls.get(session_id)
        if call is None:
            return []
        try:
            return self._accept(call, ports, now)
        except Exception as exc:
            status, reason = (
                (exc.status, exc.reason) if isinstance(exc, ParseError) else (500, "Server Internal Error")
            )
            detail = f"no answer: {exc.message if isinstance(exc, ParseError) else repr(exc)}"
            if call.phase is CallPhase.OFFERED:
                events = self._refuse(call.invite_transaction, status, reason, detail, now)
                self._forget(call)
                return [*events, SessionEnded(call.session_id, now, detail, answered=False)]
            pending = self._drop_pending(call)
            if pending is None:
                return [MessageDropped(detail, call.source)]
            return self._refuse(pending.transaction, status, reason, detail, now)

    def _accept(self, call: _Call, ports: Sequence[int], now: float) -> list[UaEvent]:
        session_id = call.session_id
        call.ports.extend(ports)
        if call.phase is CallPhase.OFFERED:
            call.answer = self._build_answer(call, call.offer)
            assert call.dialog is not None
            self._by_dialog[call.dialog.key] = call
            if self.settings.answer_delay > 0:
                call.phase = CallPhase.ANSWERING
                call.answer_due = now + self.settings.answer_delay
                self._rearm(call)
                return []
            return self._send_initial_answer(call, now)
        pending = call.pending
        if pending is None:
            return []
        answer = self._build_answer(call, pending.offer)
        call.pending = None
        call.offer = pending.offer
        call.answer = answer
        # the new SDP is applied before its 2xx leaves: an SBC that moves its media (failover) sends
        # from the new address as soon as it has the answer, and its first packets must be allowed
        answered = SessionAnswered(
            session_id, now, call.answer.streams, initial=False, local_address=call.local.host
        )
        return [answered, *self._send_2xx(call, pending.transaction, call.answer.sdp, now)]

    def reject(
        self, session_id: str, status: int, reason: str, now: float, retry_after: int | None = None
    ) -> list[UaEvent]:
        """The layer above cannot take the offer (no ports, disk full …)."""
        call = self._calls.get(session_id)
        if call is None:
            return []
        extra = [] if retry_after is None else [("Retry-After", str(retry_after))]
        if call.phase is CallPhase.OFFERED:
            self._forget(call)
            return self._refuse(
                call.invite_transaction, status, reason, "refused by the recorder", now, extra
            )
        pending = self._drop_pending(call)
        if pending is not None:
            txn = pending.transaction
            return self._refuse(txn, status, reason, "re-offer refused by the recorder", now, extra)
        return []

    def _drop_pending(self, call: _Call) -> _PendingOffer | None:
        """A re-offer that will not be answered: the streams it took from the quota go back."""
        pending, call.pending = call.pending, None
        if pending is not None and pending.quota_streams:
            call.quota_streams -= pending.quota_streams
            self.quota.release(call.source.host, 0, pending.quota_streams)
        return pending

    def _build_answer(self, call: _Call, offer: SessionDescription) -> Answer:
        call.sdp_version += 1
        return build_answer(
            offer,
            local_address=call.local.host,
            ports=call.ports,
            can_decode=self.settings.can_decode,
            preference=self.settings.codec_preference,
            session_id=call.sdp_session_id,
            session_version=call.sdp_version,
            srtp_key=self.settings.srtp_key,
        )

    def _send_initial_answer(self, call: _Call, now: float) -> list[UaEvent]:
        assert call.answer is not None
        call.answer_due = None
        events = self._send_2xx(call, call.invite_transaction, call.answer.sdp, now)
        call.phase = CallPhase.ANSWERED
        self._arm_session_timer(call, now)
        call.max_end = now + self.settings.max_duration
        self._rearm(call)
        events.append(
            SessionAnswered(
                call.session_id, now, call.answer.streams, initial=True, local_address=call.local.host
            )
        )
        return events

    def _send_2xx(self, call: _Call, txn: ServerTransaction, sdp: bytes, now: float) -> list[UaEvent]:
        extra = [("Contact", self._contact(call)), *self._capabilities()]
        if call.session_interval is not None:
            refresher = "uac" if call.refresher_uac else "uas"
            extra.append(("Session-Expires", f"{call.session_interval};refresher={refresher}"))
            extra.append(("Require", "timer"))
        events = self._respond(
            txn, 200, now, extra=extra, body=sdp, content_type="application/sdp", to_tag=call.local_tag
        )
        if txn.request.method == "INVITE":
            key = (call.session_id, txn.request.cseq.number)
            if call.awaiting_ack is not None and call.awaiting_ack != key:
                self.retransmitter.cancel(call.awaiting_ack)
            for event in events:
                if isinstance(event, Outgoing):
                    self.retransmitter.start(key, event.data, event.destination, event.transport, now)
            call.awaiting_ack = key
        return events

    def _contact(self, call: _Call) -> str:
        scheme = "sips" if call.transport is Transport.TLS else "sip"
        host = f"[{call.local.host}]" if ":" in call.local.host else call.local.host
        transport = "" if call.transport is Transport.UDP else f";transport={call.transport.value.lower()}"
        return f"<{scheme}:{self.settings.user}@{host}:{call.local.port}{transport}>;+sip.srs"

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ALLOW),
            ("Supported", "siprec, timer"),
            ("Accept", ACCEPT),
            ("User-Agent", self.settings.user_agent),
        ]

    def _arm_session_timer(self, call: _Call, now: float) -> None:
        """RFC 4028 §10: the refresher refreshes at half the interval; the other side, without a
        refresh, sends BYE min(32, interval/3) s before the session expires.

        srs is the refresher only when the UAC asked for it (refresher=uas, which §9
        obliges the UAS to keep); it then refreshes with UPDATE and ends the session
        itself when the interval passes without a successful refresh.
        """
        if call.session_interval is None:
            return
        interval = call.session_interval
        if call.refresher_uac:
            call.refresh_at = None
            call.expires_at = now + interval - min(32, interval / 3)
        else:
            call.refresh_at = now + interval / 2
            call.expires_at = now + interval
        self._rearm(call)

    def _send_refresh(self, call: _Call, now: float) -> list[UaEvent]:
        """RFC 4028 §7.4: a session refresh by srs, an UPDATE without an offer."""
        assert call.dialog is not None and call.session_interval is not None
        call.refresh_at = now + call.session_interval / 2
        self._rearm(call)
        request = call.dialog.build_request(
            "UPDATE",
            via_host=call.local.host,
            via_port=call.local.port,
            transport=call.transport,
            branch=new_branch(self.settings.new_token()),
            extra_headers=[
                ("Session-Expires", f"{call.session_interval};refresher=uas"),
                ("Supported", "timer"),
                ("User-Agent", self.settings.user_agent),
            ],
        )
        txn, outgoing = self.clients.send_request(
            request, call.source, call.transport, now, self._reconnect(call)
        )
        self._refreshes[txn.key] = call.session_id
        return [outgoing]

    def _refresh_answered(self, session_id: str, status: int, now: float) -> list[UaEvent]:
        """§10: 408, 481 or no answer at all ends the session; a 2xx renews it; others wait for expiry."""
        call = self._calls.get(session_id)
        if call is None or call.session_interval is None:
            return []
        if 200 <= status < 300:
            call.expires_at = now + call.session_interval
            self._rearm(call)
            return []
        if status in (408, 481):
            return self._hangup(call, now, f"session refresh failed with {status}")
        return []

    # ------------------------------------------------------------- ACK, CANCEL
    def _receive_ack(self, request: Request, now: float) -> list[UaEvent]:
        key = (request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")
        call = self._by_dialog.get(key)
        if call is None:
            return []
        if call.awaiting_ack == (call.session_id, request.cseq.number):
            self.retransmitter.ack(call.awaiting_ack)
            call.awaiting_ack = None
            call.offer_outstanding = False
        if call.phase is CallPhase.ANSWERED:
            call.phase = CallPhase.CONFIRMED
        return []

    def _receive_cancel(
        self,
        request: Request,
        txn: ServerTransaction,
        cancelled: InviteServerTransaction | None,
        now: float,
    ) -> list[UaEvent]:
        if cancelled is None:
            return self._refuse(txn, 481, "Call/Transaction Does Not Exist", "CANCEL matches no INVITE", now)
        events = self._respond(txn, 200, now)
        call = self._by_invite.get(id(cancelled))
        if call is None:
            return events + self._cancel_reinvite(cancelled, now)
        if call.phase not in (CallPhase.OFFERED, CallPhase.ANSWERING):
            return events
        events += self._respond(cancelled, 487, now, to_tag=call.local_tag)
        self._forget(call)
        events.append(SessionEnded(call.session_id, now, "cancelled", answered=False))
        return events

    def _cancel_reinvite(self, cancelled: InviteServerTransaction, now: float) -> list[UaEvent]:
        """§9.2: a re-INVITE still waiting for ports ends with 487 and the session stays as it was."""
        request = cancelled.request
        call = self._by_dialog.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))
        if call is not None and call.pending is not None and call.pending.transaction is cancelled:
            self._drop_pending(call)
            return self._respond(cancelled, 487, now, to_tag=call.local_tag)
        return []

    # --------------------------------------------------------------- in dialog
    def _receive_bye(self, call: _Call, txn: ServerTransaction, now: float) -> list[UaEvent]:
        events = self._respond(txn, 200, now)
        answered = call.phase in (CallPhase.ANSWERED, CallPhase.CONFIRMED)
        if call.phase is CallPhase.ANSWERING:
            events += self._respond(call.invite_transaction, 487, now, to_tag=call.local_tag)
        self._forget(call)
        events.append(SessionEnded(call.session_id, now, "bye", answered=answered))
        return events

    def _receive_reoffer(
        self, call: _Call, txn: ServerTransaction, request: Request, now: float
    ) -> list[UaEvent]:
        """re-INVITE or UPDATE: refresh, maybe new metadata, maybe a new offer on the same ports.

        Offer collisions: while an offer srs received is still unanswered, a new
        INVITE or offer gets 500 with Retry-After (RFC 3261 §14.2, RFC 3311 §5.2);
        while srs's own offer (in the 2xx to an offerless re-INVITE) waits for its
        answer in the ACK, a new offer gets 491.
        """
        is_invite = request.method == "INVITE"
        retry = [("Retry-After", "1")]
        if call.phase in (CallPhase.OFFERED, CallPhase.ANSWERING):
            return self._refuse(
                txn, 500, "Server Internal Error", "initial offer still being answered", now, retry
            )
        body = self._body(request)
        has_offer = body.sdp is not None
        if call.pending is not None and (is_invite or has_offer):
            return self._refuse(txn, 500, "Server Internal Error", "an offer is already pending", now, retry)
        if call.offer_outstanding and (is_invite or has_offer):
            return self._refuse(txn, 491, "Request Pending", "srs's offer is not yet answered", now)
        if body.sdp is not None:
            streams = _count_m_lines(body.sdp)
            if self.settings.max_streams_per_call and streams > self.settings.max_streams_per_call:
                return self._limit_refusal(txn, "streams_per_call", now, streams=streams)
            added = max(0, streams - call.quota_streams)
            over = self.quota.refusal(call.source.host, 0, added)
            if over is not None:
                return self._limit_refusal(txn, over, now, streams=added)
        self._peer_has_dialog(call)
        assert call.dialog is not None
        contact = request.headers.get("contact")
        if contact:
            with contextlib.suppress(ParseError):
                if _routable(NameAddr.parse(contact).uri):
                    call.dialog.update_target(contact)
        interval, refresher = _session_expires(request)
        if interval is not None:
            if interval < self.settings.min_se:
                return self._refuse(
                    txn,
                    422,
                    "Session Interval Too Small",
                    f"{interval} s",
                    now,
                    [("Min-SE", str(self.settings.min_se))],
                )
            if "timer" in (_options(request, "supported") | _options(request, "require")):
                call.uac_supports_timer = True
                call.session_interval = interval
                call.refresher_uac = refresher != "uas"
        parsed = parse_sdp(body.sdp) if body.sdp is not None else None
        sdes = self._sdes_in_clear(call.transport, parsed.session) if parsed is not None else None
        if sdes == "refuse":
            return self._refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)
        self._arm_session_timer(call, now)
        events = self._metadata_update(call, body, now)
        if parsed is None:
            if is_invite:
                # §14.2 / RFC 3264 §8: an offerless re-INVITE gets srs's current SDP as the offer,
                # unchanged (same o= version) because nothing changed
                assert call.answer is not None
                call.offer_outstanding = True
                return [*events, *self._send_2xx(call, txn, call.answer.sdp, now)]
            return [*events, *self._send_2xx(call, txn, b"", now)]
        added = max(0, len(parsed.session.media) - call.quota_streams)
        call.pending = _PendingOffer(txn, request, parsed.session, added)
        call.quota_streams += added
        self.quota.take(call.source.host, 0, added)
        events.append(
            SessionOffered(
                session_id=call.session_id,
                call_id=call.call_id,
                source=call.source,
                transport=call.transport,
                offer=parsed.session,
                ports_needed=max(0, len(parsed.session.media) - len(call.ports)),
                initial=False,
                metadata=call.metadata,
                warnings=(*body.warnings, *parsed.warnings, *([SDES_IN_CLEAR] if sdes == "warn" else [])),
                from_uri=str(call.invite.from_addr.uri),
                to_uri=str(call.invite.to_addr.uri),
            )
        )
        return events

    def _peer_has_dialog(self, call: _Call) -> None:
        """An in-dialog request proves the peer got our 2xx even if its ACK is lost or late."""
        if call.phase is CallPhase.ANSWERED and call.awaiting_ack is not None and not call.offer_outstanding:
            self.retransmitter.cancel(call.awaiting_ack)
            call.awaiting_ack = None
            call.phase = CallPhase.CONFIRMED

    def _metadata_body(self, request: Request) -> SiprecBody | None:
        if not request.body:
            return None
        try:
            return self._body(request)
        except ParseError:
            return None

    def _metadata_update(self, call: _Call, body: SiprecBody, now: float) -> list[UaEvent]:
        """New metadata for the call; beyond its bounds it is left out (and said so), the call goes on."""
        over = self._metadata_over(call, body)
        if over is not None:
            return [
                LimitReached(
                    over, self._limit_detail(over, call.source, call=call), call.source, call.call_id
                )
            ]
        warnings: list[str] = []
        update = self._metadata(body, warnings)
        if update is None:
            return []
        self._count_metadata(call, body)
        call.metadata = merge_metadata(call.metadata, update)
        return [MetadataReceived(call.session_id, now, update, call.metadata)]

    def _metadata_over(self, call: _Call, body: SiprecBody) -> str | None:
        """Which metadata bound one more update would pass: every version is kept in the index
        and served whole, so versions and bytes per recording are capped."""
        if body.metadata is None:
            return None
        settings = self.settings
        if settings.max_metadata_versions and call.metadata_versions >= settings.max_metadata_versions:
            return "metadata_versions"
        if (
            settings.max_metadata_bytes
            and call.metadata_bytes + len(body.metadata) > settings.max_metadata_bytes
        ):
            return "metadata_bytes"
        return None

    @staticmethod
    def _count_metadata(call: _Call, body: SiprecBody) -> None:
        call.metadata_versions += 1
        call.metadata_bytes += len(body.metadata or b"")

    # ------------------------------------------------------------------ limits
    def _limit_detail(
        self, limit: str, source: Address, *, streams: int = 0, call: _Call | None = None
    ) -> str:
        settings = self.settings
        sessions_held, streams_held = self.quota.held(source.host)
        if limit == "streams_per_call":
            return f"{streams} media streams, at most {settings.max_streams_per_call} per call"
        if limit == "sessions_per_source":
            return f"{source.host} holds {sessions_held} sessions, at most {settings.max_sessions_per_source}"
        if limit == "streams_per_source":
            return (
                f"{source.host} holds {streams_held} media streams, {streams} more would pass "
                f"{settings.max_streams_per_source}"
            )
        if limit == "metadata_versions":
            return f"metadata update refused: {settings.max_metadata_versions} versions per recording reached"
        if limit == "metadata_bytes":
            held = call.metadata_bytes if call is not None else 0
            most = settings.max_metadata_bytes
            return f"metadata update refused: {held} bytes held, at most {most} per recording"
        return limit

    def _limit_refusal(
        self, txn: ServerTransaction, limit: str, now: float, *, streams: int = 0, call: _Call | None = None
    ) -> list[UaEvent]:
        """A bound refuses this request. Too many streams in one offer is a property of the offer
        (488, RFC 3261 §21.4.26: not acceptable here, the Warning says why); a source over its
        share of sessions or streams is a temporary state of this server (503 with Retry-After, so
        an SBC tries another recorder); metadata past its bounds is refused for good (403) while the
        call keeps recording."""
        detail = self._limit_detail(limit, txn.source, streams=streams, call=call)
        extra: list[tuple[str, str]] = []
        if limit == "streams_per_call":
            status, reason = 488, "Not Acceptable Here"
        elif limit in ("sessions_per_source", "streams_per_source"):
            status, reason = 503, "Service Unavailable"
            extra.append(("Retry-After", str(self.settings.retry_after)))
        else:
            status, reason = 403, "Forbidden"
        events = self._refuse(txn, status, reason, detail, now, extra)
        return [*events, LimitReached(limit, detail, txn.source, txn.request.call_id)]

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: float) -> list[UaEvent]:
        events: list[UaEvent] = []
        for item in self.transactions.on_timer(now):
            if isinstance(item, TransactionTimeout):
                continue
            events.append(item)
        for item2 in self.retransmitter.on_timer(now):
            if isinstance(item2, AckTimeout):
                session_id = item2.key[0] if isinstance(item2.key, tuple) else None
                call = self._calls.get(str(session_id))
                if call is not None:
                    call.awaiting_ack = None
                    events += self._hangup(call, now, "no ACK for 2xx")
                continue
            events.append(item2)
        for call in self._due_calls(now):
            if self._calls.get(call.session_id) is not call:
                continue  # ended by an earlier event of this tick
            if (
                call.refresh_at is not None
                and call.refresh_at <= now
                and call.phase in (CallPhase.ANSWERED, CallPhase.CONFIRMED)
            ):
                events += self._send_refresh(call, now)
            if call.answer_due is not None and call.answer_due <= now and call.phase is CallPhase.ANSWERING:
                events += self._send_initial_answer(call, now)
            elif call.expires_at is not None and call.expires_at <= now:
                events += self._hangup(call, now, "session expired")
            elif call.max_end is not None and call.max_end <= now:
                events += self._hangup(call, now, "maximum duration reached")
            self._rearm(call)  # ignored if the call ended
        for item3 in self.clients.on_timer(now):
            if isinstance(item3, ClientTimeout):
                # §8.1.3.1: Timer F counts as a 408
                key = item3.transaction.key
                self._awaiting_final.pop(key, None)
                refreshed = self._refreshes.pop(key, None)
                if refreshed is not None:
                    events += self._refresh_answered(refreshed, 408, now)
                continue
            events.append(item3)
        return events

    # -------------------------------------------------------------- ending
    def start_draining(self) -> None:
        """New INVITEs get 503 with Retry-After from now on; running sessions go on."""
        self.draining = True

    def hangup(self, session_id: str, now: float, reason: str) -> list[UaEvent]:
        call = self._calls.get(session_id)
        return [] if call is None else self._hangup(call, now, reason)

    def hangup_all(self, now: float, reason: str) -> list[UaEvent]:
        events: list[UaEvent] = []
        for call in list(self._calls.values()):
            events += self._hangup(call, now, reason)
        return events

    def _hangup(self, call: _Call, now: float, reason: str) -> list[UaEvent]:
        """srs ends the session itself: BYE for an answered one, 503 for one not yet answered."""
        events: list[UaEvent] = []
        answered = call.phase in (CallPhase.ANSWERED, CallPhase.CONFIRMED)
        if answered and call.dialog is not None:
            if call.awaiting_ack is not None:
                self.retransmitter.cancel(call.awaiting_ack)
            events.append(self._send_bye(call, now))
        elif call.phase in (CallPhase.OFFERED, CallPhase.ANSWERING):
            events += self._respond(
                call.invite_transaction,
                503,
                now,
                to_tag=call.local_tag,
                extra=[("Retry-After", str(self.settings.retry_after))],
            )
        self._forget(call)
        events.append(SessionEnded(call.session_id, now, reason, answered=answered))
        return events

    @staticmethod
    def _reconnect(call: _Call) -> Address | None:
        """Where a request of srs's may open a new connection if the peer's has closed: the host
        that sent the INVITE (it completed a handshake, so it is not forged), at its Via port."""
        return reconnect_address(call.invite.top_via, call.source, call.transport)

    def _send_bye(self, call: _Call, now: float) -> Outgoing:
        assert call.dialog is not None
        branch = new_branch(self.settings.new_token())
        request = call.dialog.build_request(
            "BYE",
            via_host=call.local.host,
            via_port=call.local.port,
            transport=call.transport,
            branch=branch,
            extra_headers=[("User-Agent", self.settings.user_agent)],
        )
        txn, outgoing = self.clients.send_request(
            request, call.source, call.transport, now, self._reconnect(call)
        )
        self._awaiting_final[txn.key] = call.session_id
        return outgoing

    def _receive_response(self, response: Response, source: Address, now: float) -> list[UaEvent]:
        """Responses to srs's BYEs: any final one ends the wait; the rest is a stray."""
        key = (response.top_via.branch or "", response.cseq.method)
        known = key in self._awaiting_final or key in self._refreshes
        matched = self.clients.receive_response(response, now)
        if matched is not None and response.status >= 200:
            self._awaiting_final.pop(matched.transaction.key, None)
            refreshed = self._refreshes.pop(matched.transaction.key, None)
            if refreshed is not None:
                return self._refresh_answered(refreshed, response.status, now)
        if matched is not None or known:
            return []
        return [MessageDropped(f"response {response.status} matches no pending request of ours", source)]

    def _forget(self, call: _Call) -> None:
        call.phase = CallPhase.ENDED
        if self._calls.get(call.session_id) is call:
            del self._calls[call.session_id]
            self._call_deadlines.disarm(call)
            self.quota.release(call.source.host, 1, call.quota_streams)
        self._by_invite.pop(id(call.invite_transaction), None)
        invite = call.invite
        origin = (invite.call_id, invite.from_addr.tag or "", invite.cseq.number)
        if self._by_origin.get(origin) is call:
            del self._by_origin[origin]
        if call.dialog is not None:
            self._by_dialog.pop(call.dialog.key, None)
        if call.awaiting_ack is not None:
            self.retransmitter.cancel(call.awaiting_ack)
            call.awaiting_ack = None

    # --------------------------------------------------------------- replies
    def _respond(
        self,
        txn: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
    ) -> list[UaEvent]:
        if to_tag is None and status > 100:
            to_tag = self._tag_for(txn)
        response = build_response(
            txn.request,
            status,
            reason,
            to_tag=to_tag,
            extra_headers=extra,
            body=body,
            content_type=content_type,
        )
        data = self.transactions.send_response(txn, response, now)
        if not data:
            return []
        return [Outgoing(data, txn.destination, txn.transport, txn.reconnect)]

    def _tag_for(self, txn: ServerTransaction) -> str:
        call = self._by_invite.get(id(txn))
        return call.local_tag if call is not None else self.settings.new_token()

    def _refuse(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str,
        detail: str,
        now: float,
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[UaEvent]:
        request = txn.request
        if request.method == "INVITE":
            call = self._by_invite.get(id(txn))
            if call is not None and call.phase is CallPhase.OFFERED:
                self._forget(call)
        events = self._respond(
            txn, status, now, reason=reason, extra=[*extra, ("Warning", f'399 srs "{detail}"')]
        )
        events.append(RequestRefused(request.method, status, reason, detail, txn.source, request.call_id))
        return events
