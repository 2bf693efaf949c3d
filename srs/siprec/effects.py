"""What a recording session's transitions do on the wire: answers and their 2xx retransmission,
re-offers, metadata updates, session refreshes and BYE, sans-IO.

:class:`CallEffects` is the :class:`srs.siprec.call.CallHooks` the state machine's effects call;
the user agent (:mod:`srs.siprec.agent`) owns one and hands it every input it delivers. It writes
responses through the server transaction layer and requests through the client one, and keeps
each call's deadlines in :class:`srs.siprec.calls.Calls`; it never decides a phase.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from srs.errors import ParseError
from srs.sdp.answer import Answer, build_answer
from srs.sdp.model import SessionDescription
from srs.sdp.parse import parse_sdp
from srs.sip.client import ClientTransactionLayer
from srs.sip.headers import NameAddr
from srs.sip.message import Request, build_response
from srs.sip.routing import Outgoing, reconnect_address
from srs.sip.transaction import ServerTransaction, ServerTransactionLayer, new_branch
from srs.sip.uas import TwoXxRetransmitter
from srs.siprec.admission import SourceQuota
from srs.siprec.call import Call, CallInput, PendingOffer, Stimulus, step
from srs.siprec.calls import Calls
from srs.siprec.events import (
    LimitReached,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionOffered,
    UaEvent,
)
from srs.siprec.limits import count_metadata, limit_detail, limit_response, metadata_over
from srs.siprec.metadata import merge_metadata
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
from srs.siprec.replies import capabilities
from srs.siprec.replies import contact as contact_header
from srs.siprec.session_timer import IntervalTooSmall, negotiate
from srs.siprec.settings import UaSettings


def offered_event(
    call: Call, offer: SessionDescription, ports: int, warnings: tuple[str, ...], initial: bool
) -> SessionOffered:
    """The event that asks the layer above for ``ports`` new ports for ``offer``."""
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


class CallEffects:
    """The calls' side of the user agent: everything a transition sends or arms."""

    def __init__(
        self,
        settings: UaSettings,
        transactions: ServerTransactionLayer,
        retransmitter: TwoXxRetransmitter,
        clients: ClientTransactionLayer,
        quota: SourceQuota,
        calls: Calls,
    ) -> None:
        self.settings = settings
        self.transactions = transactions
        self.retransmitter = retransmitter
        self.clients = clients
        self.quota = quota
        self.calls = calls

    @property
    def retry_after(self) -> int:
        return self.settings.retry_after

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
        self.arm_session_timer(call, now)
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
        return self.respond(call.invite_transaction, status, now, to_tag=call.local_tag, extra=extra)

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
        extra = [("Contact", self.contact(call)), *capabilities(self.settings.user_agent)]
        if call.timer is not None:
            extra.append(("Session-Expires", call.timer.header))
            extra.append(("Require", "timer"))
        events = self.respond(
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

    def contact(self, call: Call) -> str:
        return contact_header(self.settings.user, call.local, call.transport)

    def arm_session_timer(self, call: Call, now: float) -> None:
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

    def too_small(self, txn: ServerTransaction, exc: IntervalTooSmall, now: float) -> list[UaEvent]:
        extra = (("Min-SE", str(exc.min_se)),)
        return self.refuse(txn, exc.status, exc.reason, exc.message, now, extra)

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
            return self.too_small(txn, exc, now)
        if timer is not None:
            call.timer = timer
        parsed = parse_sdp(body.sdp) if body.sdp is not None else None
        policy = self.settings.sdes_over_plain_sip
        sdes = sdes_in_clear(call.transport, parsed.session, policy) if parsed is not None else None
        if sdes == "refuse":
            return self.refuse(txn, 488, "Not Acceptable Here", SDES_REFUSED, now)
        self.arm_session_timer(call, now)
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
        return [*events, offered_event(call, parsed.session, ports, warnings, False)]

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
        limit = self.streams_over(call.source.host, streams, sessions=0, added=added)
        if limit is None:
            return None
        counted = streams if limit == "streams_per_call" else added
        return self.limit_refusal(txn, limit, now, streams=counted)

    @staticmethod
    def _update_target(call: Call, request: Request) -> None:
        """§12.2.2: a target refresh request moves the dialog's remote target (if usable)."""
        assert call.dialog is not None
        value = request.headers.get("contact")
        if value:
            with contextlib.suppress(ParseError):
                if routable(NameAddr.parse(value).uri):
                    call.dialog.update_target(value)

    def receive_info(self, call: Call, txn: ServerTransaction, request: Request, now: float) -> list[UaEvent]:
        body = metadata_body(request)
        over = metadata_over(self.settings, call, body) if body is not None else None
        if over is not None:
            # the call keeps recording; only this update is refused (RFC 6086 §4.2.2:
            # a failed INFO does not end the dialog)
            return self.limit_refusal(txn, over, now, call=call)
        events = self._metadata_update(call, body, now) if body is not None else []
        return [*events, *self.respond(txn, 200, now, extra=capabilities(self.settings.user_agent))]

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

    def streams_over(self, host: str, streams: int, *, sessions: int, added: int) -> str | None:
        most = self.settings.max_streams_per_call
        if most and streams > most:
            return "streams_per_call"
        return self.quota.refusal(host, sessions, added)

    def limit_refusal(
        self, txn: ServerTransaction, limit: str, now: float, *, streams: int = 0, call: Call | None = None
    ) -> list[UaEvent]:
        """A bound refuses this request (:func:`srs.siprec.limits.limit_response` says how)."""
        host = txn.source.host
        detail = limit_detail(self.settings, limit, host, self.quota.held(host), streams=streams, call=call)
        status, reason, extra = limit_response(limit, self.settings.retry_after)
        events = self.refuse(txn, status, reason, detail, now, extra)
        return [*events, LimitReached(limit, detail, txn.source, txn.request.call_id)]

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

    def respond(
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
        events = self.respond(
            txn, status, now, reason=reason, extra=[*extra, ("Warning", f'399 srs "{detail}"')]
        )
        events.append(RequestRefused(request.method, status, reason, detail, txn.source, request.call_id))
        return events
