"""What a finished recording amounts to: the value the recorder returns and the report reads.

It lives below both :mod:`srs.media.recorder` (which builds it) and :mod:`srs.media.report`
(which turns it into JSON) so that neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from srs.media.outputs import OutputFile
from srs.media.statistics import StreamStats
from srs.rtp.dtmf import DtmfEvent


@dataclass(frozen=True, slots=True)
class RecordingResult:
    path: str
    duration_ms: int
    samples: int
    """Sample frames in the file."""
    paused_ms: int
    streams: tuple[StreamStats, ...]
    dtmf: tuple[tuple[int, DtmfEvent], ...]
    """(stream index, event) with offsets on the file's timeline, in order of offset."""
    warnings: tuple[str, ...]
    files: tuple[OutputFile, ...] = ()
    """Every file written: the mix first, then per-stream files in track order."""
    pauses: tuple[tuple[int, int], ...] = ()
    """(offset_ms, length_ms) of each pause (hold), the offset on the file's timeline."""
