"""Replaying a crash journal into its recording's file at start-up (the daemon and its workers died).

The journal (:mod:`srs.mediaplane.journal`) holds the datagrams that reached the worker after the
file's last flush, and its state file the recording's and streams' specs and pauses; they are
pushed through fresh tracks of a recorder that continues the file where it stood, and the file is
finished at the last datagram. Both journal files are removed afterwards (also when they cannot
be read: bad input is normal input, and a half-written state is no reason to keep them).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from srs.media.rendering import DecoderFactory
from srs.mediaplane.journal_state import journal_path, load_state, remove_files, state_path
from srs.mediaplane.recordings import RecordingSet

_TAIL_S = 0.1
"""How far past the newest packet's place the file is finished (its own length, at most 100 ms)."""
_KEY = "recovery"


@dataclass(frozen=True, slots=True)
class Recovered:
    replayed: int
    """Datagrams pushed from the journal."""
    recovered_ms: int
    """Audio added to the file."""
    torn: bool
    """The journal ended in a record cut short by the kill."""


def recover_recording(path: str | os.PathLike[str], decoder_factory: DecoderFactory) -> Recovered | None:
    """Replay the journal beside ``path`` into it; None when there is none (or it cannot be used).

    Raises OSError/ValueError when the file cannot be continued (the caller repairs it as it is).
    """
    path = os.fspath(path)
    if not os.path.exists(journal_path(path)):
        remove_files(path)
        return None
    state = load_state(state_path(path))
    if state is None or not os.path.exists(path):
        remove_files(path)
        return None
    recordings = RecordingSet(decoder_factory)
    spec = dataclasses.replace(state.spec, path=path, resume=True)
    try:
        recordings.open(_KEY, spec)
        rec = recordings.recordings[_KEY]
        resumed = rec.resumed
        if resumed is None:
            recordings.abort(_KEY)
            return None
        recorder = rec.recorder
        before = recorder.frames
        for port, stream in state.streams.items():
            if stream is not None:
                recordings.set_stream(_KEY, port, stream, spec.start)
        for op, at in state.pauses:
            if op == "pause":
                recordings.pause(_KEY, at)
            elif op == "resume":
                recordings.resume(_KEY, at)
        written_at = recorder.start + recorder.written_until / recorder.sample_rate
        # the file ends after the newest packet's place (tracks place by RTP timestamp, which may
        # lie after its arrival), or after the last arrival when no track placed anything
        placed = [p[3] for t in recorder.tracks if (p := t.placement()) is not None]
        if placed:
            end = recorder.start + max(placed) / recorder.sample_rate + _TAIL_S
        elif resumed.last_arrival is not None:
            end = resumed.last_arrival + _TAIL_S
        else:
            end = written_at
        result = recordings.close(_KEY, max(end, written_at))
    finally:
        recordings.abort(_KEY)
        remove_files(path)
    return Recovered(resumed.replayed, (result.samples - before) * 1000 // recorder.sample_rate, resumed.torn)
