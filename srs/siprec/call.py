"""The recording session's state machine: everything that affects the call's phase lives here.

Theory of operation
-------------------
One recording session is one INVITE dialog (RFC 3261 §12-§14, RFC 7866 §6). Its
life is a short line of phases::

    OFFERED --ports bound--> ANSWERING --answer due--> ANSWERED --ACK--> CONFIRMED
       |                         |                         |                  |
       +-------------------------+---- BYE, CANCEL, hangup, refusal ---------+--> ENDED

* OFFERED: the INVITE was admitted; the layer above is binding RTP ports.
* ANSWERING: the answer is built and the dialog exists; the 2xx waits for
  ``answer_delay`` (0 by default, then the next input follows at once).
* ANSWERED: the 2xx went out and is retransmitted until its ACK arrives; any
  in-dialog request proves the peer has the dialog as well as the ACK does.
* CONFIRMED: recording; re-offers, refreshes and metadata updates come and go
  without leaving this phase.
* ENDED: the call is gone from every lookup; nothing moves it any more.

Everything that happens to a call is one :class:`CallInput` delivered with a
:class:`Stimulus` (the time and what came with it). :data:`TRANSITIONS` maps
each (phase, input) pair the protocol gives a meaning to onto the next phase
and the function that carries out its effects (responses, BYE, SessionEnded
…) through the :class:`CallHooks` the user agent provides. :func:`step` is the
only code that assigns ``Call.phase``; it does so before running the effect,
as h2's stream machine does, so an effect sees the phase it leads to. An
effect that raises (an answer that cannot be built) leaves the call in that
phase; the agent then delivers ANSWER_FAILED, which the table answers from it
(ANSWERING + ANSWER_FAILED ends the call with the INVITE refused).

Every pair missing from the table is handled by one rule: the input is
ignored, the phase stays and nothing is sent. These are stimuli that arrive
when they no longer (or do not yet) mean anything: a CANCEL after the 2xx
(§9.2: it has no effect), an ACK before any answer, a refresh timer of a call
that is not answered, anything at all for an ended call. Requests that need an
answer whatever the phase get it from the table (a re-offer during the initial
offer is refused with 500), never from this rule.

Only one effect feeds a further input: a re-offer in ANSWERED proves the
dialog (PEER_IN_DIALOG) once it passed its checks, see :data:`FOLLOW_UPS`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from srs.sdp.answer import Answer
from srs.sdp.model import SessionDescription
from srs.sip.dialog import Dialog
from srs.sip.message import Request
from srs.sip.routing import Address, Outgoing, Transport
from srs.sip.transaction import InviteServerTransaction, ServerTransaction
from srs.siprec.events import MessageDropped, SessionEnded, UaEvent
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.session_timer import SessionTimer


class CallPhase(enum.Enum):
    OFFERED = "waiting for local ports"
    ANSWERING = "answer delayed"
    ANSWERED = "2xx sent, waiting for ACK"
    CONFIRMED = "confirmed"
    ENDED = "ended"


class CallInput(enum.Enum):
    PORTS_BOUND = "the layer above bound ports for the pending offer"
    ANSWER_DUE = "the initial answer may leave now"
    ANSWER_FAILED = "the answer to the pending offer could not be built"
    REJECTED = "the layer above refused the pending offer"
    ACK = "ACK for a 2xx of this dialog"
    PEER_IN_DIALOG = "an in-dialog request proves the peer has the dialog"
    BYE = "BYE from the peer"
    CANCEL = "CANCEL of the initial INVITE"
    HANGUP = "srs ends the session (API, shutdown, expiry, no ACK, failed refresh)"
    REFRESH_DUE = "srs's session refresh is due"
    REOFFER = "re-INVITE or UPDATE from the peer"


@dataclass
class PendingOffer:
    """A re-INVITE or UPDATE offer waiting for ports from the layer above."""

    transaction: ServerTransaction
    request: Request
    offer: SessionDescription
    quota_streams: int = 0
    """Streams this offer took from the source's quota (given back if it is refused)."""


@dataclass
class Call:
    """One recording session: its phase (assigned only by :func:`step`) and its dialog state."""

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
    pending: PendingOffer | None = None
    awaiting_ack: Hashable | None = None
    offer_outstanding: bool = False
    timer: SessionTimer | None = None
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


