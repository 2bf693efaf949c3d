"""The per-call and per-source bounds, in words and in SIP: what one source or one recording may
make srs hold, how a refusal reads (for the log and the Warning header) and which status it gets."""

from __future__ import annotations

from srs.siprec.call import Call
from srs.siprec.multipart import SiprecBody
from srs.siprec.settings import UaSettings


def limit_detail(
    settings: UaSettings,
    limit: str,
    host: str,
    held: tuple[int, int],
    *,
    streams: int = 0,
    call: Call | None = None,
) -> str:
    """``limit`` in words; ``held`` is (sessions, streams) the source holds now."""
    sessions_held, streams_held = held
    if limit == "streams_per_call":
        return f"{streams} media streams, at most {settings.max_streams_per_call} per call"
    if limit == "sessions_per_source":
        return f"{host} holds {sessions_held} sessions, at most {settings.max_sessions_per_source}"
    if limit == "streams_per_source":
        return (
            f"{host} holds {streams_held} media streams, {streams} more would pass "
            f"{settings.max_streams_per_source}"
        )
    if limit == "metadata_versions":
        return f"metadata update refused: {settings.max_metadata_versions} versions per recording reached"
    if limit == "metadata_bytes":
        held_bytes = call.metadata_bytes if call is not None else 0
        most = settings.max_metadata_bytes
        return f"metadata update refused: {held_bytes} bytes held, at most {most} per recording"
    return limit


def limit_response(limit: str, retry_after: int) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """Status, reason and extra headers of a refusal by ``limit``.

    Too many streams in one offer is a property of the offer (488, RFC 3261 §21.4.26: not
    acceptable here, the Warning says why); a source over its share of sessions or streams is a
    temporary state of this server (503 with Retry-After, so an SBC tries another recorder);
    metadata past its bounds is refused for good (403) while the call keeps recording.
    """
    if limit == "streams_per_call":
        return 488, "Not Acceptable Here", ()
    if limit in ("sessions_per_source", "streams_per_source"):
        return 503, "Service Unavailable", (("Retry-After", str(retry_after)),)
    return 403, "Forbidden", ()


def metadata_over(settings: UaSettings, call: Call, body: SiprecBody) -> str | None:
    """Which metadata bound one more update would pass: every version is kept in the index
    and served whole, so versions and bytes per recording are capped."""
    if body.metadata is None:
        return None
    if settings.max_metadata_versions and call.metadata_versions >= settings.max_metadata_versions:
        return "metadata_versions"
    if settings.max_metadata_bytes and call.metadata_bytes + len(body.metadata) > settings.max_metadata_bytes:
        return "metadata_bytes"
    return None


def count_metadata(call: Call, body: SiprecBody) -> None:
    call.metadata_versions += 1
    call.metadata_bytes += len(body.metadata or b"")
