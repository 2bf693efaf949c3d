"""A media plane that records what the daemon asks of it and writes a real WAV when closed."""

from __future__ import annotations

import asyncio
import wave
from dataclasses import replace
from typing import Any

from srs.media.result import RecordingResult
from srs.media.statistics import StreamStats
from srs.mediaplane.contract import Activity, MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.ports import RtpPort


def stats(label: str, **figures: Any) -> StreamStats:
    """One stream's statistics: one second of good audio unless ``figures`` say otherwise."""
    base = StreamStats(
        label=label, packets_received=50, packets_lost=0, packets_late=0, packets_duplicate=0,
        packets_dropped_source=0, packets_unknown_pt=0, packets_comfort_noise=0, packets_rtcp=0,
        malformed=0, decoder_errors=0, ssrc_changes=0, reanchors=0, clock_adjustments=0, relatches=0,
        ssrcs=(0x1234,), gaps=(), expected_ms=1000, captured_ms=1000, first_packet_at=0.0,
        last_packet_at=1.0, peak=9000, dtmf=(), source="127.0.0.1:40000", sources=("127.0.0.1:40000",),
        first_audio_ms=0,
    )
    return replace(base, **figures)


def write_wav(path: str, *, rate: int = 8000, channels: int = 1, seconds: float = 1.0) -> None:
    with wave.open(path, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x01\x00" * int(rate * seconds) * channels)


class FakePlane(MediaPlane):
    """Records every call; ``close`` writes one second of 8 kHz mono and reports ``streams``."""

    def __init__(
        self, streams: tuple[StreamStats, ...] = (), srtp_dropped: dict[int, int] | None = None
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.specs: dict[str, RecorderSpec] = {}
        self.streams = streams
        self.dropped = srtp_dropped or {}
        self.failing: set[str] = set()
        """Keys whose next flush reports a write failure."""
        self.open_error: OSError | None = None
        """Raised by ``open`` (a full or read-only disk)."""

    def open(self, key: str, spec: RecorderSpec) -> None:
        self.calls.append(("open", key))
        if self.open_error is not None:
            raise self.open_error
        self.specs[key] = spec

    def attach(self, key: str, port: RtpPort) -> None:
        self.calls.append(("attach", key, port.port))

    def detach(self, key: str, port: RtpPort) -> None:
        self.calls.append(("detach", key, port.port))

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        self.calls.append(("set_stream", key, port, spec.label if spec is not None else None))

    def relatch(self, key: str, port: int, sources: tuple[str, ...] | None) -> None:
        self.calls.append(("relatch", key, port))

    def poll_activity(self) -> None:
        self.calls.append(("poll_activity",))

    def activity(self) -> Activity:
        return 0.0, {}

    def pause(self, key: str, at: float) -> None:
        self.calls.append(("pause", key))

    def resume(self, key: str, at: float) -> None:
        self.calls.append(("resume", key))

    def packets_received(self, key: str, port: int) -> int:
        return 0

    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
        self.calls.append(("close", key))
        path = self.specs[key].path
        write_wav(path)
        future: asyncio.Future[RecordingResult] = asyncio.get_running_loop().create_future()
        future.set_result(RecordingResult(path, 1000, 8000, 0, self.streams, (), ()))
        return future

    def abort(self, key: str) -> None:
        self.calls.append(("abort", key))

    def srtp_dropped(self, key: str) -> dict[int, int]:
        return self.dropped

    def flush(self, now: float) -> list[str]:
        failed, self.failing = sorted(self.failing), set()
        return failed

    def stop(self) -> None:
        self.calls.append(("stop",))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]
