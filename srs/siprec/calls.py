"""The live calls of one user agent: every way a message finds its call, and their deadlines.

A request finds its call by its dialog (Call-ID and both tags), a CANCEL by the
INVITE transaction it cancels, a resent INVITE by its origin (Call-ID, From tag,
CSeq: §8.2.2.2 merged requests), the API by the recording's session id, and a
response by the client transaction of srs's own BYE or UPDATE. Every lookup is
a dict, so nothing here walks the calls; the deadline heap holds each call's
earliest timer so ``next_deadline`` and ``on_timer`` visit only what is due.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from srs.sip.deadlines import DeadlineHeap
from srs.sip.message import Request
from srs.sip.transaction import ServerTransaction
from srs.siprec.call import Call

DialogKey = tuple[str, str, str]
"""(Call-ID, srs's tag, the peer's tag)."""

ClientKey = tuple[str, str]
"""A client transaction of srs's: (branch, method)."""


def dialog_key(request: Request) -> DialogKey:
    """The dialog an in-dialog request (or an ACK) names: srs's tag is in its To."""
    return (request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")


def origin_key(request: Request) -> tuple[str, str, int]:
    return (request.call_id, request.from_addr.tag or "", request.cseq.number)


class Calls:
    """Live calls by session id, dialog, INVITE transaction and origin, plus their deadline heap."""

    def __init__(self) -> None:
        self._by_session: dict[str, Call] = {}
        self._by_dialog: dict[DialogKey, Call] = {}
        self._by_origin: dict[tuple[str, str, int], Call] = {}
        self._by_invite: dict[int, Call] = {}
        self._byes: dict[ClientKey, str] = {}
        self._refreshes: dict[ClientKey, str] = {}
        # each live call's earliest deadline, re-armed on every change, disarmed when it ends
        self._deadlines: DeadlineHeap[Call] = DeadlineHeap()
        self._seq = itertools.count()

    # ----------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self._by_session)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._by_session.values()))

    def session_ids(self) -> list[str]:
        return list(self._by_session)

    def get(self, session_id: str) -> Call | None:
        return self._by_session.get(session_id)

    def is_live(self, call: Call) -> bool:
        return self._by_session.get(call.session_id) is call

    def in_dialog(self, request: Request) -> Call | None:
        return self._by_dialog.get(dialog_key(request))

    def by_invite(self, txn: ServerTransaction) -> Call | None:
        """The call whose initial INVITE is ``txn``."""
        return self._by_invite.get(id(txn))

    def is_merged(self, request: Request) -> bool:
        """§8.2.2.2: an INVITE with the origin of a live call's INVITE is that request again."""
        return origin_key(request) in self._by_origin

    # ----------------------------------------------------------------- changes
    def add(self, call: Call) -> None:
        """A new call, found by session id, INVITE transaction and origin; it gets its rank."""
        call.rank = next(self._seq)
        self._by_session[call.session_id] = call
        self._by_invite[id(call.invite_transaction)] = call
        self._by_origin[origin_key(call.invite)] = call

    def add_dialog(self, call: Call) -> None:
        """From the answer on, in-dialog requests find the call."""
        assert call.dialog is not None
        self._by_dialog[call.dialog.key] = call

    def remove(self, call: Call) -> bool:
        """Forget the call everywhere; True if it was live (so its quota is given back once)."""
        live = self.is_live(call)
        if live:
            del self._by_session[call.session_id]
            self._deadlines.disarm(call)
        self._by_invite.pop(id(call.invite_transaction), None)
        origin = origin_key(call.invite)
        if self._by_origin.get(origin) is call:
            del self._by_origin[origin]
        if call.dialog is not None:
            self._by_dialog.pop(call.dialog.key, None)
        return live

    # --------------------------------------------------------------- deadlines
    @staticmethod
    def deadline(call: Call) -> float | None:
        present = [
            d for d in (call.answer_due, call.expires_at, call.max_end, call.refresh_at) if d is not None
        ]
        return min(present) if present else None

    def rearm(self, call: Call) -> None:
        """Queue the call's earliest deadline; every change of a deadline field ends here."""
        deadline = Calls.deadline(call)
        if deadline is not None and not self.is_live(call):
            return
        self._deadlines.arm(call, deadline)

    def earliest(self) -> float | None:
        return self._deadlines.earliest()

    def due(self, now: float) -> list[Call]:
        """Calls with a deadline at or before ``now``, in creation order (as a scan would find them)."""
        return sorted(self._deadlines.pop_due(now), key=lambda c: c.rank)

    @property
    def heap_size(self) -> int:
        return len(self._deadlines)

    # ----------------------------------------------------- srs's own requests
    def sent_bye(self, key: ClientKey, session_id: str) -> None:
        self._byes[key] = session_id

    def sent_refresh(self, key: ClientKey, session_id: str) -> None:
        self._refreshes[key] = session_id

    def is_ours(self, key: ClientKey) -> bool:
        return key in self._byes or key in self._refreshes

    def finished(self, key: ClientKey) -> str | None:
        """A request of srs's got its final answer (or timed out): the session id if it was a refresh."""
        self._byes.pop(key, None)
        return self._refreshes.pop(key, None)

    @property
    def byes_pending(self) -> bool:
        return bool(self._byes)
