"""The API the web console adds: whoami, waveform peaks (numpy, cached by sha256 and width, width
bounds), the events feed and its tickets, and the console's static files with their policy."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from srs.api.console import CONTENT_SECURITY_POLICY
from srs.api.events import TICKET_TTL_S, EventHub
from srs.api.peaks import MAX_WIDTH, MIN_WIDTH, compute_peaks
from srs.daemon.http_runtime import STOP_TIMEOUT_S, start_http_runtime
from srs.daemon.metrics import DaemonMetrics
from srs.service.principal import Kind, Principal
from srs.service.tokens import TokenService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import State
from tests.integration.api.conftest import Api
from tests.unit.storage.factory import add_recording

PREFIX = "/api/v1"


def wav_of(samples: np.ndarray, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def reference(frames: np.ndarray, width: int) -> tuple[list[int], list[int]]:
    """The slices done one by one in Python: what the vectorised version must equal."""
    lows, highs = [], []
    n = len(frames)
    for i in range(width):
        a, b = i * n // width, (i + 1) * n // width
        part = frames[a:b]
        lows.append(int(part.min()) if len(part) else 0)
        highs.append(int(part.max()) if len(part) else 0)
    return lows, highs


# ---- peaks, the computation ------------------------------------------------------------------


@pytest.mark.parametrize("width", [16, 100, 1000, 8000 * 3 + 7])
def test_peaks_equal_a_slice_by_slice_reference(tmp_path: Path, width: int) -> None:
    rng = np.random.default_rng(5)
    samples = rng.integers(-32768, 32767, size=8000 * 3, dtype=np.int16)
    path = tmp_path / "a.wav"
    path.write_bytes(wav_of(samples))
    got = compute_peaks(path, width)
    lows, highs = reference(samples, width)
    assert got["min"] == lows and got["max"] == highs
    assert got["frames"] == len(samples) and got["duration_ms"] == 3000 and got["channels"] == 1
    if width > len(samples):  # more slices than samples: the empty ones are flat, not garbage
        assert got["min"].count(0) >= width - len(samples)


def test_peaks_of_a_stereo_file_cover_both_channels_and_silence_is_flat(tmp_path: Path) -> None:
    left = np.zeros(8000, dtype=np.int16)
    right = np.zeros(8000, dtype=np.int16)
    left[:4000] = 1000   # first half: left only, positive
    right[:4000] = -2000  # and right negative
    path = tmp_path / "s.wav"
    path.write_bytes(wav_of(np.column_stack([left, right]).reshape(-1), channels=2))
    got = compute_peaks(path, 16)
    assert got["channels"] == 2 and got["frames"] == 8000
    assert got["min"][:8] == [-2000] * 8 and got["max"][:8] == [1000] * 8
    assert got["min"][8:] == [0] * 8 and got["max"][8:] == [0] * 8


def test_peaks_of_an_empty_wav_are_all_zero(tmp_path: Path) -> None:
    path = tmp_path / "e.wav"
    path.write_bytes(wav_of(np.zeros(0, dtype=np.int16)))
    got = compute_peaks(path, 32)
    assert got["frames"] == 0 and got["min"] == [0] * 32 and got["max"] == [0] * 32


# ---- peaks, the endpoint ---------------------------------------------------------------------


def _recording(api: Api, samples: np.ndarray, **kwargs: Any) -> str:
    return add_recording(api.index, api.layout, audio=wav_of(samples), **kwargs)


def test_peaks_endpoint_bounds_its_width(api: Api) -> None:
    rid = _recording(api, np.arange(-4000, 4000, dtype=np.int16))
    url = f"{PREFIX}/recordings/{rid}/peaks"
    for bad in (MIN_WIDTH - 1, MAX_WIDTH + 1, 0, -5):
        response = api.request("GET", url, params={"width": bad})
        assert response.status_code == 400, (bad, response.text)
    assert api.request("GET", url, params={"width": "wide"}).status_code == 400
    for good in (MIN_WIDTH, MAX_WIDTH):
        body = api.request("GET", url, params={"width": good}).json()
        assert len(body["min"]) == len(body["max"]) == good
    default = api.request("GET", url).json()
    assert default["width"] == len(default["min"]) == 1024 and default["id"] == rid
    assert api.request("GET", url, token=None).status_code == 401


def test_peaks_are_cached_by_sha256_and_width_and_go_with_the_recording(api: Api) -> None:
    rid = _recording(api, np.full(8000, 1234, dtype=np.int16))
    sha = api.service.show(rid)["file"]["sha256"]
    url = f"{PREFIX}/recordings/{rid}/peaks"
    first = api.request("GET", url, params={"width": 64}).json()
    assert first["max"] == [1234] * 64 and first["sha256"] == sha
    cached = api.layout.peaks_dir / f"{sha}-64.json"
    assert cached.is_file()
    # the second answer comes from the cache file, not the audio: alter the cache and see it served
    altered = dict(json.loads(cached.read_text()), max=[7] * 64)
    cached.write_text(json.dumps(altered))
    assert api.request("GET", url, params={"width": 64}).json()["max"] == [7] * 64
    # another width is its own entry, computed from the audio
    assert api.request("GET", url, params={"width": 32}).json()["max"] == [1234] * 32
    names = sorted(p.name for p in api.layout.peaks_dir.iterdir())
    assert names == [f"{sha}-32.json", f"{sha}-64.json"]
    # deleting the recording removes its cached outline too
    assert api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin").status_code == 204
    assert list(api.layout.peaks_dir.iterdir()) == []


def test_peaks_of_a_recording_still_running_are_refused(api: Api) -> None:
    rid = add_recording(api.index, api.layout, state=State.RECORDING)
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/peaks")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_available"


# ---- whoami and the console's files ------------------------------------------------------------


def test_whoami_tells_the_scope_of_the_calling_token(api: Api) -> None:
    assert api.request("GET", f"{PREFIX}/whoami").json()["scope"] == "read"
    me = api.request("GET", f"{PREFIX}/whoami", token="admin").json()
    assert me["scope"] == "admin" and me["name"] == "admin" and me["token_id"]
    assert api.request("GET", f"{PREFIX}/whoami", token=None).status_code == 401


def test_console_files_are_public_with_a_strict_policy_and_nothing_else_is(api: Api) -> None:
    page = api.request("GET", "/console/", token=None)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="js/main.js">' in page.text and "<style" not in page.text
    head = api.request("HEAD", "/console/", token=None)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(page.content))
    assert head.headers["content-security-policy"] == policy
    script = api.request("GET", "/console/js/main.js", token=None)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    etag = {"If-None-Match": script.headers["etag"]}
    again = api.request("GET", "/console/js/main.js", token=None, headers=etag)
    assert again.status_code == 304
    assert api.request("GET", "/console", token=None, follow_redirects=False).status_code == 308
    for sneaky in ("/console/../app.py", "/console/%2e%2e/app.py", "/console/js/../../console.py",
                   "/console/.hidden", "/console/nope.js"):
        refused = api.request("GET", sneaky, token=None)  # 404, or 401 once the client normalised it
        assert refused.status_code in (401, 404) and "import" not in refused.text, sneaky
    # only GET/HEAD of the console are public; the API behind it is not
    assert api.request("POST", "/console/", token=None).status_code == 401
    assert api.request("GET", f"{PREFIX}/recordings", token=None).status_code == 401


def test_console_files_ship_with_the_package() -> None:
    """Every file the page loads is package data (a non-editable install has them too)."""
    import tomllib

    import srs.api.console as console

    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["srs.api"]
    shipped = {p for pattern in patterns for p in console.STATIC_DIR.parent.glob(pattern)}
    files = {p for p in console.STATIC_DIR.rglob("*") if p.is_file()}
    assert files and files <= shipped, files - shipped


# ---- events: tickets ---------------------------------------------------------------------------


def test_event_tickets_open_the_feed_only_while_valid() -> None:
    now = [100.0]
    hub = EventHub(clock=lambda: now[0])
    who = Principal(Kind.TOKEN, scope="read", token_id="t1", token_name="r")
    ticket, ttl = hub.issue_ticket(who)
    assert ttl == TICKET_TTL_S and len(ticket) >= 32
    assert hub.redeem(ticket) == who
    assert hub.redeem(ticket) == who  # an EventSource reconnecting within the minute may reuse it
    assert hub.redeem("nope") is None and hub.redeem("") is None
    now[0] += TICKET_TTL_S
    assert hub.redeem(ticket) is None


def test_events_ticket_needs_a_token_and_the_feed_needs_a_ticket_or_token(api: Api) -> None:
    assert api.request("POST", f"{PREFIX}/events/ticket", token=None).status_code == 401
    issued = api.request("POST", f"{PREFIX}/events/ticket").json()
    assert issued["url"] == f"{PREFIX}/events?ticket={issued['ticket']}" and issued["expires_in"] > 0
    for query in ("", "?ticket=", "?ticket=forged"):
        response = api.request("GET", f"{PREFIX}/events{query}", token=None)
        assert response.status_code == 401, query
    # a ticket opens nothing but the feed
    other = api.request("GET", f"{PREFIX}/recordings?ticket={issued['ticket']}", token=None)
    assert other.status_code == 401


# ---- events: the feed over a real socket -------------------------------------------------------


async def read_frames(
    lines: AsyncIterator[str], count: int, within: float = 10.0
) -> list[tuple[str, Any]]:
    frames: list[tuple[str, Any]] = []
    event = None

    async def collect() -> None:
        nonlocal event
        while True:
            line = await anext(lines)
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event is not None:
                frames.append((event, json.loads(line[6:])))
                if len(frames) >= count:
                    return

    await asyncio.wait_for(collect(), within)
    return frames


def test_event_feed_streams_live_snapshots_and_recording_events(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    layout = DataLayout(data_dir)
    layout.ensure()
    index = RecordingIndex(layout.index_path, layout=layout)
    rid = add_recording(index, layout, started_at=time.time(), call_recording_id="crid-live")
    token, _ = TokenService(index).create("read")

    async def scenario() -> None:
        runtime = await start_http_runtime(
            data_dir=data_dir, listen_host="127.0.0.1", listen_port=0, link_max_validity_min=60,
            webhook_urls=(), retention_days=0, retention_overrides={}, retention_interval_s=3600,
            metrics=DaemonMetrics(),
        )
        started = time.time() - 12.5
        runtime.events.live_source = lambda: [{"id": "live-1", "started_at": started, "streams": [
            {"label": "1", "codec": "PCMU", "packets_received": 321}]}]
        base = f"http://127.0.0.1:{runtime.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            headers = {"Authorization": f"Bearer {token}"}
            ticket = (await client.post(f"{PREFIX}/events/ticket", headers=headers)).json()
            async with client.stream("GET", ticket["url"]) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                first = await read_frames(lines, 1)
                assert first[0][0] == "live"
                call = first[0][1]["calls"][0]
                assert call["streams"][0]["packets_received"] == 321 and call["elapsed_ms"] >= 12_000
                assert runtime.events.subscribers == 1
                runtime.recording_event("recording_started", rid)
                frames = await read_frames(lines, 3)
                started_events = [data for name, data in frames if name == "recording_started"]
                assert started_events and started_events[0]["id"] == rid
                assert started_events[0]["call_recording_id"] == "crid-live"
            # a bearer token opens it too (integrators with a header)
            async with client.stream("GET", f"{PREFIX}/events", headers=headers) as response:
                lines = response.aiter_lines()
                assert (await read_frames(lines, 1))[0][0] == "live"
                # stopping the runtime ends open streams instead of waiting out its timeout on them
                began = time.monotonic()
                stopping = asyncio.create_task(runtime.stop())

                async def drain() -> None:
                    async for _ in lines:
                        pass

                await asyncio.wait_for(drain(), STOP_TIMEOUT_S)
                await asyncio.wait_for(stopping, 10)
                assert time.monotonic() - began < STOP_TIMEOUT_S

    asyncio.run(scenario())
    index.close()
