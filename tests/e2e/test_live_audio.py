"""Live audio over websockets from a real daemon recording a real call on loopback.

A Python SBC (``siprec_peer``) places a SIPREC call with two PCMU streams and sends 20 ms packets
with a recorded send time each; a real ``websockets`` client listens through the API. The frames
must be the decoded packets themselves (bit for bit: the tap decodes with the same G.711 tables),
in order, with no gap; latency is measured per frame from the packet's send time to the frame's
receive time (both ``time.monotonic``, one clock on one host). Load on a shared 2-core machine
can add scheduling delay to both sides; the bound asserted (100 ms at the median, 250 ms at p99)
is what the design promises, with room for that.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from srs.service.live_formats import ulaw_decode
from tests.e2e.conftest import (
    LOOPBACK,
    Ports,
    SrsDaemon,
    free_port,
    free_port_range,
    srs_command,
    tone_level_dbfs,
)
from tests.e2e.live_peer import Call, place_call, tone

pytestmark = pytest.mark.e2e

TONES = (400.0, 800.0, 1200.0, 1600.0)
"""Stream 1 changes tone every 200 ms (10 packets), so order and gaps show in the audio."""
STREAM2_TONE = 600.0

JAMBONZ_START_FIELDS = {
    "callSid", "callId", "direction", "from", "to", "callStatus", "sampleRate", "mixType",
    "callRecordingId", "participants", "streams", "channels", "source",
}
"""jambonz listen: call attributes (callSid, from, to, callId, direction, callStatus) plus
sampleRate and mixType, then srs's own metadata (callRecordingId, participants, streams, channels)."""
TWILIO_CONNECTED_FIELDS = {"event", "protocol", "version"}
TWILIO_START_FIELDS = {"event", "sequenceNumber", "start", "streamSid"}
TWILIO_START_INNER = {"accountSid", "streamSid", "callSid", "tracks", "customParameters", "mediaFormat"}
TWILIO_MEDIA_FORMAT = {"encoding", "sampleRate", "channels"}
TWILIO_MEDIA_FIELDS = {"event", "sequenceNumber", "media", "streamSid"}
TWILIO_MEDIA_INNER = {"track", "chunk", "timestamp", "payload"}
TWILIO_DTMF_FIELDS = {"event", "streamSid", "sequenceNumber", "dtmf"}
TWILIO_DTMF_INNER = {"track", "digit"}
TWILIO_STOP_FIELDS = {"event", "sequenceNumber", "stop", "streamSid"}
TWILIO_STOP_INNER = {"accountSid", "callSid"}


ALICE = "sip:alice@atlanta.example.com"
BOB = "sip:bob@biloxi.example.com"


