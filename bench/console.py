"""The web console at scale: ``python -m bench.console --rows 1000000``.

Fills an index with synthetic recordings (the index bench's bulk insert), gives the newest one a
real 30-minute WAV, serves the API and the console over a loopback socket, then times

* every API call the console's views make (median of ``--repeat``, milliseconds), and
* each view in a real browser (the system's chromium through Playwright, if installed): from the
  address change to the view being drawn, and a full page load of a search.

Prints one JSON document. ``--dir`` keeps the populated data directory for another run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.index_data import T0, populate
from srs.daemon.finalize import file_sha256
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _wav(path: Path, seconds: int) -> None:
    """Speech-like bursts: a tone switched on and off every few seconds."""
    rate = 8000
    t = np.arange(seconds * rate) / rate
    gate = (np.sin(2 * np.pi * t / 7.0) > -0.2).astype(np.float64)
    samples = (8000 * np.sin(2 * np.pi * 440 * t) * gate).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def prepare(directory: Path, rows: int, audio_s: int) -> tuple[str, float]:
    """Populate once (a marker file says it is done); returns the id with audio and the populate time."""
    layout = DataLayout(directory)
    layout.ensure()
    marker = directory / "console-bench.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done["rows"] == rows:
            return str(done["id"]), 0.0
    index = RecordingIndex(layout.index_path, layout=layout)
    began = time.perf_counter()
    ids = populate(index, rows)
    populate_s = time.perf_counter() - began
    rid = ids[-1]
    audio = layout.recordings_dir / f"{rid}.wav"
    _wav(audio, audio_s)
    with index.db.write() as conn:
        conn.execute(
            "UPDATE recordings SET state = 'available', file_path = ?, file_size = ?, sha256 = ?,"
            " duration_ms = ?, sample_rate = 8000, channels = 1 WHERE id = ?",
            (str(audio), audio.stat().st_size, file_sha256(audio), audio_s * 1000, rid),
        )
    index.close()
    marker.write_text(json.dumps({"rows": rows, "id": rid}))
    return rid, populate_s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(directory: Path) -> tuple[str, str, Callable[[], None]]:
    """The API in a thread of its own (its own loop); returns base URL, an admin token, a stopper."""
    import uvicorn

    from srs.api.app import create_app
    from srs.service.exports import ExportManager
    from srs.service.recordings import RecordingService
    from srs.service.tokens import TokenService

    layout = DataLayout(directory)
    index = RecordingIndex(layout.index_path, layout=layout)
    service = RecordingService(index, layout, layout.secret())
    tokens = TokenService(index)
    token, _ = tokens.create("admin", "console-bench")
    app = create_app(service, tokens, ExportManager(service))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        index.close()

    return f"http://127.0.0.1:{port}", token, stop


def _median_ms(action: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples), 1)


def api_timings(base: str, token: str, rid: str, rows: int, repeat: int) -> dict[str, float]:
    middle = T0 + rows * 15
    lists = {
        "list_newest_page1": {"max": 50},
        "list_oldest_page1": {"max": 50, "order": "oldest"},
        "list_page_1000": {"max": 50, "page": 1000},
        "list_call_recording_id": {"call_recording_id": f"crid-{rows // 4}"},
        "list_participant_aor": {"participant": "5550012345", "max": 50},
        "list_participant_name": {"participant": "Agent 42", "max": 50},
        "list_time_range_1h": {"start": str(middle), "end": str(middle + 3600), "max": 50},
        "list_state_failed": {"state": "failed", "max": 50},
        "list_duration_range": {"min_duration": 600, "max_duration": 610, "max": 50},
        "list_source": {"source": "192.0.2.3:5060", "max": 50},
        "list_extension": {"extension": f"vendor:ticket={rows // 5}"},
        "list_extension_common": {"extension": "queue=q3", "max": 50},
    }
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, float] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:

        def get(path: str, params: Any = None) -> Callable[[], Any]:
            def call() -> Any:
                response = client.get(path, params=params)
                response.raise_for_status()
                return response
            return call

        for name, params in lists.items():
            results[name] = _median_ms(get("/api/v1/recordings", params), repeat)
        results["whoami"] = _median_ms(get("/api/v1/whoami"), repeat)
        results["show"] = _median_ms(get(f"/api/v1/recordings/{rid}"), repeat)
        results["metadata"] = _median_ms(get(f"/api/v1/recordings/{rid}/metadata"), repeat)
        shutil.rmtree(Path(client.get(f"/api/v1/recordings/{rid}").json()["file"]["path"]).parent.parent
                      / "cache", ignore_errors=True)
        peaks = get(f"/api/v1/recordings/{rid}/peaks", {"width": 1400})
        results["peaks_cold_1400"] = _median_ms(peaks, 1)
        results["peaks_warm_1400"] = _median_ms(peaks, repeat)
        results["signed_link"] = _median_ms(
            lambda: client.post(f"/api/v1/recordings/{rid}/link").raise_for_status(), repeat)
        results["events_ticket"] = _median_ms(
            lambda: client.post("/api/v1/events/ticket").raise_for_status(), repeat)
        results["live"] = _median_ms(get("/api/v1/live"), repeat)
    return results


def browser_timings(base: str, token: str, rid: str, rows: int) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    chromium = shutil.which("chromium")
    if chromium is None:
        return {"skipped": "chromium is not installed"}
    views = {
        "search_newest": ("#/search", "#main .pager"),
        "search_call_recording_id": (f"#/search?call_recording_id=crid-{rows // 4}", "#main .pager"),
        "search_participant": ("#/search?participant=Agent%2042", "#main .pager"),
        "search_page_1000": ("#/search?page=1000", "#main .pager"),
        "recording_cold_peaks": (f"#/recording/{rid}", "#waveform[data-drawn='true']"),
        "recording_warm_peaks": (f"#/recording/{rid}", "#waveform[data-drawn='true']"),
        "live": ("#/live", "#live-status:has-text('Connected')"),
        "exports": ("#/exports", "#export-rows"),
    }
    results: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/console/#/signin")
        page.wait_for_selector("#token")
        page.fill("#token", token)
        page.click("form.signin button[type=submit]")
        page.wait_for_selector("#main .pager")
        for name, (hash_, ready) in views.items():
            page.evaluate("location.hash = '#/blank'")
            page.wait_for_selector("#main[data-view='blank']")
            if name == "recording_cold_peaks":
                shutil.rmtree(_cache_dir(base, token, rid), ignore_errors=True)
            began = time.perf_counter()
            page.evaluate("(h) => { location.hash = h; }", hash_)
            page.wait_for_selector(ready, timeout=60_000)
            results[name] = round((time.perf_counter() - began) * 1000, 1)
        for name, hash_ in (("full_page_load_search", "#/search"),
                            ("full_page_load_participant", "#/search?participant=Agent%2042")):
            page.goto("about:blank")  # the token stays in this tab's sessionStorage
            began = time.perf_counter()
            page.goto(f"{base}/console/{hash_}")
            page.wait_for_selector("#main .pager", timeout=60_000)
            results[name] = round((time.perf_counter() - began) * 1000, 1)
        browser.close()
    return results


def _cache_dir(base: str, token: str, rid: str) -> Path:
    info = httpx.get(f"{base}/api/v1/recordings/{rid}", headers={"Authorization": f"Bearer {token}"}).json()
    return Path(info["file"]["path"]).parent.parent / "cache"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--audio-seconds", type=int, default=1800)
    parser.add_argument("--dir", type=Path, default=None, help="keep the data directory here")
    args = parser.parse_args(argv)
    scratch = None
    if args.dir is None:
        scratch = tempfile.TemporaryDirectory()
        directory = Path(scratch.name)
    else:
        directory = args.dir
        directory.mkdir(parents=True, exist_ok=True)
    try:
        rid, populate_s = prepare(directory, args.rows, args.audio_seconds)
        base, token, stop = serve(directory)
        try:
            report = {
                "rows": args.rows, "populate_s": round(populate_s, 1),
                "api_ms": api_timings(base, token, rid, args.rows, args.repeat),
                "browser_ms": browser_timings(base, token, rid, args.rows),
            }
        finally:
            stop()
    finally:
        if scratch is not None:
            scratch.cleanup()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
