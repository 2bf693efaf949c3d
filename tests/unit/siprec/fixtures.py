"""Access to the byte-exact fixture corpus."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def body_of(name: str) -> tuple[dict[str, str], bytes]:
    """Headers (lower-cased names) and body of a fixture SIP message, split by hand."""
    data = load(name)
    separator = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
    head, body = data.split(separator, 1)
    headers: dict[str, str] = {}
    for line in head.decode().splitlines()[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers.setdefault(key.strip().lower(), value.strip())
    return headers, body
