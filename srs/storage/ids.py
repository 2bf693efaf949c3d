"""Sortable identifiers: 48 bits of milliseconds then 80 random bits, Crockford base32 (ULID layout).

Sorting ids as strings sorts them by creation time, so ties in ``started_at`` still have a stable,
meaningful order and the id alone tells roughly when a recording began.
"""

from __future__ import annotations

import os
import re

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_id(now: float) -> str:
    """A fresh id for an object created at ``now`` (unix seconds)."""
    millis = max(0, int(now * 1000)) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))