def token(data_dir: Path, scope: str) -> str:
    out = subprocess.run(
        [*srs_command(), "token", "create", "--scope", scope, "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=True,
    )
    return str(json.loads(out.stdout)["token"])


def ws_url(daemon: SrsDaemon, recording: str, query: str = "") -> str:
    return f"ws://{LOOPBACK}:{daemon.ports.http}/api/v1/recordings/{recording}/live{query}"


def packet_pcm(k: int) -> list[np.ndarray]:
    return [tone(TONES[(k // 10) % len(TONES)], 160 * k), tone(STREAM2_TONE, 160 * k, level=4000.0)]


def wait_live(daemon: SrsDaemon, call: Call, reader: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    answer: Any = None
    with httpx.Client(base_url=f"http://{LOOPBACK}:{daemon.ports.http}",
                      headers={"Authorization": f"Bearer {reader}"}) as client:
        while time.monotonic() < deadline:
            answer = client.get("/api/v1/recordings", params={"sip_call_id": call.call_id}).json()
            items = answer.get("items") or []
            if items and items[0]["state"] == "recording":
                return dict(items[0])
            time.sleep(0.05)
    raise AssertionError(f"no recording of {call.call_id} in state recording: {answer}")




async def _send_packets(call: Call, count: int, start: float) -> None:
    """``count`` packets per stream on a 20 ms grid from ``start`` (absolute times: no drift)."""
    for k in range(count):
        delay = start + 0.02 * k - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        call.send_audio(packet_pcm(k))


@pytest.fixture
def ports() -> Ports:
    """Room for 200 two-stream calls at once (each takes four RTP/RTCP ports)."""
    low, high = free_port_range(1000)
    return Ports(sip=free_port(), rtp_low=low, rtp_high=high, http=free_port((socket.SOCK_STREAM,)))


@pytest.fixture
def live_daemon(start_srs: Callable[..., SrsDaemon]) -> SrsDaemon:
    return start_srs()


def test_jambonz_streams_bit_exact_in_order_and_latency(live_daemon: SrsDaemon, crid: str) -> None:
    daemon = live_daemon
    reader = token(daemon.data_dir, "read")
    call = place_call(daemon.ports.sip, crid)
    try:
        rec = wait_live(daemon, call, reader)
        count = 150

        async def collect(ws: Any) -> list[tuple[float, bytes]]:
            frames: list[tuple[float, bytes]] = []
            while len(frames) < count:
                data = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(data, bytes), data
                frames.append((time.monotonic(), data))
            return frames

        async def listen() -> tuple[dict[str, Any], list[tuple[float, bytes]], list[Any]]:
            headers = {"Authorization": f"Bearer {reader}"}
            protocols = [websockets.Subprotocol("audio.jambonz.org")]
            async with websockets.connect(
                ws_url(daemon, crid, "?mix=streams"), subprotocols=protocols, additional_headers=headers,
            ) as ws, websockets.connect(
                ws_url(daemon, rec["id"], "?mix=stereo&rate=16000"), subprotocols=protocols,
                additional_headers=headers,
            ) as stereo, websockets.connect(ws_url(daemon, crid), additional_headers=headers) as mono:
                assert ws.subprotocol == "audio.jambonz.org"
                start = json.loads(await asyncio.wait_for(ws.recv(), 5))
                others = [json.loads(await asyncio.wait_for(s.recv(), 5)) for s in (stereo, mono)]
                sender = asyncio.ensure_future(_send_packets(call, count, time.monotonic() + 0.1))
                frames, stereo_frames, mono_frames = await asyncio.gather(
                    collect(ws), collect(stereo), collect(mono)
                )
                await sender
                return start, frames, [others, stereo_frames, mono_frames]

        start, frames, (others, stereo_frames, mono_frames) = asyncio.run(listen())
    finally:
        call.bye()
    assert set(start) == JAMBONZ_START_FIELDS
    assert start["callSid"] == rec["id"]
    assert start["callRecordingId"] == crid
    assert start["sampleRate"] == 8000 and start["mixType"] == "streams"
    assert start["streams"] == ["1", "2"] and start["channels"] == ["1", "2"]
    assert [p["aor"] for p in start["participants"]] == [ALICE, BOB]
    assert start["from"] == ALICE and start["to"] == BOB

    latencies = []
    for k, (received_at, data) in enumerate(frames):
        pcm = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
        assert len(pcm) == 160, f"frame {k} has {len(pcm)} samples"
        for stream in range(2):
            _sent_at, payload = call.sent[stream][k]
            expected = ulaw_decode(payload)
            assert np.array_equal(pcm[:, stream], expected), (
                f"frame {k} stream {stream} is not packet {k}: {pcm[:8, stream]} {expected[:8]}"
            )
        latencies.append(received_at - call.sent[1][k][0])
    # the tones, in order: each 200 ms block of channel 1 is dominated by its tone
    left = np.concatenate([np.frombuffer(d, dtype="<i2").reshape(-1, 2)[:, 0] for _, d in frames])
    for block in range(len(left) // 1600):
        seg = left[block * 1600:(block + 1) * 1600]
        assert tone_level_dbfs(seg, TONES[block % len(TONES)]) > -20
    assert latencies[0] <= 0.1, f"first audio {latencies[0] * 1000:.1f} ms after its packet"
    # stereo at 16 kHz: Alice (stream 1, by the stream associations) left, Bob right, 20 ms frames
    assert others[0]["mixType"] == "stereo" and others[0]["sampleRate"] == 16000
    assert others[1]["mixType"] == "mono" and others[1]["channels"] == ["mix"]
    for k in (20, 75, 140):
        both = np.frombuffer(stereo_frames[k][1], dtype="<i2").reshape(-1, 2)
        assert both.shape == (320, 2)
        left = ulaw_decode(call.sent[0][k][1]).astype(float)
        right = ulaw_decode(call.sent[1][k][1]).astype(float)
        assert np.allclose(both[::2, 0], left, atol=1) and np.allclose(both[::2, 1], right, atol=1)
        mix = np.frombuffer(mono_frames[k][1], dtype="<i2")
        assert len(mix) == 160 and np.allclose(mix, left + right, atol=1)
    lat = np.array(latencies) * 1000
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    print(f"live latency ms: p50={p50:.1f} p99={p99:.1f} max={lat.max():.1f} n={len(lat)}")
    assert p50 <= 100.0, f"median latency {p50:.1f} ms"
    assert p99 <= 250.0, f"p99 latency {p99:.1f} ms"


def api(daemon: SrsDaemon, bearer: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://{LOOPBACK}:{daemon.ports.http}", headers={"Authorization": f"Bearer {bearer}"},
        timeout=20,
    )


def wait_available(daemon: SrsDaemon, recording_id: str, bearer: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    with api(daemon, bearer) as client:
        while time.monotonic() < deadline:
            shown = client.get(f"/api/v1/recordings/{recording_id}").json()
            if shown.get("state") in ("available", "failed"):
                return shown
            time.sleep(0.1)
    raise AssertionError(f"recording not available: {shown}")


def test_twilio_media_streams_field_by_field_with_dtmf_and_audit(live_daemon: SrsDaemon, crid: str) -> None:
    daemon = live_daemon
    reader = token(daemon.data_dir, "read")
    admin = token(daemon.data_dir, "admin")
    call = place_call(daemon.ports.sip, crid)
    rec = wait_live(daemon, call, reader)
    messages: list[dict[str, Any]] = []

    async def listen() -> None:
        async with websockets.connect(
            ws_url(daemon, rec["id"], "?format=twilio"),
            additional_headers={"Authorization": f"Bearer {reader}"},
        ) as ws:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            await _send_packets(call, 50, time.monotonic())
            await asyncio.to_thread(call.send_dtmf, 0, 5)
            await asyncio.sleep(0.1)
            call.send_audio(packet_pcm(50))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(call.bye)
            async for data in ws:  # until srs closes after "stop"
                assert isinstance(data, str)
                messages.append(json.loads(data))

    asyncio.run(asyncio.wait_for(listen(), 30))
    connected, start = messages[0], messages[1]
    assert set(connected) == TWILIO_CONNECTED_FIELDS
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert set(start) == TWILIO_START_FIELDS and start["event"] == "start" and start["sequenceNumber"] == "1"
    inner = start["start"]
    assert set(inner) == TWILIO_START_INNER
    assert set(inner["mediaFormat"]) == TWILIO_MEDIA_FORMAT
    assert inner["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert inner["tracks"] == ["inbound", "outbound"]
    assert inner["callSid"] == rec["id"] and inner["streamSid"] == start["streamSid"]
    custom = inner["customParameters"]
    assert custom["callRecordingId"] == crid and custom["sipCallId"] == call.call_id
    assert [p["aor"] for p in json.loads(custom["participants"])] == [ALICE, BOB]
    assert all(isinstance(v, str) for v in custom.values())
    sid = start["streamSid"]
    media = [m for m in messages[2:] if m["event"] == "media"]
    dtmf = [m for m in messages[2:] if m["event"] == "dtmf"]
    stop = messages[-1]
    assert {m["event"] for m in messages[2:]} == {"media", "dtmf", "stop"}
    # sequence numbers: strings counting up by one over every message after "connected"
    assert [int(m["sequenceNumber"]) for m in messages[1:]] == list(range(1, len(messages)))
    for m in media:
        assert set(m) == TWILIO_MEDIA_FIELDS and set(m["media"]) == TWILIO_MEDIA_INNER
        assert m["streamSid"] == sid
        assert all(isinstance(m["media"][k], str) for k in TWILIO_MEDIA_INNER)
    for track, stream in (("inbound", 0), ("outbound", 1)):
        mine = [m["media"] for m in media if m["media"]["track"] == track]
        assert [int(x["chunk"]) for x in mine] == list(range(1, len(mine) + 1))
        # ms from the start of the stream: the first chunk where its audio came, then 20 ms apart
        stamps = [int(x["timestamp"]) for x in mine]
        assert 0 <= stamps[0] < 5000 and stamps == [stamps[0] + 20 * i for i in range(len(mine))]
        payloads = [base64.b64decode(x["payload"]) for x in mine]
        sent = [p for _, p in call.sent[stream]]
        # µ-law in, PCM in the tap, µ-law out: the same bytes, in order, none missing
        assert payloads[:50] == sent[:50]
        assert payloads[-1] == sent[-1]
    assert len(dtmf) == 1
    assert set(dtmf[0]) == TWILIO_DTMF_FIELDS and set(dtmf[0]["dtmf"]) == TWILIO_DTMF_INNER
    assert dtmf[0]["dtmf"] == {"track": "inbound_track", "digit": "5"} and dtmf[0]["streamSid"] == sid
    assert set(stop) == TWILIO_STOP_FIELDS and stop["event"] == "stop" and stop["streamSid"] == sid
    assert set(stop["stop"]) == TWILIO_STOP_INNER and stop["stop"]["callSid"] == rec["id"]
    # the listen is in the audit trail, with who listened and what was sent
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    with api(daemon, admin) as client:
        while time.monotonic() < deadline and not rows:
            rows = client.get("/api/v1/audit", params={"action": "live_listen"}).json()["items"]
            time.sleep(0.1)
    assert len(rows) == 1, rows
    assert rows[0]["recording_id"] == rec["id"] and rows[0]["detail"]["format"] == "twilio"
    assert rows[0]["detail"]["messages_sent"] == len(messages) and rows[0]["detail"]["frames_dropped"] == 0


def test_live_needs_a_token_and_a_live_call(live_daemon: SrsDaemon) -> None:
    daemon = live_daemon
    reader = token(daemon.data_dir, "read")

    async def attempt(headers: dict[str, str], recording: str, query: str = "") -> Any:
        try:
            async with websockets.connect(ws_url(daemon, recording, query), additional_headers=headers) as ws:
                await ws.recv()
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return None

    assert asyncio.run(attempt({}, "whatever")) == 401
    assert asyncio.run(attempt({"Authorization": "Bearer nope"}, "whatever")) == 401
    assert asyncio.run(attempt({"Authorization": f"Bearer {reader}"}, "no-such-call")) == 4404
    assert asyncio.run(attempt({"Authorization": f"Bearer {reader}"}, "x", "?format=mp3")) == 4400


def test_a_stalled_listener_never_harms_the_recording(live_daemon: SrsDaemon, crid: str) -> None:
    """A client that completes the upgrade and then reads nothing for 10 s: its queue fills and
    frames are dropped (counted in /metrics and in the recording's warnings); the WAV is whole."""
    daemon = live_daemon
    reader = token(daemon.data_dir, "read")
    call = place_call(daemon.ports.sip, crid)
    rec = wait_live(daemon, call, reader)
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    stalled.connect((LOOPBACK, daemon.ports.http))
    stalled.sendall(
        (
            f"GET /api/v1/recordings/{rec['id']}/live?mix=stereo&rate=16000 HTTP/1.1\r\n"
            f"Host: {LOOPBACK}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {reader}\r\n\r\n"
        ).encode()
    )
    stalled.settimeout(5)
    assert stalled.recv(12) == b"HTTP/1.1 101"
    packets = 500
    asyncio.run(_send_packets(call, packets, time.monotonic()))
    time.sleep(0.2)  # the file ends at the BYE: let the last packet's 20 ms pass first
    call.bye()
    shown = wait_available(daemon, rec["id"], reader)
    stalled.close()
    assert shown["state"] == "available", shown
    assert any("live audio" in w and "dropped" in w for w in shown.get("warnings", [])), shown
    with api(daemon, reader) as client:
        metrics = client.get("/metrics").text
        wav = client.get(f"/api/v1/recordings/{rec['id']}/file").content
    dropped = [float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("srs_live_frames_dropped_total")]
    assert dropped and dropped[0] > 0, metrics
    samples = np.frombuffer(wav[44:], dtype="<i2")
    assert abs(len(samples) / 8000 - packets * 0.02) < 0.3, len(samples)
    start = int(np.argmax(np.abs(samples) > 500))
    # the file is the sum of what was sent, sample for sample, for every packet. Each stream is
    # anchored where its own first packet arrived, so stream 2 may sit a sample or two off stream 1
    # (the packets leave microseconds apart): every small offset is tried, one must match exactly.
    sent = [np.concatenate([ulaw_decode(p).astype(np.int32) for _, p in call.sent[s]]) for s in range(2)]
    n = len(sent[0])
    matched = None
    for base in range(start - 16, start + 17):
        got = samples[base:base + n].astype(np.int32)
        if len(got) != n:
            continue
        for shift in range(-16, 17):
            other = np.zeros(n, np.int32)
            if shift >= 0:
                other[shift:] = sent[1][:n - shift]
            else:
                other[:shift] = sent[1][-shift:]
            expected = np.clip(sent[0] + other, -32768, 32767)
            if np.array_equal(got[16:-16], expected[16:-16]):
                matched = (base, shift)
                break
        if matched:
            break
    assert matched is not None, "the WAV is not the sum of the packets sent"
    # every 200 ms block holds stream 1's tone of that block and stream 2's tone: nothing missing
    for block in range(1, packets // 10 - 1):
        seg = samples[start + block * 1600 + 200:start + (block + 1) * 1600 - 200]
        assert tone_level_dbfs(seg, TONES[block % len(TONES)]) > -25, block
        assert tone_level_dbfs(seg, STREAM2_TONE) > -30, block


class TargetServer:
    """A websocket server on loopback (its own loop in a thread) that records every connection."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.connections: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = None
        self.start()

    def start(self) -> None:
        async def handler(ws: Any) -> None:
            record: dict[str, Any] = {"start": None, "binary": 0, "texts": [], "subprotocol": ws.subprotocol}
            self.connections.append(record)
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in ws:
                    if isinstance(message, bytes):
                        record["binary"] += 1
                    elif record["start"] is None:
                        record["start"] = json.loads(message)
                    else:
                        record["texts"].append(json.loads(message))
            record["closed"] = True

        async def open_server() -> Any:
            def select(connection: Any, offered: list[str]) -> Any:
                return "audio.jambonz.org" if "audio.jambonz.org" in offered else None

            return await websockets.serve(handler, LOOPBACK, self.port, select_subprotocol=select)

        self.server = asyncio.run_coroutine_threadsafe(open_server(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def by_call(self) -> dict[str, list[dict[str, Any]]]:
        calls: dict[str, list[dict[str, Any]]] = {}
        for record in list(self.connections):
            if record["start"] is not None:
                calls.setdefault(record["start"]["callRecordingId"], []).append(record)
        return calls


@pytest.fixture
def target_server() -> Iterator[TargetServer]:
    server = TargetServer()
    yield server
    server.shutdown()


@pytest.mark.slow
def test_push_targets_receive_every_call_of_a_200_call_load(
    start_srs: Callable[..., SrsDaemon], target_server: TargetServer, run_sipp: Callable[..., Any],
    pcaps: dict[str, Path], crid: str,
) -> None:
    """200 one-second SIPp calls (20 per second, at most 40 at once) pushed to a jambonz target
    that filters on the SBC's address: every call arrives with its metadata and its audio."""
    daemon = start_srs(
        f'[live]\ntargets = ["ws://{LOOPBACK}:{target_server.port}/ai?srs.source={LOOPBACK}&srs.mix=stereo"]\n'
        'reconnect_max_s = 1.0\n[media]\nworkers = 1\n'
    )
    calls = 200
    result = run_sipp(
        "siprec_load.xml", "-set", "crid", crid, "-d", "1000", "-r", "20", "-l", "40", "-m", str(calls),
        target=daemon.sip_target, timeout=90, pcaps={"load_pcmu.pcap": pcaps["load_1s"]},
    )
    assert result.returncode == 0, result.describe()
    wanted = {f"{crid}-{n}" for n in range(1, calls + 1)}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = target_server.by_call()
        if wanted <= set(got) and all(r.get("closed") for rs in got.values() for r in rs):
            break
        time.sleep(0.2)
    got = target_server.by_call()
    assert wanted <= set(got), f"{len(wanted - set(got))} calls never pushed"
    for name in wanted:
        record = got[name][0]
        assert record["subprotocol"] == "audio.jambonz.org"
        assert set(record["start"]) == JAMBONZ_START_FIELDS and record["start"]["mixType"] == "stereo"
        assert record["start"]["source"].startswith(LOOPBACK)
        # one second of audio is 50 frames; the first few may precede the tap (sent before it was on)
        assert record["binary"] >= 35, (name, record["binary"])


def test_push_target_reconnects_after_a_restart(
    start_srs: Callable[..., SrsDaemon], target_server: TargetServer, crid: str
) -> None:
    daemon = start_srs(
        f'[live]\ntargets = ["ws://{LOOPBACK}:{target_server.port}/ai?srs.format=twilio",'
        f' "ws://{LOOPBACK}:{target_server.port}/never?srs.participant=nobody-here"]\n'
        'reconnect_max_s = 0.5\n'
    )
    call = place_call(daemon.ports.sip, crid)

    def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(what)

    async def media(seconds: float, first: int) -> None:
        start = time.monotonic()
        for k in range(int(seconds / 0.02)):
            delay = start + 0.02 * k - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            call.send_audio(packet_pcm(first + k))

    try:
        wait_for(lambda: len(target_server.connections) == 1, "no connection to the target")
        asyncio.run(media(1.0, 0))
        first = target_server.connections[0]
        wait_for(lambda: sum(t["event"] == "media" for t in first["texts"]) >= 80, "no media on the first")
        port = target_server.port
        target_server.stop()
        wait_for(lambda: bool(first.get("closed")), "first connection not closed")
        asyncio.run(media(0.5, 50))  # the target is down: srs keeps recording and retrying
        target_server.port = port
        target_server.start()
        wait_for(lambda: len(target_server.connections) == 2, "srs did not reconnect", timeout=15)
        asyncio.run(media(1.0, 75))
        second = target_server.connections[1]
        wait_for(lambda: sum(t["event"] == "media" for t in second["texts"]) >= 80, "no media on the second")
    finally:
        call.bye()
    wait_for(lambda: bool(target_server.connections[1].get("closed")), "no close at the end of the call")
    assert [c["start"]["event"] for c in target_server.connections] == ["connected", "connected"]
    for record in target_server.connections:
        starts = [t for t in record["texts"] if t["event"] == "start"]
        assert len(starts) == 1 and starts[0]["start"]["customParameters"]["callRecordingId"] == crid
    assert target_server.connections[1]["texts"][-1]["event"] == "stop"
    assert len(target_server.connections) == 2  # the filtered-out target was never connected
    admin = token(daemon.data_dir, "admin")
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    with api(daemon, admin) as client:
        while time.monotonic() < deadline and len(rows) < 2:
            rows = client.get("/api/v1/audit", params={"action": "live_listen"}).json()["items"]
            time.sleep(0.1)
    assert sorted(r["detail"]["end"] for r in rows) == ["call ended", "target went away"], rows
    assert all(r["actor"] == "live-target" and r["detail"]["format"] == "twilio" for r in rows)


def test_vcon_of_a_recording_validates_and_signs(live_daemon: SrsDaemon, crid: str, tmp_path: Path) -> None:
    """The vCon (GET …/vcon and the export's ``vcon`` member) is parsed and validated by the ``vcon``
    package; the JWS form verifies with authlib (HS256, the server key)."""
    from authlib.jose import JsonWebSignature
    from vcon import Vcon

    daemon = live_daemon
    reader = token(daemon.data_dir, "read")
    admin = token(daemon.data_dir, "admin")
    call = place_call(daemon.ports.sip, crid)
    rec = wait_live(daemon, call, reader)
    asyncio.run(_send_packets(call, 50, time.monotonic()))
    call.bye()
    shown = wait_available(daemon, rec["id"], reader)
    assert shown["state"] == "available"
    with api(daemon, reader) as client:
        answer = client.get(f"/api/v1/recordings/{crid}/vcon")
        assert answer.status_code == 404  # the API names recordings by id here
        answer = client.get(f"/api/v1/recordings/{rec['id']}/vcon")
        assert answer.status_code == 200, answer.text
        document = answer.json()
        wav = client.get(f"/api/v1/recordings/{rec['id']}/file").content
        signed = client.get(f"/api/v1/recordings/{rec['id']}/vcon", params={"signed": 1}).json()
        fetched = httpx.get(document["dialog"][0]["url"], timeout=20)
    (tmp_path / "recording.vcon.json").write_text(json.dumps(document, indent=2))  # kept for inspection
    parsed = Vcon.build_from_json(json.dumps(document))
    valid, errors = parsed.is_valid()
    assert valid, errors
    assert parsed.uuid == document["uuid"] and len(parsed.parties) == 2
    assert [p.get("sip") for p in document["parties"]] == [ALICE, BOB]
    assert [p.get("name") for p in document["parties"]] == ["Alice", "Bob"]
    dialog = document["dialog"][0]
    assert dialog["type"] == "recording" and dialog["parties"] == [0, 1] and dialog["originator"] == 0
    assert dialog["start"] == shown["started_at"] and dialog["duration"] == shown["duration_ms"] / 1000
    expected_hash = "sha512-" + base64.urlsafe_b64encode(hashlib.sha512(wav).digest()).rstrip(b"=").decode()
    assert dialog["content_hash"] == expected_hash
    assert fetched.status_code == 200 and fetched.content == wav  # the url is a working signed link
    purposes = [a["purpose"] for a in document["attachments"]]
    assert purposes == ["rs-metadata", "sip"]
    assert "participantstreamassoc" in document["attachments"][0]["body"]
    sip = json.loads(document["attachments"][1]["body"])
    assert document["attachments"][1]["encoding"] == "json"
    assert sip["sip_call_id"] == call.call_id and sip["call_recording_id"] == crid
    # signed: JWS with HS256 keyed by secret.key
    key = (daemon.data_dir / "secret.key").read_bytes()
    jws = JsonWebSignature(algorithms=["HS256"])
    verified = jws.deserialize_json(signed, key)
    payload = json.loads(verified["payload"])
    assert payload["dialog"][0].pop("url") != dialog.pop("url")  # each answer signs a fresh link
    assert payload == document
    tampered = dict(signed, payload=signed["payload"][:-2] + "AA")
    with pytest.raises(Exception, match=r"(?i)signature"):
        jws.deserialize_json(tampered, key)
    # exports carry the same document, the url pointing into the archive
    with api(daemon, admin) as client:
        job = client.post("/api/v1/exports", json={"ids": [rec["id"]]})
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 20
        status = client.get(job.headers["location"]).json()
        while status["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            status = client.get(job.headers["location"]).json()
        archive = client.get(status["links"]["file"]).content
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        entry = json.loads(tar.extractfile("index.json").read())["recordings"][0]  # type: ignore[union-attr]
        exported = entry["vcon"]
        assert tar.extractfile(exported["dialog"][0]["url"]).read() == wav  # type: ignore[union-attr]
    (tmp_path / "exported.vcon.json").write_text(json.dumps(exported, indent=2))
    valid, errors = Vcon.build_from_json(json.dumps(exported)).is_valid()
    assert valid, errors
    assert exported["uuid"] == document["uuid"] and exported["parties"] == document["parties"]
    sha256 = "sha256-" + base64.urlsafe_b64encode(hashlib.sha256(wav).digest()).rstrip(b"=").decode()
    assert exported["dialog"][0]["content_hash"] == sha256


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


@pytest.mark.slow
def test_cost_per_live_listener_at_200_calls(
    start_srs: Callable[..., SrsDaemon], target_server: TargetServer, run_sipp: Callable[..., Any],
    pcap_dir: Path, crid: str,
) -> None:
    """The same 200 concurrent 4-second calls (50 new a second) twice on one daemon: once nobody
    listens, once every call is pushed to a jambonz target (the target's filter matches the vendor
    extension carrying the call-recording-id of the second run only). The difference in CPU time of
    the daemon and the media worker (from /proc) per RTP packet is the cost of a listener; printed
    with the load average: the machine is shared, so the figure is indicative. Asserted: every call
    of both runs reached the index and every call of the second run reached the target, none of the
    first. (At 100 new calls a second the two cores of a slow moment were shared by SIPp, the
    daemon, its worker and the target so tightly that a BYE's answer could take longer than SIPp's
    500 ms retransmission timer, which SIPp counts as an error.)"""
    from tests.e2e.conftest import make_pcap

    pcap = make_pcap(pcap_dir / "live_cost_4s.pcap", 4.0)
    daemon = start_srs(
        f'[live]\ntargets = ["ws://{LOOPBACK}:{target_server.port}/ai?srs.extension=listened"]\n'
    )
    worker = _children(daemon.process.pid)[0]
    calls, seconds = 200, 4.0
    cpu: dict[str, tuple[float, float]] = {}
    loads: dict[str, float] = {}
    for run in ("plain", "listened"):
        before = _cpu_seconds(daemon.process.pid), _cpu_seconds(worker)
        result = run_sipp(
            "siprec_load.xml", "-set", "crid", f"{crid}-{run}", "-d", "4000", "-r", "50", "-l", str(calls),
            "-m", str(calls), target=daemon.sip_target, timeout=90, pcaps={"load_pcmu.pcap": pcap},
        )
        assert result.returncode == 0, result.describe()
        time.sleep(2.0)  # the last recordings close
        after = _cpu_seconds(daemon.process.pid), _cpu_seconds(worker)
        cpu[run] = (after[0] - before[0], after[1] - before[1])
        loads[run] = os.getloadavg()[0]
    pushed = target_server.by_call()
    assert {f"{crid}-listened-{n}" for n in range(1, calls + 1)} <= set(pushed)
    assert not any(name.startswith(f"{crid}-plain") for name in pushed)
    packets = calls * 2 * seconds * 50
    extra_daemon = (cpu["listened"][0] - cpu["plain"][0]) / packets * 1e6
    extra_worker = (cpu["listened"][1] - cpu["plain"][1]) / packets * 1e6
    print(
        f"live listener cost at {calls} calls: worker +{extra_worker:.1f} µs/packet, daemon "
        f"+{extra_daemon:.1f} µs/packet (cpu s daemon/worker: {cpu}; load average 1 min {loads})"
    )


def test_push_target_hears_a_participant_join(
    start_srs: Callable[..., SrsDaemon], target_server: TargetServer, run_sipp: Callable[..., Any],
    pcaps: dict[str, Path], crid: str,
) -> None:
    """SIPp's re-INVITE adds Carol with partial metadata: the connected target gets a metadata event
    listing her, after the start that did not, and the audio goes on in the same connection."""
    daemon = start_srs(f'[live]\ntargets = ["ws://{LOOPBACK}:{target_server.port}/ai"]\n')
    result = run_sipp(
        "siprec_metadata_update.xml", "-set", "crid", crid, "-d", "2000",
        target=daemon.sip_target, timeout=30, pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    assert result.returncode == 0, result.describe()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(r.get("closed") for r in target_server.connections):
        time.sleep(0.05)
    calls = target_server.by_call()
    assert list(calls) == [crid] and len(calls[crid]) == 1
    record = calls[crid][0]
    before = [p["aor"] for p in record["start"]["participants"]]
    assert not any("carol" in aor for aor in before)
    events = [t for t in record["texts"] if t.get("event") == "metadata"]
    assert events, record["texts"]
    assert set(events[-1]) == {"event", "callSid", "callRecordingId", "participants", "streams"}
    assert any("carol" in (p["aor"] or "") for p in events[-1]["participants"])
    assert record["binary"] >= 80  # 2 s of audio at 50 frames a second, minus the first moments


def test_live_audio_without_a_media_worker(start_srs: Callable[..., SrsDaemon], crid: str) -> None:
    """``[media] workers = 0``: the tap runs on the daemon's loop; the same frames, bit for bit."""
    daemon = start_srs("[media]\nworkers = 0\n")
    reader = token(daemon.data_dir, "read")
    call = place_call(daemon.ports.sip, crid)
    count = 60
    try:
        wait_live(daemon, call, reader)

        async def listen() -> list[tuple[float, bytes]]:
            async with websockets.connect(
                ws_url(daemon, crid, "?mix=streams"), additional_headers={"Authorization": f"Bearer {reader}"}
            ) as ws:
                json.loads(await asyncio.wait_for(ws.recv(), 5))
                sender = asyncio.ensure_future(_send_packets(call, count, time.monotonic() + 0.1))
                frames = []
                while len(frames) < count:
                    data = await asyncio.wait_for(ws.recv(), 5)
                    frames.append((time.monotonic(), bytes(data)))
                await sender
                return frames

        frames = asyncio.run(listen())
    finally:
        call.bye()
    latencies = []
    for k, (received_at, data) in enumerate(frames):
        pcm = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
        for stream in range(2):
            assert np.array_equal(pcm[:, stream], ulaw_decode(call.sent[stream][k][1])), (k, stream)
        latencies.append(received_at - call.sent[1][k][0])
    assert float(np.percentile(latencies, 50)) <= 0.1


def test_live_jitter_buffer_reorders_and_fills_a_loss(live_daemon: SrsDaemon, crid: str) -> None:
    """Stream 1 loses packet 40 and swaps packets 60 and 61 on the wire: the listener still gets
    every 20 ms in order, 40 as silence (after the 40 ms hold), 60 and 61 in place, bit for bit."""
    from srs.service.live_formats import ulaw_encode

    daemon = live_daemon
    reader = token(daemon.data_dir, "read")
    call = place_call(daemon.ports.sip, crid)
    count = 100
    payloads = [[ulaw_encode(pcm) for pcm in packet_pcm(k)] for k in range(count)]
    send_times: dict[int, float] = {}

    async def send() -> None:
        start = time.monotonic() + 0.1
        held: tuple[int, int, bytes] | None = None
        for k in range(count):
            delay = start + 0.02 * k - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            one = (1000 + k, 160000 + 160 * k, payloads[k][0])
            if k == 60:
                held = one
            elif k == 61:
                assert held is not None
                call.send_raw(0, [one, held])
            elif k != 40:
                call.send_raw(0, [one])
            send_times[k] = call.send_raw(1, [(5000 + k, 320000 + 160 * k, payloads[k][1])])

    async def listen() -> list[tuple[float, bytes]]:
        async with websockets.connect(
            ws_url(daemon, crid, "?mix=streams"), additional_headers={"Authorization": f"Bearer {reader}"}
        ) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            sender = asyncio.ensure_future(send())
            frames = []
            while len(frames) < count:
                data = await asyncio.wait_for(ws.recv(), 5)
                frames.append((time.monotonic(), bytes(data)))
            await sender
            return frames

    try:
        wait_live(daemon, call, reader)
        frames = asyncio.run(listen())
    finally:
        call.bye()
    for k, (received_at, data) in enumerate(frames):
        pcm = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
        one = np.zeros(160, np.int16) if k == 40 else ulaw_decode(payloads[k][0])
        assert np.array_equal(pcm[:, 0], one), f"stream 1, frame {k}"
        assert np.array_equal(pcm[:, 1], ulaw_decode(payloads[k][1])), f"stream 2, frame {k}"
        assert received_at - send_times[k] <= 0.1, f"frame {k}: {1000 * (received_at - send_times[k]):.1f} ms"
