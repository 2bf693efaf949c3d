"""The web console in a real browser, against a daemon that recorded real SIPp calls.

One call with a hold (re-INVITE a=inactive for 2 s) and an RFC 4733 digit is recorded; the console
must find it by call-recording-id, draw its waveform (ink where the tones are, none during the
hold), play it through Range requests on a signed link, seek when the DTMF marker is clicked, and
hand out a signed link that downloads the file without a token. A read token sees no delete. The
live view must show a call appear while SIPp runs it and disappear when it ends.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import LOOPBACK, SCENARIOS, SippResult, SrsDaemon, srs_command, wait_recording
from tests.e2e.console_browser import browser, screenshot, sign_in, wait_until, watch_errors

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

RunSipp = Callable[..., SippResult]
DTMF_AT_S = 1.0
WAIT_MS = 20_000


def create_token(data_dir: Path, scope: str) -> str:
    out = subprocess.run(
        [*srs_command(), "token", "create", "--scope", scope, "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=True,
    ).stdout
    return str(json.loads(out)["token"])


def media_pcap(path: Path, seconds: float, *options: str) -> Path:
    subprocess.run(
        [sys.executable, str(SCENARIOS / "make_media_pcap.py"), str(path), "--codec", "pcmu",
         "--seconds", str(seconds), *options],
        check=True, capture_output=True, timeout=120,
    )
    return path


def base_url(srs: SrsDaemon) -> str:
    return f"http://{LOOPBACK}:{srs.ports.http}"


def canvas_ink(page: Page, fractions: list[float]) -> list[int]:
    """Opaque pixels in the waveform canvas's column at each fraction of its width."""
    result: list[int] = page.evaluate(
        """(fractions) => {
            const c = document.getElementById('waveform');
            const ctx = c.getContext('2d');
            return fractions.map((f) => {
                const x = Math.min(c.width - 1, Math.floor(f * c.width));
                const data = ctx.getImageData(x, 0, 1, c.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
                return n;
            });
        }""",
        fractions,
    )
    return result


