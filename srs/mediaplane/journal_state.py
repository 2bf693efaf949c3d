"""What a journal replay needs besides the datagrams: the recording's and its streams' specs, pauses.

Kept as a small JSON file beside the journal, replaced whole (write, then rename) on the rare
changes of a call (a stream set up, a pause), so a crash leaves the old or the new version.
SRTP keys are not written: the journal holds datagrams after decryption.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from srs.media.rendering import PayloadFormat
from srs.mediaplane.contract import RecorderSpec, StreamSpec

JOURNAL_SUFFIX = ".journal"
STATE_SUFFIX = ".journal.json"


def journal_path(recording_path: str | os.PathLike[str]) -> str:
    return os.fspath(recording_path) + JOURNAL_SUFFIX


def state_path(recording_path: str | os.PathLike[str]) -> str:
    return os.fspath(recording_path) + STATE_SUFFIX


@dataclass
class JournalState:
    spec: RecorderSpec
    streams: dict[int, StreamSpec | None] = field(default_factory=dict)
    """RTP port -> the stream it feeds now (None: ended)."""
    pauses: list[tuple[str, float]] = field(default_factory=list)
    """("pause" | "resume", at) in order."""

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "spec": {
                "path": spec.path,
                "start": spec.start,
                "reorder_window": spec.reorder_window,
                "pause_mode": spec.pause_mode,
                "extra": _plain(dict(spec.extra)),
            },
            "streams": {
                str(port): None
                if stream is None
                else {
                    "formats": {
                        str(pt): [f.encoding, f.clock_rate, f.channels, f.fmtp]
                        for pt, f in stream.formats.items()
                    },
                    "label": stream.label,
                    "relatch_after": stream.relatch_after,
                    "sources": None if stream.sources is None else list(stream.sources),
                }
                for port, stream in self.streams.items()
            },
            "pauses": [[op, at] for op, at in self.pauses],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalState:
        """Raises KeyError, TypeError or ValueError on a file that is not a state."""
        raw = data["spec"]
        extra = dict(raw.get("extra") or {})
        if "stereo" in extra and extra["stereo"] is not None:
            left, right = extra["stereo"]
            extra["stereo"] = (tuple(int(i) for i in left), tuple(int(i) for i in right))
        spec = RecorderSpec(
            str(raw["path"]),
            float(raw["start"]),
            reorder_window=float(raw["reorder_window"]),
            pause_mode=str(raw["pause_mode"]),
            extra=extra,
        )
        streams: dict[int, StreamSpec | None] = {}
        for port, stream in dict(data.get("streams") or {}).items():
            if stream is None:
                streams[int(port)] = None
                continue
            formats = {
                int(pt): PayloadFormat(str(f[0]), int(f[1]), int(f[2]), None if f[3] is None else str(f[3]))
                for pt, f in dict(stream["formats"]).items()
            }
            sources = stream.get("sources")  # absent in a state written before streams had allowed hosts
            streams[int(port)] = StreamSpec(
                formats,
                label=str(stream["label"]),
                relatch_after=float(stream["relatch_after"]),
                sources=None if sources is None else tuple(str(host) for host in sources),
            )
        pauses = [(str(op), float(at)) for op, at in data.get("pauses") or []]
        return cls(spec, streams, pauses)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def save_state(path: str, state: JournalState) -> None:
    """Replace the state file whole (a kill leaves the previous one)."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(state.to_json(), handle)
    os.replace(temporary, path)


def load_state(path: str) -> JournalState | None:
    """The state, or None when it is missing or unreadable (bad input is normal input)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return JournalState.from_json(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def remove_files(recording_path: str | os.PathLike[str]) -> None:
    state = state_path(recording_path)
    for name in (journal_path(recording_path), state, state + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