@dataclass(frozen=True, slots=True)
class Stimulus:
    """One input for one call, with what came with it."""

    input: CallInput
    now: float
    reason: str = ""
    """Why: the hangup reason, or the detail of a refusal."""
    status: int = 0
    phrase: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    request: Request | None = None
    transaction: ServerTransaction | None = None


class CallHooks(Protocol):
    """What the effects need from the user agent: sending, lookups and timers."""

    @property
    def retry_after(self) -> int: ...

    def respond_invite(
        self, call: Call, status: int, now: float, extra: tuple[tuple[str, str], ...] = ()
    ) -> list[UaEvent]: ...

    def refuse(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str,
        detail: str,
        now: float,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> list[UaEvent]: ...

    def forget(self, call: Call) -> None: ...

    def prepare_answer(self, call: Call, now: float) -> None: ...

    def send_initial_answer(self, call: Call, now: float) -> list[UaEvent]: ...

    def answer_pending(self, call: Call, now: float) -> list[UaEvent]: ...

    def drop_pending(self, call: Call) -> PendingOffer | None: ...

    def stop_2xx(self, call: Call) -> None: ...

    def ack_2xx(self, call: Call, cseq: int) -> None: ...

    def send_bye(self, call: Call, now: float) -> Outgoing: ...

    def send_refresh(self, call: Call, now: float) -> list[UaEvent]: ...

    def receive_reoffer(
        self, call: Call, txn: ServerTransaction, request: Request, now: float
    ) -> list[UaEvent]: ...


Effect = Callable[[CallHooks, Call, Stimulus], list[UaEvent]]


# ------------------------------------------------------------------ effects
def _prepare_answer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    hooks.prepare_answer(call, s.now)
    return []


def _send_answer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    return hooks.send_initial_answer(call, s.now)


def _answer_reoffer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    return hooks.answer_pending(call, s.now)


def _answer_failed(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    """The initial offer cannot be answered: refused, and the session ends unanswered so the
    layer above releases the ports it bound."""
    events = hooks.refuse(call.invite_transaction, s.status, s.phrase, s.reason, s.now)
    hooks.forget(call)
    return [*events, SessionEnded(call.session_id, s.now, s.reason, answered=False)]


def _reoffer_answer_failed(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    pending = hooks.drop_pending(call)
    if pending is None:
        return [MessageDropped(s.reason, call.source)]
    return hooks.refuse(pending.transaction, s.status, s.phrase, s.reason, s.now)


def _rejected(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    hooks.forget(call)
    return hooks.refuse(call.invite_transaction, s.status, s.phrase, s.reason, s.now, s.extra)


def _reoffer_rejected(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    pending = hooks.drop_pending(call)
    if pending is None:
        return []
    return hooks.refuse(pending.transaction, s.status, s.phrase, f"re-offer {s.reason}", s.now, s.extra)


def _confirm(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    hooks.stop_2xx(call)
    return []


def _ack(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    assert s.request is not None
    hooks.ack_2xx(call, s.request.cseq.number)
    return []


def _bye_before_answer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    """§15.1.2: a BYE before the 2xx ends the INVITE transaction with 487."""
    events = hooks.respond_invite(call, 487, s.now)
    hooks.forget(call)
    return [*events, SessionEnded(call.session_id, s.now, "bye", answered=False)]


def _bye(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    hooks.forget(call)
    return [SessionEnded(call.session_id, s.now, "bye", answered=True)]


def _cancelled(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    events = hooks.respond_invite(call, 487, s.now)
    hooks.forget(call)
    return [*events, SessionEnded(call.session_id, s.now, "cancelled", answered=False)]


def _hangup_before_answer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    """srs gives up on a session it has not answered: 503 with Retry-After, so the SBC tries another."""
    events = hooks.respond_invite(call, 503, s.now, (("Retry-After", str(hooks.retry_after)),))
    hooks.forget(call)
    return [*events, SessionEnded(call.session_id, s.now, s.reason, answered=False)]


def _hangup_answered(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    hooks.stop_2xx(call)
    bye = hooks.send_bye(call, s.now)
    hooks.forget(call)
    return [bye, SessionEnded(call.session_id, s.now, s.reason, answered=True)]


def _refresh(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    return hooks.send_refresh(call, s.now)


def _early_reoffer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    """RFC 3261 §14.2: an offer while the initial one is unanswered gets 500 with Retry-After."""
    assert s.transaction is not None
    detail = "initial offer still being answered"
    return hooks.refuse(s.transaction, 500, "Server Internal Error", detail, s.now, (("Retry-After", "1"),))


def _reoffer(hooks: CallHooks, call: Call, s: Stimulus) -> list[UaEvent]:
    assert s.transaction is not None and s.request is not None
    return hooks.receive_reoffer(call, s.transaction, s.request, s.now)


# --------------------------------------------------------------- the table
@dataclass(frozen=True, slots=True)
class Transition:
    next: CallPhase
    effect: Effect


_O, _A, _D, _C, _E = (
    CallPhase.OFFERED,
    CallPhase.ANSWERING,
    CallPhase.ANSWERED,
    CallPhase.CONFIRMED,
    CallPhase.ENDED,
)
_I = CallInput

TRANSITIONS: dict[tuple[CallPhase, CallInput], Transition] = {
    # the initial offer: ports, answer, 2xx, ACK
    (_O, _I.PORTS_BOUND): Transition(_A, _prepare_answer),
    (_A, _I.ANSWER_DUE): Transition(_D, _send_answer),
    (_D, _I.ACK): Transition(_C, _ack),
    (_D, _I.PEER_IN_DIALOG): Transition(_C, _confirm),
    (_C, _I.ACK): Transition(_C, _ack),
    # the initial offer refused (the layer above, or an answer that cannot be built)
    (_O, _I.ANSWER_FAILED): Transition(_E, _answer_failed),
    (_A, _I.ANSWER_FAILED): Transition(_E, _answer_failed),
    (_O, _I.REJECTED): Transition(_E, _rejected),
    # re-offers: refused during the initial offer, answered on the same dialog afterwards
    (_O, _I.REOFFER): Transition(_O, _early_reoffer),
    (_A, _I.REOFFER): Transition(_A, _early_reoffer),
    (_D, _I.REOFFER): Transition(_D, _reoffer),
    (_C, _I.REOFFER): Transition(_C, _reoffer),
    (_A, _I.PORTS_BOUND): Transition(_A, _answer_reoffer),
    (_D, _I.PORTS_BOUND): Transition(_D, _answer_reoffer),
    (_C, _I.PORTS_BOUND): Transition(_C, _answer_reoffer),
    (_D, _I.ANSWER_FAILED): Transition(_D, _reoffer_answer_failed),
    (_C, _I.ANSWER_FAILED): Transition(_C, _reoffer_answer_failed),
    (_A, _I.REJECTED): Transition(_A, _reoffer_rejected),
    (_D, _I.REJECTED): Transition(_D, _reoffer_rejected),
    (_C, _I.REJECTED): Transition(_C, _reoffer_rejected),
    # session timer (RFC 4028): srs refreshes only an answered session
    (_D, _I.REFRESH_DUE): Transition(_D, _refresh),
    (_C, _I.REFRESH_DUE): Transition(_C, _refresh),
    # the end, by the peer or by srs
    (_O, _I.BYE): Transition(_E, _bye_before_answer),
    (_A, _I.BYE): Transition(_E, _bye_before_answer),
    (_D, _I.BYE): Transition(_E, _bye),
    (_C, _I.BYE): Transition(_E, _bye),
    (_O, _I.CANCEL): Transition(_E, _cancelled),
    (_A, _I.CANCEL): Transition(_E, _cancelled),
    (_O, _I.HANGUP): Transition(_E, _hangup_before_answer),
    (_A, _I.HANGUP): Transition(_E, _hangup_before_answer),
    (_D, _I.HANGUP): Transition(_E, _hangup_answered),
    (_C, _I.HANGUP): Transition(_E, _hangup_answered),
}

FOLLOW_UPS: dict[CallInput, CallInput] = {CallInput.REOFFER: CallInput.PEER_IN_DIALOG}
"""Inputs whose effect may feed another input to the same call."""


def transition(phase: CallPhase, given: CallInput) -> Transition | None:
    """The table's entry for the pair, or None: the one rule applies (ignored, phase kept)."""
    return TRANSITIONS.get((phase, given))


def step(hooks: CallHooks, call: Call, stimulus: Stimulus) -> list[UaEvent]:
    """Deliver one input to one call: the only place a call's phase changes."""
    entry = transition(call.phase, stimulus.input)
    if entry is None:
        return []
    call.phase = entry.next
    return entry.effect(hooks, call, stimulus)