def unlabelled(page: Page) -> list[str]:
    """Controls in the view with no accessible name (no label, aria-label or text)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('main input, main select, main textarea, main button')]
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.textContent.trim())
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return found


def record_hold_and_dtmf_call(srs: SrsDaemon, run_sipp: RunSipp, crid: str, tmp_path: Path) -> dict[str, Any]:
    before = media_pcap(tmp_path / "a.pcap", 2.0, "--dtmf", f"5@{DTMF_AT_S}", "--dtmf-seconds", "0.2")
    after = media_pcap(tmp_path / "b.pcap", 2.0, "--seed", "99")
    result = run_sipp(
        "siprec_hold_resume.xml", "-d", "2000", "-set", "crid", crid, target=srs.sip_target, timeout=40,
        pcaps={"two_tone_pcmu.pcap": before, "two_tone_pcmu_b.pcap": after},
    )
    assert result.returncode == 0, result.describe()
    return wait_recording(crid, srs.data_dir, "available", within=5.0)


def test_console_finds_draws_plays_seeks_and_links_a_recorded_call(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, crid: str, tmp_path: Path, browser: Browser
) -> None:
    srs = start_srs()  # the default media plane: one worker process
    rec = record_hold_and_dtmf_call(srs, run_sipp, crid, tmp_path)
    pauses = rec["completeness"]["pauses"]
    assert len(pauses) == 1 and pauses[0][1] >= 1500, rec["completeness"]
    assert [d["digit"] for d in rec["dtmf"]] == ["5"], rec["dtmf"]
    admin, reader = create_token(srs.data_dir, "admin"), create_token(srs.data_dir, "read")
    base = base_url(srs)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = watch_errors(page)
    media: list[tuple[str, int, str | None]] = []
    page.on("response", lambda r: media.append((r.url, r.status, r.request.headers.get("range")))
            if "/api/v1/links/" in r.url else None)

    # sign in (the page remembers where it was sent from)
    page.goto(f"{base}/console/")
    page.wait_for_selector("#token")
    screenshot(page, "signin")
    page.fill("#token", "srs_not-a-token")
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("form.signin .error:has-text('refused')")
    page.fill("#token", admin)
    page.click("form.signin button[type=submit]")
    wait_until(page, "() => location.hash === '#/search'")
    page.wait_for_selector("#signout:not([hidden])")

    # search by call-recording-id, from the keyboard: the query lands in the URL, finds this call
    page.focus("#f-call_recording_id")
    page.keyboard.type(crid)
    page.keyboard.press("Enter")
    wait_until(page, "() => location.hash.includes('call_recording_id=')")
    row = page.locator(f"table.results tbody tr[data-id='{rec['id']}']")
    row.wait_for(timeout=WAIT_MS)
    assert page.locator("table.results tbody tr").count() == 1
    assert crid in page.url
    assert unlabelled(page) == [], unlabelled(page)
    screenshot(page, "search")
    bookmarked = page.url
    # other filters through the form: participant (any case, part of the AOR), state, duration
    page.fill("#f-call_recording_id", "")
    page.fill("#f-participant", "ALICE@example")
    page.select_option("#f-state", "available")
    page.fill("#f-min_duration", "5")
    page.click("form.search button[type=submit]")
    wait_until(page, "() => location.hash.includes('participant=ALICE')")
    page.locator(f"table.results tbody tr[data-id='{rec['id']}']").wait_for(timeout=WAIT_MS)
    page.fill("#f-min_duration", "600")
    page.click("form.search button[type=submit]")
    wait_until(page, "() => document.querySelector('.status').textContent.startsWith('0 recordings')")
    page.goto(bookmarked)
    page.locator(f"table.results tbody tr[data-id='{rec['id']}']").wait_for(timeout=WAIT_MS)
    # start time sorts through the API (all pages): the order lands in the URL
    page.click("button.sort[data-sort='started_at']")
    wait_until(page, "() => location.hash.includes('order=oldest')")
    page.locator("th[aria-sort='ascending'] button[data-sort='started_at']").wait_for(timeout=WAIT_MS)
    page.goto(bookmarked)
    page.locator(f"table.results tbody tr[data-id='{rec['id']}']").wait_for(timeout=WAIT_MS)

    # one recording: waveform drawn from the peaks endpoint, markers, details
    row.locator("a").click()
    page.wait_for_selector("#waveform[data-drawn='true']", timeout=WAIT_MS)
    duration = rec["duration_ms"]
    hold_at, hold_len = pauses[0]
    first_audio = min(s["first_audio_ms"] for s in rec["completeness"]["streams"].values())
    tone = [(first_audio + 500) / duration, (hold_at - 300) / duration,
            (hold_at + hold_len + 800) / duration]
    quiet = [(hold_at + hold_len / 2) / duration, (hold_at + 200) / duration,
             (hold_at + hold_len - 200) / duration]
    ink = canvas_ink(page, tone + quiet)
    print(f"\n[console] duration {duration} ms, hold {hold_at}+{hold_len} ms, ink {ink}")
    assert all(n > 10 for n in ink[:3]), f"no waveform where the tones are: {ink}"
    assert ink[3:] == [0, 0, 0], f"waveform drawn during the hold: {ink}"
    assert page.locator(".marker-pause").count() == 1
    assert page.locator("#sha256").inner_text() == rec["file"]["sha256"]
    assert page.locator("section[aria-labelledby='s-streams'] tbody tr").count() == len(rec["streams"])
    assert page.locator(".lane").count() == len(rec["completeness"]["streams"])
    assert rec["sip_call_id"] in page.locator("section[aria-labelledby='s-sip']").inner_text()

    # the player loads the audio through Range requests on a signed link, and plays
    wait_until(page, "() => document.getElementById('player').readyState >= 1")
    page.evaluate("document.getElementById('player').play()")
    wait_until(page, "() => document.getElementById('player').currentTime > 0.5")
    assert any(status == 206 and rng for _, status, rng in media), media
    assert all("token" not in url.lower() or "tok=" in url for url, _, _ in media)

    # clicking the DTMF marker seeks to the digit; so does Enter on it, reached from the keyboard
    digit = rec["dtmf"][0]
    page.evaluate("document.getElementById('player').pause()")
    page.click(".marker-dtmf")
    at = page.evaluate("document.getElementById('player').currentTime")
    assert digit["offset_ms"] / 1000 - 0.05 <= at <= digit["offset_ms"] / 1000 + 1.0, (at, digit)
    page.evaluate("(p) => { p.pause(); p.currentTime = 5; }", page.query_selector("#player"))
    page.focus(".marker-pause")
    page.keyboard.press("Tab")  # the next marker in the order of the page: the digit
    assert page.evaluate("document.activeElement.dataset.kind") == "dtmf"
    page.keyboard.press("Enter")
    at = page.evaluate("document.getElementById('player').currentTime")
    assert digit["offset_ms"] / 1000 - 0.05 <= at <= digit["offset_ms"] / 1000 + 1.0, (at, digit)
    assert unlabelled(page) == [], unlabelled(page)
    screenshot(page, "recording")

    # a signed link copied from the page downloads the file without a token
    page.select_option("#link-validity", "60")
    page.click("#copy-link")
    wait_until(page, "() => document.getElementById('signed-link').value.startsWith('http')")
    link = page.input_value("#signed-link")
    fetched = httpx.get(link, timeout=30)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == rec["file"]["sha256"]
    assert page.locator("#delete").is_visible() and page.locator("#hold").is_visible()

    # the console's responses carry the strict policy; the page broke none of it
    head = httpx.get(f"{base}/console/", timeout=10)
    policy = head.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert errors == [], errors

    # a shared search URL opens the same search in another session
    other = browser.new_context()
    shared = other.new_page()
    sign_in(shared, base, reader, bookmarked.split("/console/", 1)[1])
    shared.locator(f"table.results tbody tr[data-id='{rec['id']}']").wait_for(timeout=WAIT_MS)
    assert shared.input_value("#f-call_recording_id") == crid
    assert shared.locator("#export-selected").count() == 0

    # a read token does not see delete, hold or export; the API refuses it anyway
    shared.goto(f"{base}/console/#/recording/{rec['id']}")
    shared.wait_for_selector("#waveform[data-drawn='true']", timeout=WAIT_MS)
    assert shared.locator("#delete").count() == 0 and shared.locator("#hold").count() == 0
    screenshot(shared, "recording-read-token")
    refused = httpx.delete(f"{base}/api/v1/recordings/{rec['id']}",
                           headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    assert refused.status_code == 403

    # a 401 anywhere returns to the sign-in view: revoke-like, with a token the API no longer knows
    shared.evaluate("sessionStorage.setItem('srs.console.token', 'srs_' + 'x'.repeat(43))")
    shared.goto(f"{base}/console/#/search")
    wait_until(shared, "() => location.hash === '#/signin'")
    other.close()

    # exports: export the current search, watch it finish, download it
    page.goto(bookmarked)
    page.locator(f"table.results tbody tr[data-id='{rec['id']}']").wait_for(timeout=WAIT_MS)
    page.click("#export-search")
    page.wait_for_selector("#export-rows tr[data-state='done']", timeout=WAIT_MS)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.click("#export-rows tr[data-state='done'] button.download-export")
    saved = download.value.path()
    assert saved is not None
    with tarfile.open(saved, "r:gz") as archive:
        sizes = [m.size for m in archive.getmembers() if m.name.endswith(".wav")]
    assert sizes == [rec["file"]["size"]], sizes
    screenshot(page, "exports")

    # delete, with confirmation
    page.goto(f"{base}/console/#/recording/{rec['id']}")
    page.wait_for_selector("#waveform[data-drawn='true']", timeout=WAIT_MS)
    page.click("#delete")
    page.click("#confirm-delete-button")
    wait_until(page, "() => location.hash === '#/search'")
    gone = httpx.get(f"{base}/api/v1/recordings/{rec['id']}", headers={"Authorization": f"Bearer {admin}"})
    assert gone.status_code == 404

    # sign out: the token leaves the tab
    page.click("#signout")
    wait_until(page, "() => location.hash === '#/signin'")
    assert page.evaluate("sessionStorage.getItem('srs.console.token')") is None
    context.close()


def test_console_live_view_shows_a_call_appear_and_disappear(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, crid: str, tmp_path: Path, browser: Browser
) -> None:
    srs = start_srs()  # the default media plane: one worker process
    admin = create_token(srs.data_dir, "admin")
    base = base_url(srs)
    context = browser.new_context(viewport={"width": 1300, "height": 700})
    page = context.new_page()
    errors = watch_errors(page)
    sign_in(page, base, admin, "#/live")
    page.wait_for_selector("#live-status:has-text('Connected')", timeout=WAIT_MS)

    pcap = media_pcap(tmp_path / "live.pcap", 6.0)
    outcome: list[SippResult] = []
    call = threading.Thread(target=lambda: outcome.append(run_sipp(
        "siprec_basic.xml", "-d", "6000", "-set", "crid", crid, target=srs.sip_target, timeout=40,
        pcaps={"two_tone_pcmu.pcap": pcap},
    )))
    call.start()
    try:
        live_row = page.locator("#live-calls tr", has_text=crid)
        live_row.wait_for(timeout=WAIT_MS)
        # packets counted while the call runs, duration ticking
        wait_until(
            page, """(crid) => [...document.querySelectorAll('#live-calls tr')].some((tr) =>
                tr.textContent.includes(crid) &&
                [...tr.querySelectorAll('.stream')].some(
                    (s) => /: \\S+ · [1-9]\\d* pkts/.test(s.textContent)))""",
            crid,
        )
        first = live_row.locator(".duration").inner_text()
        wait_until(
            page, """([crid, first]) => [...document.querySelectorAll('#live-calls tr')].some((tr) =>
                tr.textContent.includes(crid) && tr.querySelector('.duration').textContent !== first)""",
            [crid, first],
        )
        screenshot(page, "live")
        started = time.monotonic()
        live_row.wait_for(state="detached", timeout=30_000)
        page.locator("#live-recent li", has_text=crid).wait_for(timeout=WAIT_MS)
        print(f"\n[console] live row left {time.monotonic() - started:.1f} s after packets were seen")
    finally:
        call.join(60)
    assert outcome and outcome[0].returncode == 0, outcome[0].describe() if outcome else "SIPp did not finish"
    assert errors == [], errors
    context.close()


def test_console_marks_a_metadata_update_with_who_joined(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, crid: str, tmp_path: Path, browser: Browser
) -> None:
    srs = start_srs()  # the default media plane: one worker process
    pcap = media_pcap(tmp_path / "m.pcap", 3.0)
    result = run_sipp(
        "siprec_metadata_update.xml", "-d", "1500", "-set", "crid", crid, target=srs.sip_target, timeout=40,
        pcaps={"two_tone_pcmu.pcap": pcap},
    )
    assert result.returncode == 0, result.describe()
    rec = wait_recording(crid, srs.data_dir, "available", within=5.0)
    admin = create_token(srs.data_dir, "admin")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = watch_errors(page)
    sign_in(page, base_url(srs), admin, f"#/recording/{rec['id']}")
    page.wait_for_selector("#waveform[data-drawn='true']", timeout=WAIT_MS)
    update = page.locator(".marker-metadata")
    assert update.count() == 1
    label = update.get_attribute("aria-label") or ""
    assert "Carol joined" in label, label
    # the update came about a second into the call: the marker sits there, and seeks there
    at_ms = float(update.get_attribute("data-at") or "nan")
    assert 500 <= at_ms <= rec["duration_ms"] - 500, (at_ms, rec["duration_ms"])
    update.click()
    at = page.evaluate("document.getElementById('player').currentTime")
    assert at_ms / 1000 - 0.05 <= at <= at_ms / 1000 + 1.0, (at, at_ms)
    assert page.locator("ol.versions > li").count() == 2
    screenshot(page, "recording-metadata-update")
    assert errors == [], errors
    context.close()
