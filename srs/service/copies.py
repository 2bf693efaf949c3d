"""Copies of one SIPREC session recorded by several nodes, and which copy stands for the session.

SBCs record a session on up to three recorders at once (simultaneous recording servers, active and
standby pairs, forking). Each node keeps its own recording (own id, file, retention); they share
the call-recording-id of the metadata, the key of the logical recording. The list keeps one row
per copy and marks, on each, every copy of its session and whether it is the preferred one; a
lookup by call-recording-id answers the preferred copy. Preferred: the most complete by its
completeness report (available before unfinished or failed, not marked incomplete, most RTP
packets received, fewest lost, longest), then the oldest id, so every node picks the same one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def completeness_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sorts the best copy first (smallest key)."""
    streams = (row.get("completeness") or {}).get("streams") or {}
    received = sum(int(s.get("packets_received") or 0) for s in streams.values() if isinstance(s, dict))
    lost = sum(int(s.get("packets_lost") or 0) for s in streams.values() if isinstance(s, dict))
    return (
        row.get("state") != "available",
        bool(row.get("incomplete")),
        -received,
        lost,
        -int(row.get("duration_ms") or 0),
        row["id"],
    )


def preferred(copies: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return min(copies, key=completeness_key)


def describe(copies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The public ``copies`` field: every copy, the preferred one first."""
    ordered = sorted(copies, key=completeness_key)
    return [
        {
            "id": row["id"],
            "node": row.get("node"),
            "state": row.get("state"),
            "complete": row.get("state") == "available" and not row.get("incomplete"),
            "duration_ms": row.get("duration_ms"),
            "preferred": i == 0,
        }
        for i, row in enumerate(ordered)
    ]
