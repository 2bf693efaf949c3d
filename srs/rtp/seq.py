"""Extending RTP's wrapping 16-bit sequence numbers and 32-bit timestamps.

An extended value keeps counting past the wrap so later arithmetic (gaps,
sample positions) is plain integer subtraction. Each new value is taken as
the nearest extended value to a reference, so a packet that arrives slightly
out of order just before or after a wrap lands on the right side of it.
"""

from __future__ import annotations

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def unwrap16(reference: int, value: int) -> int:
    """Extended sequence number nearest to the extended ``reference``."""
    delta = (value - reference) & 0xFFFF
    if delta >= 0x8000:
        delta -= SEQ_MOD
    return reference + delta


def unwrap32(reference: int, value: int) -> int:
    """Extended timestamp nearest to the extended ``reference``."""
    delta = (value - reference) & 0xFFFFFFFF
    if delta >= 0x80000000:
        delta -= TS_MOD
    return reference + delta


class Unwrapper:
    """Keeps the highest extended value seen for one wrapping counter."""

    __slots__ = ("_highest", "_modulus")

    def __init__(self, bits: int) -> None:
        if bits not in (16, 32):
            raise ValueError("RTP counters are 16 or 32 bits")
        self._modulus = 1 << bits
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        return self._highest

    def extend(self, value: int) -> int:
        """Return the extended form of ``value`` and advance the highest value when it is newer."""
        if self._highest is None:
            self._highest = value
            return value
        half = self._modulus >> 1
        delta = (value - self._highest) % self._modulus
        if delta >= half:
            delta -= self._modulus
        extended = self._highest + delta
        if delta > 0:
            self._highest = extended
        return extended
