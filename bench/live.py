"""Cost of one live listener per RTP packet: ``python -m bench.live [PACKETS]``.

Measured in one process with the real parts: a PCMU :class:`StreamTrack` push (what every packet
costs without listeners), the same push through the live tap (decode, jitter buffer, batch), and
the daemon side of one listener (hub fan-out, 20 ms framing, the wire format). Prints µs/packet.
"""

from __future__ import annotations

import struct
import sys
import time
from typing import Any

import numpy as np
import srs_codecs

from srs.media.rendering import PayloadFormat
from srs.media.track import StreamTrack
from srs.mediaplane.live_tap import LiveTaps
from srs.service.live_formats import CallInfo, ulaw_encode
from srs.service.live_hub import Listener, LiveHub

FORMATS = {0: PayloadFormat("PCMU", 8000)}
INFO = CallInfo("k", "rec", None, "cid", "127.0.0.1", ("1",), (), (("1",), ()))


def _packets(count: int) -> list[bytes]:
    payload = ulaw_encode((3000 * np.sin(np.arange(160) / 5)).astype(np.int16))
    return [struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 160 * i, 7) + payload for i in range(count)]


def _track() -> StreamTrack:
    return StreamTrack(
        FORMATS, start=0.0, sample_rate=8000, decoder_factory=srs_codecs.get_decoder, label="1"
    )


def measure(count: int = 50_000) -> dict[str, float]:
    packets = _packets(count)
    addr = ("127.0.0.1", 4000)
    track = _track()
    push = track.push
    t0 = time.perf_counter()
    for i, data in enumerate(packets):
        push(data, addr, i * 0.02)
    plain = time.perf_counter() - t0

    taps = LiveTaps(srs_codecs.get_decoder)
    track = _track()
    taps.stream("k", 4000, "1", FORMATS, track.push)
    tapped = taps.subscribe("k", True)[4000]
    assert tapped is not None
    batches: list[list[tuple[Any, ...]]] = []
    t0 = time.perf_counter()
    for i, data in enumerate(packets):
        tapped(data, addr, i * 0.02)
        if i % 4 == 3:  # the worker sends one batch per poll; a few packets per poll at 200 calls
            batches.append(taps.take(i * 0.02))
    worker = time.perf_counter() - t0

    results = {"plain_push_us": plain / count * 1e6, "tapped_push_us": worker / count * 1e6}
    for fmt, mix in (("jambonz", "mono"), ("jambonz", "stereo"), ("twilio", "mono")):
        hub = LiveHub(describe=lambda _: None, subscribe=lambda key, on: True)
        listener = Listener(INFO, format=fmt, mix=mix, queue_frames=10 * count)
        hub.attach("k", listener)
        t0 = time.perf_counter()
        for batch in batches:
            hub.deliver(batch)
            listener.queue.clear()
        results[f"daemon_{fmt}_{mix}_us"] = (time.perf_counter() - t0) / count * 1e6
    results["listener_worker_us"] = results["tapped_push_us"] - results["plain_push_us"]
    return results


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 50_000
    for name, value in measure(count).items():
        print(f"{name:28s} {value:8.2f} µs/packet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
