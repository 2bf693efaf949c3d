"""HTTP Range requests (RFC 9110 §14): parse ``bytes=`` specs into inclusive byte intervals.

The parser is strict because the header is attacker input: numbers are ASCII digits only (``str.isdigit``
also accepts "²" and Arabic-Indic digits, which ``int`` then rejects or reinterprets), never more than
:data:`MAX_DIGITS` long (``int`` refuses strings past 4,300 digits, and no file is that large anyway),
at most :data:`MAX_RANGES` specs, and overlapping or adjacent ranges are coalesced (§14.2 allows it) so
a response is never larger than the file plus the multipart framing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RANGES = 16
"""More specs than this are refused with 416: no player asks for that many pieces at once."""
MAX_DIGITS = 18
"""Longer numbers are beyond any file (10**18 bytes is an exabyte); they are judged by length, not parsed."""
MAX_HEADER_CHARS = 1024

_SPEC = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)", re.ASCII)
_BEYOND = -1  # a number too long to parse: larger than any file


class RangeNotSatisfiable(Exception):
    """No requested range overlaps the representation, or the request asks for too many (answered 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def _number(text: str) -> int:
    return _BEYOND if len(text) > MAX_DIGITS else int(text)


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """Satisfiable ranges sorted and coalesced, or ``None`` when the header should be ignored.

    A syntactically invalid header, or a unit other than bytes, is ignored (the whole file is sent),
    as RFC 9110 allows; a valid header whose ranges all miss the file, or that has more than
    :data:`MAX_RANGES` specs, raises RangeNotSatisfiable.
    """
    if len(header) > MAX_HEADER_CHARS or not header.isascii():
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        return None
    parts = [part.strip(" \t") for part in specs.split(",")]
    wanted = [part for part in parts if part]
    if not wanted:
        return None
    if len(wanted) > MAX_RANGES:
        raise RangeNotSatisfiable()
    ranges: list[ByteRange] = []
    for part in wanted:
        match = _SPEC.fullmatch(part)
        if match is None:
            return None
        first, last = match.group(1), match.group(2)
        if not first:
            if not last:
                return None
            suffix = _number(last)
            if suffix == _BEYOND or suffix > size:
                suffix = size
            if suffix > 0:
                ranges.append(ByteRange(size - suffix, size - 1))
            continue
        start = _number(first)
        end = _number(last) if last else _BEYOND
        if start == _BEYOND:
            if end != _BEYOND:
                return None  # last-pos < first-pos: invalid (§14.1.1)
            continue  # starts past any file
        if end != _BEYOND and end < start:
            return None
        if start < size:
            ranges.append(ByteRange(start, size - 1 if end == _BEYOND else min(end, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable()
    return _coalesce(ranges)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping and adjacent ranges, in file order."""
    merged: list[ByteRange] = []
    for item in sorted(ranges, key=lambda r: r.start):
        if merged and item.start <= merged[-1].end + 1:
            last = merged[-1]
            merged[-1] = ByteRange(last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged
