"""Instants as ISO 8601 UTC strings for JSON, and parsing what humans type for filters."""

from __future__ import annotations

import datetime as dt
import math

from srs.service.errors import BadRequest

MAX_INSTANT_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant ISO 8601 can write


def iso_utc(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: str) -> float:
    """Unix seconds or ISO 8601 (a missing zone means UTC)."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > MAX_INSTANT_S:
            raise BadRequest(f"not a time: {text!r} (out of range)")
        return seconds
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"not a time: {text!r} (use ISO 8601 or unix seconds)") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    try:
        return stamp.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise BadRequest(f"not a time: {text!r} (out of range)") from exc
