"""Turn the strings people type (CLI flags, query parameters) into a RecordingFilter, one way for both."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from srs.service.errors import BadRequest
from srs.service.timefmt import parse_instant
from srs.storage.records import RecordingFilter, State

FILTER_KEYS = (
    "state", "start", "end", "call_recording_id", "participant", "sip_call_id", "source",
    "min_duration", "max_duration", "node",
)


EXTENSION_KEY = "extension"
"""Where a filter carries ``KEY:VALUE`` extension matches (a list; the query string may repeat it)."""
EXTENSION_PREFIX = "ext."
"""``ext.KEY=VALUE`` in a query string: the same as ``extension=KEY:VALUE``."""


def check_keys(
    keys: Iterable[str], allowed: Iterable[str], *, what: str, prefixes: Iterable[str] = ()
) -> None:
    """Refuse a key that is not ``allowed`` (nor starts with one of ``prefixes``), naming it.

    A misspelt filter silently dropped answers with every recording (or exports all of them),
    so list, export and CLI filters, and every query string of the API, go through here.
    """
    known = set(allowed)
    starts = tuple(prefixes)
    unknown = sorted({
        key for key in keys
        if key not in known and not (starts and key.startswith(starts) and key not in starts)
    })
    if unknown:
        expected = ", ".join(sorted(known) + [f"{p}KEY" for p in starts]) or "none"
        raise BadRequest(f"unknown {what} {', '.join(repr(k) for k in unknown)} (expected: {expected})")


def filter_from_mapping(raw: Mapping[str, Any], *, oldest_first: bool = False) -> RecordingFilter:
    """A filter given as one mapping (an export request's ``filter``): the list endpoint's keys,
    ``extension`` as a list of ``KEY:VALUE``, and ``ext.KEY`` entries; anything else is refused."""
    check_keys(raw, (*FILTER_KEYS, EXTENSION_KEY), what="filter key", prefixes=(EXTENSION_PREFIX,))
    extensions = raw.get(EXTENSION_KEY) or []
    if isinstance(extensions, str):
        extensions = [extensions]
    if not isinstance(extensions, list):
        raise BadRequest(f"{EXTENSION_KEY} must be a list of KEY:VALUE strings")
    pairs = [split_extension(str(item)) for item in extensions]
    pairs += [(key[len(EXTENSION_PREFIX):], str(value)) for key, value in raw.items()
              if key.startswith(EXTENSION_PREFIX)]
    values = {key: value for key, value in raw.items() if key in FILTER_KEYS}
    return build_filter(values, pairs, oldest_first=oldest_first)


MAX_DURATION_S = 10 * 366 * 86_400  # far beyond any call, far below SQLite's integer range


def _duration_ms(text: str | float | None, name: str) -> int | None:
    """Durations in filters are seconds (fractions allowed)."""
    if text is None or text == "":
        return None
    try:
        seconds = float(text)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a number of seconds, got {text!r}") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise BadRequest(f"{name} must be a finite, non-negative number of seconds")
    if seconds > MAX_DURATION_S:
        raise BadRequest(f"{name} is at most {MAX_DURATION_S} seconds")
    return round(seconds * 1000)


def split_extension(text: str) -> tuple[str, str]:
    """``KEY=VALUE``, or ``KEY:VALUE`` when there is no ``=`` (a key with colons needs the ``=`` form)."""
    cut = text.find("=")
    if cut <= 0:
        cut = text.find(":")
    if cut <= 0:
        raise BadRequest(f"extension filter must be KEY=VALUE or KEY:VALUE, got {text!r}")
    return text[:cut], text[cut + 1:]


def build_filter(
    values: Mapping[str, Any], extensions: Iterable[tuple[str, str]] = (), *, oldest_first: bool = False
) -> RecordingFilter:
    check_keys(values, FILTER_KEYS, what="filter key")

    def text(key: str) -> str | None:
        value = values.get(key)
        if value is None or value == "":
            return None
        return str(value)

    state_text = text("state")
    state: State | None = None
    if state_text is not None:
        try:
            state = State(state_text)
        except ValueError as exc:
            choices = ", ".join(s.value for s in State)
            raise BadRequest(f"unknown state {state_text!r} (one of {choices})") from exc
    start, end = text("start"), text("end")
    return RecordingFilter(
        state=state,
        start=parse_instant(start) if start is not None else None,
        end=parse_instant(end) if end is not None else None,
        call_recording_id=text("call_recording_id"),
        participant=text("participant"),
        sip_call_id=text("sip_call_id"),
        source=text("source"),
        node=text("node"),
        min_duration_ms=_duration_ms(text("min_duration"), "min_duration"),
        max_duration_ms=_duration_ms(text("max_duration"), "max_duration"),
        extensions=tuple(extensions),
        oldest_first=oldest_first,
    )


def filter_to_json(filt: RecordingFilter) -> dict[str, Any]:
    """A JSON-safe description (stored with export jobs, round-trips through :func:`filter_from_json`)."""
    return {
        "state": filt.state.value if filt.state is not None else None,
        "start": filt.start, "end": filt.end, "call_recording_id": filt.call_recording_id,
        "participant": filt.participant, "sip_call_id": filt.sip_call_id, "source": filt.source,
        "node": filt.node, "min_duration_ms": filt.min_duration_ms, "max_duration_ms": filt.max_duration_ms,
        "extensions": [list(pair) for pair in filt.extensions],
        "ids": list(filt.ids) if filt.ids is not None else None,
    }


def filter_from_json(data: Mapping[str, Any]) -> RecordingFilter:
    ids = data.get("ids")
    return RecordingFilter(
        state=State(data["state"]) if data.get("state") else None,
        start=data.get("start"), end=data.get("end"), call_recording_id=data.get("call_recording_id"),
        participant=data.get("participant"), sip_call_id=data.get("sip_call_id"), source=data.get("source"),
        node=data.get("node"), min_duration_ms=data.get("min_duration_ms"),
        max_duration_ms=data.get("max_duration_ms"),
        extensions=tuple((str(k), str(v)) for k, v in data.get("extensions") or ()),
        ids=tuple(ids) if ids is not None else None,
    )
