"""How complete a recording is, as the JSON the index stores and ``recordings show --json`` prints.

Streams are numbered from 1 in m-line order in warnings, as an administrator
reads the SDP; ``index`` in the per-stream objects is the 0-based track index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srs.media.result import RecordingResult
from srs.media.statistics import StreamStats

_INCOMPLETE = 0.95


def stream_name(index: int, stats: StreamStats) -> str:
    return f"stream {index + 1}" + (f" ({stats.label})" if stats.label else "")


def is_empty(stats: StreamStats) -> bool:
    """Nothing audible could have been recorded: no RTP, or none of it decodable."""
    return stats.captured_ms == 0


def is_silent(stats: StreamStats) -> bool:
    """Audio arrived but it is digital silence or close to it (a muted leg, a broken codec)."""
    return not is_empty(stats) and stats.silent


def stream_warnings(index: int, stats: StreamStats) -> list[str]:
    """The short, greppable complaints about one stream (``stream 2 empty``, ``stream 1 silent``)."""
    name = stream_name(index, stats)
    warnings = []
    if stats.packets_received == 0:
        warnings.append(f"{name} empty: received no RTP")
    elif is_empty(stats):
        warnings.append(f"{name} empty: no decodable audio")
    elif is_silent(stats):
        warnings.append(f"{name} silent")
    elif stats.completeness < _INCOMPLETE:
        warnings.append(f"{name} captured {stats.completeness:.0%} of its expected audio")
    if stats.packets_dropped_source:
        warnings.append(f"{name} dropped {stats.packets_dropped_source} packets from unlatched sources")
    if stats.relatches:
        warnings.append(f"{name} changed RTP source {stats.relatches} times: {' -> '.join(stats.sources)}")
    if stats.decoder_errors:
        warnings.append(f"{name} had {stats.decoder_errors} undecodable packets")
    return warnings


def stream_report(index: int, stats: StreamStats) -> dict[str, Any]:
    return {
        "index": index,
        "label": stats.label,
        "expected_ms": stats.expected_ms,
        "captured_ms": stats.captured_ms,
        "completeness": round(stats.completeness, 4),
        "packets_received": stats.packets_received,
        "packets_lost": stats.packets_lost,
        "packets_late": stats.packets_late,
        "packets_duplicate": stats.packets_duplicate,
        "packets_dropped_source": stats.packets_dropped_source,
        "packets_unknown_pt": stats.packets_unknown_pt,
        "packets_comfort_noise": stats.packets_comfort_noise,
        "packets_rtcp": stats.packets_rtcp,
        "malformed": stats.malformed,
        "decoder_errors": stats.decoder_errors,
        "ssrc_changes": stats.ssrc_changes,
        "ssrcs": [f"{ssrc:08x}" for ssrc in stats.ssrcs],
        "reanchors": stats.reanchors,
        "clock_adjustments": stats.clock_adjustments,
        "relatches": stats.relatches,
        "source": stats.source,
        "sources": list(stats.sources),
        "rejected_sources": _rejected(stats),
        "rtcp_dropped_source": stats.rtcp_dropped_source,
        "gaps": [{"offset_ms": offset, "length_ms": length} for offset, length in stats.gaps],
        "first_packet_at": stats.first_packet_at,
        "last_packet_at": stats.last_packet_at,
        "peak": stats.peak,
        "dtmf": [
            {"digit": e.digit, "offset_ms": e.offset_ms, "duration_ms": e.duration_ms} for e in stats.dtmf
        ],
        "empty": is_empty(stats),
        "silent": is_silent(stats),
        "warnings": stream_warnings(index, stats),
    }


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One stream's final figures as a recording keeps them: the per-stream object of the index's
    ``completeness.streams`` (by label), and the counters the daemon adds to its metrics.

    The one path from a track's :class:`StreamStats` to what is stored: the daemon reads the
    typed fields, never the JSON back.
    """

    stats: StreamStats
    packets_dropped_srtp: int = 0
    """SRTP datagrams of this stream that failed authentication (counted by the media plane)."""

    @property
    def label(self) -> str:
        return self.stats.label

    @property
    def packets_dropped(self) -> int:
        """Packets received but not recorded: late, duplicated, from another source, malformed."""
        s = self.stats
        return s.packets_late + s.packets_duplicate + s.packets_dropped_source + s.malformed

    def warnings(self) -> list[str]:
        if not self.packets_dropped_srtp:
            return []
        return [f"stream {self.label}: {self.packets_dropped_srtp} SRTP packets failed authentication"]

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "packets_received": s.packets_received,
            "packets_lost": s.packets_lost,
            "packets_late": s.packets_late,
            "packets_duplicate": s.packets_duplicate,
            "packets_dropped_source": s.packets_dropped_source,
            "malformed": s.malformed,
            "decoder_errors": s.decoder_errors,
            "ssrc_changes": s.ssrc_changes,
            "gaps": [list(g) for g in s.gaps],
            "expected_ms": s.expected_ms,
            "captured_ms": s.captured_ms,
            "completeness": round(s.completeness, 4),
            "silent": s.silent,
            "packets_dropped_srtp": self.packets_dropped_srtp,
            "source": s.source,
            "source_changes": s.relatches,
            "sources": list(s.sources),
            "rejected_sources": _rejected(s),
            "rtcp_dropped_source": s.rtcp_dropped_source,
            "first_audio_ms": s.first_audio_ms,
        }


def _rejected(stats: StreamStats) -> list[dict[str, Any]]:
    return [{"address": a, "packets": n} for a, n in stats.rejected_sources]


def completeness_report(result: RecordingResult) -> dict[str, Any]:
    """Per-recording totals and per-stream detail; JSON-serialisable (plain dicts, lists, numbers)."""
    streams = [stream_report(i, stats) for i, stats in enumerate(result.streams)]
    expected = sum(s.expected_ms for s in result.streams)
    captured = sum(s.captured_ms for s in result.streams)
    labels = [s.label for s in result.streams]
    return {
        "duration_ms": result.duration_ms,
        "samples": result.samples,
        "paused_ms": result.paused_ms,
        "expected_ms": expected,
        "captured_ms": captured,
        "completeness": round(min(1.0, captured / expected), 4) if expected > 0 else 1.0,
        "packets_received": sum(s.packets_received for s in result.streams),
        "packets_lost": sum(s.packets_lost for s in result.streams),
        "packets_late": sum(s.packets_late for s in result.streams),
        "packets_duplicate": sum(s.packets_duplicate for s in result.streams),
        "empty_streams": sum(1 for s in streams if s["empty"]),
        "silent_streams": sum(1 for s in streams if s["silent"]),
        "dtmf": [
            {
                "stream": index,
                "label": labels[index] if index < len(labels) else "",
                "digit": event.digit,
                "offset_ms": event.offset_ms,
                "duration_ms": event.duration_ms,
            }
            for index, event in result.dtmf
        ],
        "files": [
            {
                "path": f.path,
                "format": f.format,
                "channels": f.channels,
                "sample_rate": f.sample_rate,
                "size": f.size,
                "frames": f.frames,
                "label": f.label,
            }
            for f in result.files
        ],
        "warnings": list(result.warnings),
        "streams": streams,
    }
