"""``[live] targets``: websocket servers srs connects to when a matching call starts.

A target is a ``ws://`` or ``wss://`` URL; options ride in its query as ``srs.*`` parameters, which
are removed before connecting: ``srs.format`` (jambonz|twilio), ``srs.mix`` (mono|stereo|streams),
``srs.rate`` (8000|16000) and the filters ``srs.source`` (substring of the SBC's address),
``srs.participant`` (substring of a participant's AOR or name) and ``srs.extension`` (substring of
a vendor extension ``name:value``). Each matching call gets its own connection with the call's
metadata first (as a pull listener would); a lost connection is opened again with exponential
backoff (0.2 s doubling to ``reconnect_max_s``) while the call lasts, starting with a fresh start
message; audio of the time in between is not sent. Metadata updates arrive as ``metadata`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets

from srs.service.live_formats import JAMBONZ_SUBPROTOCOL, CallInfo
from srs.service.live_hub import DEFAULT_QUEUE_FRAMES, FORMATS, MIX_TYPES, Listener, LiveHub

OPTION_PREFIX = "srs."
FIRST_RETRY_S = 0.2


@dataclass(frozen=True, slots=True)
class PushTarget:
    url: str
    format: str = "jambonz"
    mix: str = "mono"
    rate: int = 8000
    source: str = ""
    participant: str = ""
    extension: str = ""

    def matches(self, info: CallInfo) -> bool:
        if self.source and self.source not in info.source:
            return False
        if self.participant:
            texts = [str(p.get("aor") or "") + " " + str(p.get("name") or "") for p in info.participants]
            if not any(self.participant.lower() in t.lower() for t in texts):
                return False
        return not self.extension or any(self.extension in e for e in info.extensions)


def parse_target(text: str) -> PushTarget:
    """A target from its configured URL; ValueError names what is wrong."""
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"{text!r} is not a ws:// or wss:// URL")
    options: dict[str, str] = {}
    kept = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.startswith(OPTION_PREFIX):
            options[key[len(OPTION_PREFIX):]] = value
        else:
            kept.append((key, value))
    unknown = set(options) - {"format", "mix", "rate", "source", "participant", "extension"}
    if unknown:
        raise ValueError(f"{text!r}: unknown option {', '.join(sorted(OPTION_PREFIX + k for k in unknown))}")
    target = PushTarget(
        url=urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), "")),
        format=options.get("format", "jambonz"),
        mix=options.get("mix", "mono"),
        rate=int(options["rate"]) if options.get("rate", "").isdigit() else 8000,
        source=options.get("source", ""),
        participant=options.get("participant", ""),
        extension=options.get("extension", ""),
    )
    if target.format not in FORMATS or target.mix not in MIX_TYPES or target.rate not in (8000, 16000):
        raise ValueError(f"{text!r}: srs.format, srs.mix or srs.rate not supported")
    return target


@dataclass
class _Push:
    target: PushTarget
    info: CallInfo
    done: asyncio.Event
    task: asyncio.Task[None] | None = None
    connections: int = 0


class LivePusher:
    """One task per (call, matching target); all on the daemon's loop, none waited for by media."""

    def __init__(
        self, targets: Iterable[PushTarget], hub: LiveHub, *, queue_frames: int = DEFAULT_QUEUE_FRAMES,
        reconnect_max_s: float = 10.0, log: Any = None,
    ) -> None:
        self.targets = list(targets)
        self.hub = hub
        self.queue_frames = queue_frames
        self.reconnect_max_s = reconnect_max_s
        self.log = log
        self.calls: dict[str, dict[int, _Push]] = {}
        self.audit: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        """Writes the ``live_listen`` audit row of one connection: (recording id, detail)."""

    def consider(self, info: CallInfo) -> None:
        """A call started or its metadata changed: connect the targets that match and are not yet on."""
        if not self.targets:
            return
        pushes = self.calls.setdefault(info.key, {})
        for number, target in enumerate(self.targets):
            if number in pushes:
                pushes[number].info = info
                continue
            if target.matches(info):
                push = _Push(target, info, asyncio.Event())
                push.task = asyncio.get_running_loop().create_task(self._run(push))
                pushes[number] = push

    def ended(self, key: str) -> None:
        for push in self.calls.pop(key, {}).values():
            push.done.set()

    async def stop(self) -> None:
        tasks = []
        for key in list(self.calls):
            tasks += [p.task for p in self.calls[key].values() if p.task is not None]
            self.ended(key)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, push: _Push) -> None:
        delay = FIRST_RETRY_S
        target = push.target
        while not push.done.is_set():
            listener = Listener(
                push.info, format=target.format, mix=target.mix, sample_rate=target.rate,
                queue_frames=self.queue_frames,
            )
            if not self.hub.attach(push.info.key, listener):
                return
            started = asyncio.get_running_loop().time()
            end = "target unreachable"
            try:
                jambonz = target.format == "jambonz"
                protocols = [websockets.Subprotocol(JAMBONZ_SUBPROTOCOL)] if jambonz else None
                async with websockets.connect(target.url, subprotocols=protocols, open_timeout=5) as ws:
                    push.connections += 1
                    delay = FIRST_RETRY_S
                    while True:
                        kind, payload = await listener.next()
                        if kind == "close":
                            end = str(payload)
                            await ws.close(1000, end)
                            return
                        await ws.send(payload)
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                if push.connections and end == "target unreachable":
                    end = "target went away"
                if self.log is not None:
                    self.log.warning("live_push_failed", url=target.url, recording=push.info.recording_id,
                                     error=str(exc) or type(exc).__name__, retry_s=delay)
            finally:
                self.hub.detach(push.info.key, listener)
                if self.audit is not None and listener.sent:
                    detail = {
                        "target": target.url, "format": target.format, "mix": target.mix, "rate": target.rate,
                        "seconds": round(asyncio.get_running_loop().time() - started, 3),
                        "messages_sent": listener.sent, "frames_dropped": listener.dropped, "end": end,
                    }
                    with contextlib.suppress(Exception):
                        await self.audit(push.info.recording_id, detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(push.done.wait(), delay)
            delay = min(delay * 2, self.reconnect_max_s)
