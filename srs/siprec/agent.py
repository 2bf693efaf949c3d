"""The SRS user agent: RFC 3261 UAS core and RFC 7866 recording-session handling, sans-IO.

``SiprecUserAgent.receive(data, source, transport, local, now)`` takes the bytes
of one SIP message and returns what to send and what happened
(:mod:`srs.siprec.events`).  Timers are driven by ``next_deadline()`` and
``on_timer(now)``.  Nothing here reads a clock, opens a socket or touches a file,
so every exchange is testable byte for byte.

One recording session is one SIP dialog: re-INVITEs, UPDATEs, pauses and
metadata updates change that session and never start another.

The agent is the dispatcher: it parses, admits (:mod:`srs.siprec.admission`),
finds the call (:mod:`srs.siprec.calls`) and delivers an input to it; the call's
phase moves only in :func:`srs.siprec.call.step`, whose effects call back into
the agent's hooks below. The session timer is :mod:`srs.siprec.session_timer`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

from srs.errors import ParseError, SdpError, SipParseError
from srs.sdp.model import SessionDescription
from srs.sdp.parse import parse_sdp
from srs.sip.client import ClientTimeout, ClientTransactionLayer
from srs.sip.dialog import Dialog
from srs.sip.message import Request, Response, parse_message
from srs.sip.routing import Address, Transport, stamp_received
from srs.sip.transaction import (
    DispositionKind,
    InviteServerTransaction,
    ServerTransaction,
    ServerTransactionLayer,
    TransactionTimeout,
)
from srs.sip.uas import AckTimeout, TwoXxRetransmitter
from srs.siprec.admission import NodeAdmission, Refusal, SourceAcl, SourceQuota, SourceRateLimiter
from srs.siprec.call import Call, CallInput, Stimulus, step
from srs.siprec.calls import Calls
from srs.siprec.effects import CallEffects, offered_event
from srs.siprec.events import (
    LimitReached,
    MessageDropped,
    MetadataReceived,
    UaEvent,
)
from srs.siprec.limits import count_metadata
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.offers import (
    SDES_IN_CLEAR,
    SDES_REFUSED,
    count_m_lines,
    read_body,
    read_metadata,
    routable,
    sdes_in_clear,
)
from srs.siprec.replies import ALLOW, capabilities, refuse_stateless, refuse_unparseable
from srs.siprec.session_timer import (
    IntervalTooSmall,
    RefreshOutcome,
    SessionTimer,
    negotiate,
    refresh_outcome,
)
from srs.siprec.settings import UaSettings

T = TypeVar("T")


class _NodeState(Generic[T]):
    """An attribute of the node's admission state the daemon sets on the agent (``ua.shedding = …``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, agent: SiprecUserAgent, owner: Any = None) -> T:
        return cast(T, getattr(agent.admission, self.name))

    def __set__(self, agent: SiprecUserAgent, value: T) -> None:
        setattr(agent.admission, self.name, value)


