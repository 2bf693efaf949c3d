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

import contextlib
import zlib
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

from srs.errors import ParseError, SdpError, SipParseError
from srs.sdp.answer import Answer, build_answer
from srs.sdp.model import SessionDescription
from srs.sdp.parse import parse_sdp
from srs.sip.client import ClientTimeout, ClientTransactionLayer
from srs.sip.dialog import Dialog
from srs.sip.headers import NameAddr
from srs.sip.message import Request, Response, build_response, parse_message
from srs.sip.routing import Address, Outgoing, Transport, reconnect_address, stamp_received
from srs.sip.transaction import (
    DispositionKind,
    InviteServerTransaction,
    ServerTransaction,
    ServerTransactionLayer,
    TransactionTimeout,
    new_branch,
)
from srs.sip.uas import AckTimeout, TwoXxRetransmitter
from srs.siprec.admission import NodeAdmission, Refusal, SourceAcl, SourceQuota, SourceRateLimiter
from srs.siprec.call import Call, CallInput, PendingOffer, Stimulus, step
from srs.siprec.calls import Calls
from srs.siprec.events import (
    LimitReached,
    MessageDropped,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionOffered,
    UaEvent,
)
from srs.siprec.limits import count_metadata, limit_detail, limit_response, metadata_over
from srs.siprec.metadata import RecordingMetadata, merge_metadata
from srs.siprec.multipart import SiprecBody
from srs.siprec.offers import (
    SDES_IN_CLEAR,
    SDES_REFUSED,
    count_m_lines,
    metadata_body,
    read_body,
    read_metadata,
    routable,
    sdes_in_clear,
)
from srs.siprec.replies import ALLOW, capabilities, contact, refuse_stateless, refuse_unparseable
from srs.siprec.session_timer import (
    IntervalTooSmall,
    RefreshOutcome,
    SessionTimer,
    negotiate,
    refresh_outcome,
)
from srs.siprec.settings import UaSettings

