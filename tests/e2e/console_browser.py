"""A real browser for the web console's end-to-end tests: Debian's chromium driven by Playwright.

Nothing is downloaded at run time (no ``playwright install``): the system's chromium is launched
by path. The tests skip, saying why, only when that browser truly cannot start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).with_name("artifacts")


def chromium_path() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (make system-deps installs it): the console's browser tests "
                    "cannot run")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=ARGS, timeout=60_000)
        except Error as exc:
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            said = version.stdout.strip() or version.stderr.strip()
            pytest.skip(f"chromium at {path} cannot start ({said}): {exc}")
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Page, name: str) -> Path:
    """``tests/e2e/artifacts/console-<name>.png`` (git-ignored), referenced from the README."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"[console] screenshot {path}", file=sys.stderr)
    return path


def watch_errors(page: Page) -> list[str]:
    """Script errors and CSP violations the page reports, for the test to assert there are none."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
    return errors


def wait_until(page: Page, expression: str, arg: Any = None, timeout_s: float = 20.0) -> Any:
    """Poll ``expression`` (a JS function of ``arg``) until it is truthy.

    Playwright's own ``wait_for_function`` evaluates a string inside the page, which the console's
    CSP (no ``unsafe-eval``) forbids, as it should; ``evaluate`` runs outside the page's policy.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = page.evaluate(expression, arg)
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s} s: {expression} (last {last!r})")


def sign_in(page: Page, base: str, token: str, where: str = "#/search") -> None:
    page.goto(f"{base}/console/{where}")
    wait_until(page, "() => location.hash === '#/signin'")  # signed out: the page sends us there
    page.wait_for_selector("#token")
    page.fill("#token", token)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#signout:not([hidden])")
