"""Build real recordings on disk (a real WAV file, a real index row) for storage/service/API tests."""

from __future__ import annotations

import hashlib
import io
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import (
    DtmfEvent,
    FinalizedRecording,
    NewRecording,
    Participant,
    State,
    StreamInfo,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def wav_bytes(samples: int = 8000, seed: int = 1) -> bytes:
    """8 kHz mono 16-bit PCM; distinct content per seed so byte ranges are checkable."""
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-20000, 20000, size=samples, dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def add_recording(
    index: RecordingIndex,
    layout: DataLayout,
    *,
    started_at: float = T0,
    duration_ms: int = 1000,
    call_recording_id: str | None = "crid-1",
    sip_call_id: str | None = "call-1@sbc",
    source: str | None = "192.0.2.10:5060",
    participants: Sequence[Participant] = (
        Participant("p1", "sip:+15551230001@example.com", "Alice", ("s1",), ("s2",)),
        Participant("p2", "sip:+15551230002@example.com", "Bob", ("s2",), ("s1",)),
    ),
    extensions: Mapping[str, str] | None = None,
    state: State = State.AVAILABLE,
    audio: bytes | None = None,
    seed: int = 1,
) -> str:
    rid = index.create_recording(
        NewRecording(
            started_at=started_at, sip_call_id=sip_call_id, source=source, call_recording_id=call_recording_id
        )
    )
    index.set_metadata(
        rid,
        call_recording_id,
        participants,
        [StreamInfo("1", "s1", "PCMU", 50, 0), StreamInfo("2", "s2", "PCMA", 49, 1, {"jitter_ms": 2.5})],
        extensions or {"vendor:agent": "42"},
    )
    index.add_metadata_version(rid, started_at, b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'/>")
    if state in (State.STARTING,):
        return rid
    index.advance_state(rid, State.RECORDING)
    if state == State.RECORDING:
        return rid
    if state == State.STOPPING:
        index.advance_state(rid, State.STOPPING)
        return rid
    path: Path | None = None
    data = b""
    if state == State.AVAILABLE:
        data = audio if audio is not None else wav_bytes(seed=seed)
        path = layout.recording_path(rid, started_at)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    index.finalize(
        rid,
        FinalizedRecording(
            ended_at=started_at + duration_ms / 1000,
            duration_ms=duration_ms,
            file_path=str(path) if path else None,
            file_size=len(data) if path else None,
            sha256=hashlib.sha256(data).hexdigest() if path else None,
            dtmf=(DtmfEvent("1", "5", 200, 80),),
            warnings=("late packets: 1",),
            completeness={"expected_ms": duration_ms, "received_ms": duration_ms},
            state=state,
        ),
    )
    return rid
