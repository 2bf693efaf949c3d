"""Instants as ISO 8601 UTC strings for JSON, and parsing what humans type for filters."""

from __future__ import annotations

import datetime as dt

from srs.service.errors import BadRequest


def iso_utc(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: str) -> float:
    """Unix seconds or ISO 8601 (a missing zone means UTC)."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"not a time: {text!r} (use ISO 8601 or unix seconds)") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()