__all__ = ["SDES_IN_CLEAR", "SiprecUserAgent", "UaSettings"]

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

    @property
    def retry_after(self) -> int:
        return self.settings.retry_after

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
            return [] if call is None else step(self, call, Stimulus(CallInput.ACK, now, request=request))
        txn = disposition.transaction
        assert txn is not None
        try:
            if kind is DispositionKind.CANCEL:
                return self._receive_cancel(txn, disposition.cancelled, now)
            return self._dispatch(request, txn, source, transport, local, now)
        except ParseError as exc:
            return self.refuse(txn, exc.status, exc.reason, exc.message, now)
        except Exception as exc:  # answer 500 rather than leave the client hanging
            detail = f"internal error: {type(exc).__name__}: {exc}"
            return self.refuse(txn, 500, "Server Internal Error", detail, now)

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
                return self.refuse(txn, 482, "Loop Detected", "merged request", now)
            return self._receive_invite(request, txn, source, transport, local, now)
        if method == "OPTIONS":
            # an SBC's ping decides whether it sends its next call here: 503 whenever a new INVITE
            # would be refused for this node's state, so the SBC hunts the next recorder at once
            busy = self.admission.busy()
            if busy is not None:
                retry = (("Retry-After", str(self.settings.retry_after)),)
                return self.refuse(txn, 503, "Service Unavailable", busy, now, retry)
            caps = capabilities(self.settings.user_agent)
            return self._respond(txn, 200, now, extra=caps, to_tag=self.settings.new_token())
        if method in ("BYE", "UPDATE", "INFO", "PRACK"):
            return self.refuse(txn, 481, "Call/Transaction Does Not Exist", f"{method} outside a dialog", now)
        allow = (("Allow", ALLOW),)
        return self.refuse(txn, 405, "Method Not Allowed", f"{method} not supported", now, allow)

    def _in_dialog(self, request: Request, txn: ServerTransaction, now: float) -> list[UaEvent]:
        method = request.method
        call = self.calls.in_dialog(request)
        if call is None or call.dialog is None:
            return self.refuse(txn, 481, "Call/Transaction Does Not Exist", "unknown dialog", now)
        call.dialog.check_remote_cseq(request.cseq.number)
        if method == "BYE":
            ok = self._respond(txn, 200, now)
            return [*ok, *step(self, call, Stimulus(CallInput.BYE, now))]
        if method in ("INVITE", "UPDATE"):
            # ports for a re-offer may take a while: a re-INVITE gets 100 Trying first
            trying = self._respond(txn, 100, now) if method == "INVITE" else []
            reoffer = Stimulus(CallInput.REOFFER, now, request=request, transaction=txn)
            return [*trying, *step(self, call, reoffer)]
        if method in ("INFO", "OPTIONS", "NOTIFY"):
            return self._receive_info(call, txn, request, now)
        allow = (("Allow", ALLOW),)
        return self.refuse(txn, 405, "Method Not Allowed", f"{method} in dialog", now, allow)

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
        refusal = self.admission.refuse_invite(request, source.host, len(self.calls))
        if refusal is not None:
            return [*trying, *self._refuse_admission(txn, refusal, now)]
        body = read_body(request)
        if body.sdp is None:
            raise SdpError("INVITE without an SDP offer (offerless INVITE) is not supported")
        streams = count_m_lines(body.sdp)
        limit = self._streams_over(source.host, streams, sessions=1, added=streams)
        if limit is not None:
            return [*trying, *self._limit_refusal(txn, limit, now, streams=streams)]
        parsed = parse_sdp(body.sdp)
        warnings = [*body.warnings, *parsed.warnings]
        sdes = sdes_in_clear(transport, parsed.session, self.settings.sdes_over_plain_sip)
        if sdes == "refuse":
            return [*trying, *self.refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)]
        if sdes == "warn":
            warnings.append(SDES_IN_CLEAR)
        metadata = read_metadata(body, warnings)
        try:
            timer = negotiate(request, self.settings.min_se)
        except IntervalTooSmall as exc:
            return [*trying, *self._too_small(txn, exc, now)]
        call = self._new_call(request, txn, source, transport, local, parsed.session, metadata, timer)
        if metadata is not None:
            count_metadata(call, body)
        offered = self._offered(call, parsed.session, len(parsed.session.media), tuple(warnings), True)
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
        call.dialog = Dialog.from_invite(request, local_tag, self._contact(call))
        if not routable(call.dialog.remote_target):
            raise SipParseError(f"Contact {call.dialog.remote_target} is not a usable SIP URI (§8.1.1.8)")
        if not all(routable(route.uri) for route in call.dialog.route_set):
            raise SipParseError("Record-Route holds an unusable URI")
        call.quota_streams = len(offer.media)
        self.quota.take(source.host, 1, call.quota_streams)
        self.calls.add(call)
        return call

    def _offered(
        self, call: Call, offer: SessionDescription, ports: int, warnings: tuple[str, ...], initial: bool
    ) -> SessionOffered:
        return SessionOffered(
            session_id=call.session_id,
            call_id=call.call_id,
            source=call.source,
            transport=call.transport,
            offer=offer,
            ports_needed=ports,
            initial=initial,
            metadata=call.metadata,
            warnings=warnings,
            from_uri=str(call.invite.from_addr.uri),
            to_uri=str(call.invite.to_addr.uri),
        )

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
            events = step(self, call, Stimulus(CallInput.PORTS_BOUND, now))
            if self.settings.answer_delay <= 0:
                events += step(self, call, Stimulus(CallInput.ANSWER_DUE, now))
            return events
        except Exception as exc:
            status, reason = (
                (exc.status, exc.reason) if isinstance(exc, ParseError) else (500, "Server Internal Error")
            )
            detail = f"no answer: {exc.message if isinstance(exc, ParseError) else repr(exc)}"
            return step(self, call, Stimulus(CallInput.ANSWER_FAILED, now, detail, status, reason))

    def reject(
        self, session_id: str, status: int, reason: str, now: float, retry_after: int | None = None
    ) -> list[UaEvent]:
        """The layer above cannot take the offer (no ports, disk full …)."""
        call = self.calls.get(session_id)
        if call is None:
            return []
        extra = () if retry_after is None else (("Retry-After", str(retry_after)),)
        refused = Stimulus(CallInput.REJECTED, now, "refused by the recorder", status, reason, extra)
        return step(self, call, refused)

    # ------------------------------------------------- hooks for the call machine
    def prepare_answer(self, call: Call, now: float) -> None:
        call.answer = self._build_answer(call, call.offer)
        self.calls.add_dialog(call)
        if self.settings.answer_delay > 0:
            call.answer_due = now + self.settings.answer_delay
            self.calls.rearm(call)

    def send_initial_answer(self, call: Call, now: float) -> list[UaEvent]:
        assert call.answer is not None
        call.answer_due = None
        events = self._send_2xx(call, call.invite_transaction, call.answer.sdp, now)
        self._arm_session_timer(call, now)
        call.max_end = now + self.settings.max_duration
        self.calls.rearm(call)
        streams = call.answer.streams
        events.append(
            SessionAnswered(call.session_id, now, streams, initial=True, local_address=call.local.host)
        )
        return events

    def answer_pending(self, call: Call, now: float) -> list[UaEvent]:
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
            call.session_id, now, answer.streams, initial=False, local_address=call.local.host
        )
        return [answered, *self._send_2xx(call, pending.transaction, answer.sdp, now)]

    def drop_pending(self, call: Call) -> PendingOffer | None:
        """A re-offer that will not be answered: the streams it took from the quota go back."""
        pending, call.pending = call.pending, None
        if pending is not None and pending.quota_streams:
            call.quota_streams -= pending.quota_streams
            self.quota.release(call.source.host, 0, pending.quota_streams)
        return pending

    def stop_2xx(self, call: Call) -> None:
        """The peer has the 2xx (or the call ends): stop retransmitting it."""
        if call.awaiting_ack is not None:
            self.retransmitter.cancel(call.awaiting_ack)
            call.awaiting_ack = None

    def ack_2xx(self, call: Call, cseq: int) -> None:
        if call.awaiting_ack == (call.session_id, cseq):
            self.retransmitter.ack(call.awaiting_ack)
            call.awaiting_ack = None
            call.offer_outstanding = False

    def forget(self, call: Call) -> None:
        if self.calls.remove(call):
            self.quota.release(call.source.host, 1, call.quota_streams)
        self.stop_2xx(call)

    def respond_invite(
        self, call: Call, status: int, now: float, extra: tuple[tuple[str, str], ...] = ()
    ) -> list[UaEvent]:
        return self._respond(call.invite_transaction, status, now, to_tag=call.local_tag, extra=extra)

    def _build_answer(self, call: Call, offer: SessionDescription) -> Answer:
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

    def _send_2xx(self, call: Call, txn: ServerTransaction, sdp: bytes, now: float) -> list[UaEvent]:
        extra = [("Contact", self._contact(call)), *capabilities(self.settings.user_agent)]
        if call.timer is not None:
            extra.append(("Session-Expires", call.timer.header))
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

    def _contact(self, call: Call) -> str:
        return contact(self.settings.user, call.local, call.transport)

    # ------------------------------------------------------------ session timer
    def _arm_session_timer(self, call: Call, now: float) -> None:
        """RFC 4028 §10 deadlines from a refresh at ``now`` (see :mod:`srs.siprec.session_timer`):
        srs refreshes with UPDATE only when the UAC asked it to (refresher=uas)."""
        if call.timer is None:
            return
        call.refresh_at, call.expires_at = call.timer.deadlines(now)
        self.calls.rearm(call)

    def send_refresh(self, call: Call, now: float) -> list[UaEvent]:
        """RFC 4028 §7.4: a session refresh by srs, an UPDATE without an offer."""
        assert call.timer is not None
        call.refresh_at = call.timer.next_refresh(now)
        self.calls.rearm(call)
        headers = [("Session-Expires", call.timer.header), ("Supported", "timer")]
        key, outgoing = self._send_request(call, "UPDATE", headers, now)
        self.calls.sent_refresh(key, call.session_id)
        return [outgoing]

    def _refresh_answered(self, session_id: str, status: int, now: float) -> list[UaEvent]:
        call = self.calls.get(session_id)
        if call is None or call.timer is None:
            return []
        outcome = refresh_outcome(status)
        if outcome is RefreshOutcome.RENEWED:
            call.expires_at = call.timer.renewed(now)
            self.calls.rearm(call)
        elif outcome is RefreshOutcome.FAILED:
            return step(self, call, Stimulus(CallInput.HANGUP, now, f"session refresh failed with {status}"))
        return []

    def _too_small(self, txn: ServerTransaction, exc: IntervalTooSmall, now: float) -> list[UaEvent]:
        extra = (("Min-SE", str(exc.min_se)),)
        return self.refuse(txn, exc.status, exc.reason, exc.message, now, extra)

    # ------------------------------------------------------------------- CANCEL
    def _receive_cancel(
        self, txn: ServerTransaction, cancelled: InviteServerTransaction | None, now: float
    ) -> list[UaEvent]:
        if cancelled is None:
            return self.refuse(txn, 481, "Call/Transaction Does Not Exist", "CANCEL matches no INVITE", now)
        events = self._respond(txn, 200, now)
        call = self.calls.by_invite(cancelled)
        if call is None:
            return events + self._cancel_reinvite(cancelled, now)
        return [*events, *step(self, call, Stimulus(CallInput.CANCEL, now))]

    def _cancel_reinvite(self, cancelled: InviteServerTransaction, now: float) -> list[UaEvent]:
        """§9.2: a re-INVITE still waiting for ports ends with 487 and the session stays as it was."""
        call = self.calls.in_dialog(cancelled.request)
        if call is not None and call.pending is not None and call.pending.transaction is cancelled:
            self.drop_pending(call)
            return self._respond(cancelled, 487, now, to_tag=call.local_tag)
        return []

    # --------------------------------------------------------------- in dialog
    def receive_reoffer(
        self, call: Call, txn: ServerTransaction, request: Request, now: float
    ) -> list[UaEvent]:
        """re-INVITE or UPDATE: refresh, maybe new metadata, maybe a new offer on the same ports.

        Offer collisions: while an offer srs received is still unanswered, a new
        INVITE or offer gets 500 with Retry-After (RFC 3261 §14.2, RFC 3311 §5.2);
        while srs's own offer (in the 2xx to an offerless re-INVITE) waits for its
        answer in the ACK, a new offer gets 491.
        """
        body = read_body(request)
        refused = self._reoffer_refusal(call, txn, request, body, now)
        if refused is not None:
            return refused
        step(self, call, Stimulus(CallInput.PEER_IN_DIALOG, now))
        self._update_target(call, request)
        try:
            timer = negotiate(request, self.settings.min_se)
        except IntervalTooSmall as exc:
            return self._too_small(txn, exc, now)
        if timer is not None:
            call.timer = timer
        parsed = parse_sdp(body.sdp) if body.sdp is not None else None
        policy = self.settings.sdes_over_plain_sip
        sdes = sdes_in_clear(call.transport, parsed.session, policy) if parsed is not None else None
        if sdes == "refuse":
            return self.refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)
        self._arm_session_timer(call, now)
        events = self._metadata_update(call, body, now)
        if parsed is None:
            if request.method == "INVITE":
                # §14.2 / RFC 3264 §8: an offerless re-INVITE gets srs's current SDP as the offer,
                # unchanged (same o= version) because nothing changed
                assert call.answer is not None
                call.offer_outstanding = True
                return [*events, *self._send_2xx(call, txn, call.answer.sdp, now)]
            return [*events, *self._send_2xx(call, txn, b"", now)]
        added = max(0, len(parsed.session.media) - call.quota_streams)
        call.pending = PendingOffer(txn, request, parsed.session, added)
        call.quota_streams += added
        self.quota.take(call.source.host, 0, added)
        warnings = (*body.warnings, *parsed.warnings, *([SDES_IN_CLEAR] if sdes == "warn" else []))
        ports = max(0, len(parsed.session.media) - len(call.ports))
        return [*events, self._offered(call, parsed.session, ports, warnings, False)]

    def _reoffer_refusal(
        self, call: Call, txn: ServerTransaction, request: Request, body: SiprecBody, now: float
    ) -> list[UaEvent] | None:
        """Offer collisions and stream bounds refuse a re-offer before it changes anything."""
        new_offer = request.method == "INVITE" or body.sdp is not None
        if call.pending is not None and new_offer:
            retry = (("Retry-After", "1"),)
            return self.refuse(txn, 500, "Server Internal Error", "an offer is already pending", now, retry)
        if call.offer_outstanding and new_offer:
            return self.refuse(txn, 491, "Request Pending", "srs's offer is not yet answered", now)
        if body.sdp is None:
            return None
        streams = count_m_lines(body.sdp)
        added = max(0, streams - call.quota_streams)
        limit = self._streams_over(call.source.host, streams, sessions=0, added=added)
        if limit is None:
            return None
        counted = streams if limit == "streams_per_call" else added
        return self._limit_refusal(txn, limit, now, streams=counted)

    @staticmethod
    def _update_target(call: Call, request: Request) -> None:
        """§12.2.2: a target refresh request moves the dialog's remote target (if usable)."""
        assert call.dialog is not None
        value = request.headers.get("contact")
        if value:
            with contextlib.suppress(ParseError):
                if routable(NameAddr.parse(value).uri):
                    call.dialog.update_target(value)

    def _receive_info(
        self, call: Call, txn: ServerTransaction, request: Request, now: float
    ) -> list[UaEvent]:
        body = metadata_body(request)
        over = metadata_over(self.settings, call, body) if body is not None else None
        if over is not None:
            # the call keeps recording; only this update is refused (RFC 6086 §4.2.2:
            # a failed INFO does not end the dialog)
            return self._limit_refusal(txn, over, now, call=call)
        events = self._metadata_update(call, body, now) if body is not None else []
        return [*events, *self._respond(txn, 200, now, extra=capabilities(self.settings.user_agent))]

    def _metadata_update(self, call: Call, body: SiprecBody, now: float) -> list[UaEvent]:
        """New metadata for the call; beyond its bounds it is left out (and said so), the call goes on."""
        over = metadata_over(self.settings, call, body)
        if over is not None:
            detail = limit_detail(
                self.settings, over, call.source.host, self.quota.held(call.source.host), call=call
            )
            return [LimitReached(over, detail, call.source, call.call_id)]
        update = read_metadata(body, [])
        if update is None:
            return []
        count_metadata(call, body)
        call.metadata = merge_metadata(call.metadata, update)
        return [MetadataReceived(call.session_id, now, update, call.metadata)]

    # ------------------------------------------------------------------ limits
    def _streams_over(self, host: str, streams: int, *, sessions: int, added: int) -> str | None:
        most = self.settings.max_streams_per_call
        if most and streams > most:
            return "streams_per_call"
        return self.quota.refusal(host, sessions, added)

    def _refuse_admission(self, txn: ServerTransaction, refusal: Refusal, now: float) -> list[UaEvent]:
        if refusal.limit is not None:
            return self._limit_refusal(txn, refusal.limit, now)
        return self.refuse(txn, refusal.status, refusal.reason, refusal.detail, now, refusal.extra)

    def _limit_refusal(
        self, txn: ServerTransaction, limit: str, now: float, *, streams: int = 0, call: Call | None = None
    ) -> list[UaEvent]:
        """A bound refuses this request (:func:`srs.siprec.limits.limit_response` says how)."""
        host = txn.source.host
        detail = limit_detail(self.settings, limit, host, self.quota.held(host), streams=streams, call=call)
        status, reason, extra = limit_response(limit, self.settings.retry_after)
        events = self.refuse(txn, status, reason, detail, now, extra)
        return [*events, LimitReached(limit, detail, txn.source, txn.request.call_id)]

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
                events += step(self, call, Stimulus(CallInput.HANGUP, now, "no ACK for 2xx"))
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
            events += step(self, call, Stimulus(CallInput.REFRESH_DUE, now))
        if call.answer_due is not None and call.answer_due <= now:
            events += step(self, call, Stimulus(CallInput.ANSWER_DUE, now))
        elif call.expires_at is not None and call.expires_at <= now:
            events += step(self, call, Stimulus(CallInput.HANGUP, now, "session expired"))
        elif call.max_end is not None and call.max_end <= now:
            events += step(self, call, Stimulus(CallInput.HANGUP, now, "maximum duration reached"))
        return events

    # -------------------------------------------------------------- ending
    def start_draining(self) -> None:
        """New INVITEs get 503 with Retry-After from now on; running sessions go on."""
        self.admission.draining = True

    def hangup(self, session_id: str, now: float, reason: str) -> list[UaEvent]:
        call = self.calls.get(session_id)
        return [] if call is None else step(self, call, Stimulus(CallInput.HANGUP, now, reason))

    def hangup_all(self, now: float, reason: str) -> list[UaEvent]:
        events: list[UaEvent] = []
        for call in self.calls:
            events += step(self, call, Stimulus(CallInput.HANGUP, now, reason))
        return events

    def send_bye(self, call: Call, now: float) -> Outgoing:
        key, outgoing = self._send_request(call, "BYE", [], now)
        self.calls.sent_bye(key, call.session_id)
        return outgoing

    def _send_request(
        self, call: Call, method: str, headers: list[tuple[str, str]], now: float
    ) -> tuple[tuple[str, str], Outgoing]:
        """A request of srs's in the call's dialog. If the peer's connection has closed it may open
        a new one to the host that sent the INVITE (it completed a handshake, so it is not forged),
        at its Via port."""
        assert call.dialog is not None
        request = call.dialog.build_request(
            method,
            via_host=call.local.host,
            via_port=call.local.port,
            transport=call.transport,
            branch=new_branch(self.settings.new_token()),
            extra_headers=[*headers, ("User-Agent", self.settings.user_agent)],
        )
        reconnect = reconnect_address(call.invite.top_via, call.source, call.transport)
        txn, outgoing = self.clients.send_request(request, call.source, call.transport, now, reconnect)
        return txn.key, outgoing

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
            call = self.calls.by_invite(txn)
            to_tag = call.local_tag if call is not None else self.settings.new_token()
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

    def refuse(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str,
        detail: str,
        now: float,
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[UaEvent]:
        """An error response with a Warning that says why, and the event that counts it."""
        request = txn.request
        events = self._respond(
            txn, status, now, reason=reason, extra=[*extra, ("Warning", f'399 srs "{detail}"')]
        )
        events.append(RequestRefused(request.method, status, reason, detail, txn.source, request.call_id))
        return events
