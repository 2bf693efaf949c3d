"""HTTP Range requests (RFC 9110 §14): parse ``bytes=`` specs into inclusive byte intervals."""

from __future__ import annotations

from dataclasses import dataclass


class RangeNotSatisfiable(Exception):
    """No requested range overlaps the representation (answered with 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """Satisfiable ranges in request order, or ``None`` when the header should be ignored.

    A syntactically invalid header, or a unit other than bytes, is ignored (the whole file is sent),
    as RFC 9110 allows; a valid header whose ranges all miss the file raises RangeNotSatisfiable.
    """
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges: list[ByteRange] = []
    parts = [part.strip() for part in specs.split(",")]
    if not any(parts) or len(parts) > 32:
        return None
    for part in parts:
        if not part:
            continue
        first, dash, last = part.partition("-")
        if not dash:
            return None
        first, last = first.strip(), last.strip()
        if not first:
            if not last.isdigit():
                return None
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start < size:
            ranges.append(ByteRange(start, min(end, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable()
    return ranges