class SiprecUserAgent:
    """All recording sessions of one srs instance."""

    draining = _NodeState[bool]()
    shedding = _NodeState[str | None]()
    """Set by the daemon while it is overloaded: new INVITEs get 503 before their bodies are read."""
    unavailable = _NodeState[str | None]()
    """Set by the daemon while it cannot reach its index: new INVITEs and out-of-dialog OPTIONS
    (an SBC's keep-alive ping) get 503 with Retry-After, so SBCs send calls to another SRS;
    calls already running go on."""
    low_disk = _NodeState[str | None]()
    """Set by the daemon while free space is under ``min_free_mb``: OPTIONS pings get 503."""

    def __init__(self, settings: UaSettings) -> None:
        self.settings = settings
        self.transactions = ServerTransactionLayer(settings.t1, settings.t2, settings.t4)
        self.retransmitter = TwoXxRetransmitter(settings.t1, settings.t2)
        self.clients = ClientTransactionLayer(settings.t1, settings.t2, settings.t4)
        self.acl = SourceAcl(settings.allowed_networks)
        self.rate_limiter = SourceRateLimiter(settings.rate_limit_per_source, settings.rate_limit_burst)
        self.quota = SourceQuota(settings.max_sessions_per_source, settings.max_streams_per_source)
        self.admission = NodeAdmission(
            max_sessions=settings.max_sessions,
            retry_after=settings.retry_after,
            reject_status=settings.reject_status,
            reject_reason=settings.reject_reason,
            quota=self.quota,
        )
        self.calls = Calls()
        self.effects = CallEffects(
            settings, self.transactions, self.retransmitter, self.clients, self.quota, self.calls
        )

    # ----------------------------------------------------------------- queries
    @property
    def active_sessions(self) -> int:
        return len(self.calls)

    def session_ids(self) -> list[str]:
        return self.calls.session_ids()

    def has_pending_requests(self) -> bool:
        """True while a request srs sent (BYE) still waits for its final response."""
        return self.calls.byes_pending

    def next_deadline(self) -> float | None:
        """The earliest timer of all layers; O(1) amortised, called after every message."""
        candidates = [
            self.transactions.next_deadline(),
            self.retransmitter.next_deadline(),
            self.clients.next_deadline(),
            self.calls.earliest(),
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    @property
    def call_heap_size(self) -> int:
        """Entries in the call deadline heap, stale ones included (bounded by a multiple of live ones)."""
        return self.calls.heap_size

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
            bad_via = f"bad Via: {exc.message}"
            return self._refuse_stateless(message, 400, "Bad Request", bad_via, source, transport)
        disposition = self.transactions.receive_request(request, source, transport, now)
        kind = disposition.kind
        if kind is DispositionKind.RETRANSMISSION:
            return list(disposition.outgoing)
        if kind is DispositionKind.ACK_ABSORBED:
            return []
        if kind is DispositionKind.ACK_FOR_CORE:
            call = self.calls.in_dialog(request)
            return (
                []
                if call is None
                else step(self.effects, call, Stimulus(CallInput.ACK, now, request=request))
            )
        txn = disposition.transaction
        assert txn is not None
        try:
            if kind is DispositionKind.CANCEL:
                return self._receive_cancel(txn, disposition.cancelled, now)
            return self._dispatch(request, txn, source, transport, local, now)
        except ParseError as exc:
            return self.effects.refuse(txn, exc.status, exc.reason, exc.message, now)
        except Exception as exc:  # answer 500 rather than leave the client hanging
            detail = f"internal error: {type(exc).__name__}: {exc}"
            return self.effects.refuse(txn, 500, "Server Internal Error", detail, now)

    def _answer_unparseable(
        self, data: bytes, error: ParseError, source: Address, transport: Transport
    ) -> list[UaEvent]:
        if not self.acl.allows(source.host):
            detail = f"unparseable message from a source outside allowed_networks: {error.message}"
            return [MessageDropped(detail, source)]
        return refuse_unparseable(data, error, source, transport, self.settings.new_token())

    def _refuse_stateless(
        self, request: Request, status: int, reason: str, detail: str, source: Address, transport: Transport
    ) -> list[UaEvent]:
        token = self.settings.new_token() if request.method != "ACK" else ""
        return refuse_stateless(request, status, reason, detail, source, transport, token)

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
        if request.to_addr.tag:
            return self._in_dialog(request, txn, now)
        if method == "INVITE":
            if self.calls.is_merged(request):
                # §8.2.2.2: the same request by another path (or resent with a new branch) is not a new call
                return self.effects.refuse(txn, 482, "Loop Detected", "merged request", now)
            return self._receive_invite(request, txn, source, transport, local, now)
        if method == "OPTIONS":
            # an SBC's ping decides whether it sends its next call here: 503 whenever a new INVITE
            # would be refused for this node's state, so the SBC hunts the next recorder at once
            busy = self.admission.busy()
            if busy is not None:
                retry = (("Retry-After", str(self.settings.retry_after)),)
                return self.effects.refuse(txn, 503, "Service Unavailable", busy, now, retry)
            caps = capabilities(self.settings.user_agent)
            return self.effects.respond(txn, 200, now, extra=caps, to_tag=self.settings.new_token())
        if method in ("BYE", "UPDATE", "INFO", "PRACK"):
            return self.effects.refuse(
                txn, 481, "Call/Transaction Does Not Exist", f"{method} outside a dialog", now
            )
        allow = (("Allow", ALLOW),)
        return self.effects.refuse(txn, 405, "Method Not Allowed", f"{method} not supported", now, allow)

    def _in_dialog(self, request: Request, txn: ServerTransaction, now: float) -> list[UaEvent]:
        method = request.method
        call = self.calls.in_dialog(request)
        if call is None or call.dialog is None:
            return self.effects.refuse(txn, 481, "Call/Transaction Does Not Exist", "unknown dialog", now)
        call.dialog.check_remote_cseq(request.cseq.number)
        if method == "BYE":
            ok = self.effects.respond(txn, 200, now)
            return [*ok, *step(self.effects, call, Stimulus(CallInput.BYE, now))]
        if method in ("INVITE", "UPDATE"):
            # ports for a re-offer may take a while: a re-INVITE gets 100 Trying first
            trying = self.effects.respond(txn, 100, now) if method == "INVITE" else []
            reoffer = Stimulus(CallInput.REOFFER, now, request=request, transaction=txn)
            return [*trying, *step(self.effects, call, reoffer)]
        if method in ("INFO", "OPTIONS", "NOTIFY"):
            return self.effects.receive_info(call, txn, request, now)
        allow = (("Allow", ALLOW),)
        return self.effects.refuse(txn, 405, "Method Not Allowed", f"{method} in dialog", now, allow)

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
        trying = self.effects.respond(txn, 100, now)
        refusal = self.admission.refuse_invite(request, source.host, len(self.calls))
        if refusal is not None:
            return [*trying, *self._refuse_admission(txn, refusal, now)]
        body = read_body(request)
        if body.sdp is None:
            raise SdpError("INVITE without an SDP offer (offerless INVITE) is not supported")
        streams = count_m_lines(body.sdp)
        limit = self.effects.streams_over(source.host, streams, sessions=1, added=streams)
        if limit is not None:
            return [*trying, *self.effects.limit_refusal(txn, limit, now, streams=streams)]
        parsed = parse_sdp(body.sdp)
        warnings = [*body.warnings, *parsed.warnings]
        sdes = sdes_in_clear(transport, parsed.session, self.settings.sdes_over_plain_sip)
        if sdes == "refuse":
            return [*trying, *self.effects.refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)]
        if sdes == "warn":
            warnings.append(SDES_IN_CLEAR)
        metadata = read_metadata(body, warnings)
        try:
            timer = negotiate(request, self.settings.min_se)
        except IntervalTooSmall as exc:
            return [*trying, *self.effects.too_small(txn, exc, now)]
        call = self._new_call(request, txn, source, transport, local, parsed.session, metadata, timer)
        if metadata is not None:
            count_metadata(call, body)
        offered = offered_event(call, parsed.session, len(parsed.session.media), tuple(warnings), True)
        events: list[UaEvent] = [*trying, offered]
        if metadata is not None:
            events.append(MetadataReceived(call.session_id, now, metadata, metadata))
        return events

    def _new_call(
        self,
        request: Request,
        txn: InviteServerTransaction,
        source: Address,
        transport: Transport,
        local: Address,
        offer: SessionDescription,
        metadata: RecordingMetadata | None,
        timer: SessionTimer | None,
    ) -> Call:
        session_id = self.settings.new_token()
        local_tag = self.settings.new_token()
        call = Call(
            session_id=session_id,
            call_id=request.call_id,
            local_tag=local_tag,
            invite=request,
            invite_transaction=txn,
            source=source,
            transport=transport,
            local=local,
            offer=offer,
            metadata=metadata,
            sdp_session_id=zlib.crc32(session_id.encode()) % 10**9,
            timer=timer,
        )
        # §12.1.1: a dialog needs the peer's Contact; refuse now rather than fail at answer time
        call.dialog = Dialog.from_invite(request, local_tag, self.effects.contact(call))
        if not routable(call.dialog.remote_target):
            raise SipParseError(f"Contact {call.dialog.remote_target} is not a usable SIP URI (§8.1.1.8)")
        if not all(routable(route.uri) for route in call.dialog.route_set):
            raise SipParseError("Record-Route holds an unusable URI")
        call.quota_streams = len(offer.media)
        self.quota.take(source.host, 1, call.quota_streams)
        self.calls.add(call)
        return call

    # ----------------------------------------------------- answers from above
    def accept(self, session_id: str, ports: Sequence[int], now: float) -> list[UaEvent]:
        """Ports for the pending offer are bound: answer it (after ``answer_delay`` for an initial one).

        Never raises: an answer that cannot be built refuses the offer instead (488
        or 500); for an initial offer that also ends the session (answered=False),
        so the layer above releases what it bound.
        """
        call = self.calls.get(session_id)
        if call is None:
            return []
        try:
            call.ports.extend(ports)
            events = step(self.effects, call, Stimulus(CallInput.PORTS_BOUND, now))
            if self.settings.answer_delay <= 0:
                events += step(self.effects, call, Stimulus(CallInput.ANSWER_DUE, now))
            return events
        except Exception as exc:
            status, reason = (
                (exc.status, exc.reason) if isinstance(exc, ParseError) else (500, "Server Internal Error")
            )
            detail = f"no answer: {exc.message if isinstance(exc, ParseError) else repr(exc)}"
            return step(self.effects, call, Stimulus(CallInput.ANSWER_FAILED, now, detail, status, reason))

    def reject(
        self, session_id: str, status: int, reason: str, now: float, retry_after: int | None = None
    ) -> list[UaEvent]:
        """The layer above cannot take the offer (no ports, disk full …)."""
        call = self.calls.get(session_id)
        if call is None:
            return []
        extra = () if retry_after is None else (("Retry-After", str(retry_after)),)
        refused = Stimulus(CallInput.REJECTED, now, "refused by the recorder", status, reason, extra)
        return step(self.effects, call, refused)

    # ------------------------------------------------------------ session timer
    def _refresh_answered(self, session_id: str, status: int, now: float) -> list[UaEvent]:
        """The answer to srs's UPDATE (:func:`srs.siprec.session_timer.refresh_outcome`)."""
        call = self.calls.get(session_id)
        if call is None or call.timer is None:
            return []
        outcome = refresh_outcome(status)
        if outcome is RefreshOutcome.RENEWED:
            call.expires_at = call.timer.renewed(now)
            self.calls.rearm(call)
        elif outcome is RefreshOutcome.FAILED:
            return step(
                self.effects, call, Stimulus(CallInput.HANGUP, now, f"session refresh failed with {status}")
            )
        return []

    # ------------------------------------------------------------------- CANCEL
    def _receive_cancel(
        self, txn: ServerTransaction, cancelled: InviteServerTransaction | None, now: float
    ) -> list[UaEvent]:
        if cancelled is None:
            return self.effects.refuse(
                txn, 481, "Call/Transaction Does Not Exist", "CANCEL matches no INVITE", now
            )
        events = self.effects.respond(txn, 200, now)
        call = self.calls.by_invite(cancelled)
        if call is None:
            return events + self._cancel_reinvite(cancelled, now)
        return [*events, *step(self.effects, call, Stimulus(CallInput.CANCEL, now))]

    def _cancel_reinvite(self, cancelled: InviteServerTransaction, now: float) -> list[UaEvent]:
        """§9.2: a re-INVITE still waiting for ports ends with 487 and the session stays as it was."""
        call = self.calls.in_dialog(cancelled.request)
        if call is not None and call.pending is not None and call.pending.transaction is cancelled:
            self.effects.drop_pending(call)
            return self.effects.respond(cancelled, 487, now, to_tag=call.local_tag)
        return []

    # ------------------------------------------------------------------ limits
    def _refuse_admission(self, txn: ServerTransaction, refusal: Refusal, now: float) -> list[UaEvent]:
        if refusal.limit is not None:
            return self.effects.limit_refusal(txn, refusal.limit, now)
        return self.effects.refuse(txn, refusal.status, refusal.reason, refusal.detail, now, refusal.extra)

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: float) -> list[UaEvent]:
        events: list[UaEvent] = [
            item for item in self.transactions.on_timer(now) if not isinstance(item, TransactionTimeout)
        ]
        for item in self.retransmitter.on_timer(now):
            if not isinstance(item, AckTimeout):
                events.append(item)
                continue
            session_id = item.key[0] if isinstance(item.key, tuple) else None
            call = self.calls.get(str(session_id))
            if call is not None:
                call.awaiting_ack = None
                events += step(self.effects, call, Stimulus(CallInput.HANGUP, now, "no ACK for 2xx"))
        for call in self.calls.due(now):
            if self.calls.is_live(call):  # else ended by an earlier event of this tick
                events += self._call_due(call, now)
                self.calls.rearm(call)  # ignored if the call ended
        for item2 in self.clients.on_timer(now):
            if not isinstance(item2, ClientTimeout):
                events.append(item2)
                continue
            refreshed = self.calls.finished(item2.transaction.key)  # §8.1.3.1: Timer F counts as a 408
            if refreshed is not None:
                events += self._refresh_answered(refreshed, 408, now)
        return events

    def _call_due(self, call: Call, now: float) -> list[UaEvent]:
        """The inputs a call's due deadlines deliver; the table ignores those its phase has no use for."""
        events: list[UaEvent] = []
        if call.refresh_at is not None and call.refresh_at <= now:
            events += step(self.effects, call, Stimulus(CallInput.REFRESH_DUE, now))
        if call.answer_due is not None and call.answer_due <= now:
            events += step(self.effects, call, Stimulus(CallInput.ANSWER_DUE, now))
        elif call.expires_at is not None and call.expires_at <= now:
            events += step(self.effects, call, Stimulus(CallInput.HANGUP, now, "session expired"))
        elif call.max_end is not None and call.max_end <= now:
            events += step(self.effects, call, Stimulus(CallInput.HANGUP, now, "maximum duration reached"))
        return events

    # -------------------------------------------------------------- ending
    def start_draining(self) -> None:
        """New INVITEs get 503 with Retry-After from now on; running sessions go on."""
        self.admission.draining = True

    def hangup(self, session_id: str, now: float, reason: str) -> list[UaEvent]:
        call = self.calls.get(session_id)
        return [] if call is None else step(self.effects, call, Stimulus(CallInput.HANGUP, now, reason))

    def hangup_all(self, now: float, reason: str) -> list[UaEvent]:
        events: list[UaEvent] = []
        for call in self.calls:
            events += step(self.effects, call, Stimulus(CallInput.HANGUP, now, reason))
        return events

    def _receive_response(self, response: Response, source: Address, now: float) -> list[UaEvent]:
        """Responses to srs's BYEs and UPDATEs: any final one ends the wait; the rest is a stray."""
        key = (response.top_via.branch or "", response.cseq.method)
        known = self.calls.is_ours(key)
        matched = self.clients.receive_response(response, now)
        if matched is not None and response.status >= 200:
            refreshed = self.calls.finished(matched.transaction.key)
            if refreshed is not None:
                return self._refresh_answered(refreshed, response.status, now)
        if matched is not None or known:
            return []
        return [MessageDropped(f"response {response.status} matches no pending request of ours", source)]
