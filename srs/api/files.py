"""Serve a file: streamed in chunks, HEAD, ETag/If-None-Match, If-Range, single and multi Range.

The bytes come from a reader ``(start, length) -> chunks``: a local file (:func:`file_response`) or
an object store (:func:`ranged_response` with the store's ranged GET), so both answer alike.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from srs.api.ranges import ByteRange, RangeNotSatisfiable, parse_range

CHUNK_SIZE = 64 * 1024
Reader = Callable[[int, int], Iterator[bytes]]
"""``reader(start, length)``: that many bytes from ``start``, in chunks."""
_UNSATISFIABLE = b'{"error":{"code":"range_not_satisfiable","message":"no requested range is in the file"}}'


def make_etag(path: Path, sha256: str | None) -> str:
    if sha256:
        return f'"{sha256}"'
    stat = path.stat()
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [item.strip() for item in header.split(",")]
    weak_free = [c[2:] if c.startswith("W/") else c for c in candidates]
    return "*" in candidates or etag in weak_free


def _file_reader(path: Path) -> Reader:
    def read(start: int, length: int) -> Iterator[bytes]:
        with path.open("rb") as handle:
            handle.seek(start)
            remaining = length
            while remaining > 0:
                chunk = handle.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    return read


def _read(reader: Reader, ranges: Sequence[ByteRange]) -> Iterator[bytes]:
    for byte_range in ranges:
        yield from reader(byte_range.start, byte_range.length)


def _multipart(
    reader: Reader, ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str
) -> tuple[Iterator[bytes], int]:
    heads = [
        (f"--{boundary}\r\nContent-Type: {content_type}\r\n"
         f"Content-Range: bytes {r.start}-{r.end}/{size}\r\n\r\n").encode()
        for r in ranges
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(h) for h in heads) + sum(r.length for r in ranges) + 2 * (len(ranges) - 1) + len(tail)

    def body() -> Iterator[bytes]:
        for position, (head, byte_range) in enumerate(zip(heads, ranges, strict=True)):
            if position:
                yield b"\r\n"
            yield head
            yield from _read(reader, [byte_range])
        yield tail

    return body(), length


def file_response(
    request: Request,
    path: Path,
    *,
    content_type: str,
    etag: str,
    filename: str | None = None,
    download: bool = False,
) -> Response:
    return ranged_response(
        request, os.stat(path).st_size, _file_reader(path), content_type=content_type, etag=etag,
        filename=filename, download=download,
    )


def ranged_response(
    request: Request,
    size: int,
    reader: Reader,
    *,
    content_type: str,
    etag: str,
    filename: str | None = None,
    download: bool = False,
) -> Response:
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": "private, no-transform",
    }
    if filename:
        headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{filename}"'
    head_only = request.method == "HEAD"
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    ranges: list[ByteRange] | None = None
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        try:
            ranges = parse_range(range_header, size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            return Response(
                content=_UNSATISFIABLE,
                status_code=416, headers=headers, media_type="application/json",
            )
    if ranges is None:
        status, body_ranges, length = 200, [ByteRange(0, size - 1)] if size else [], size
        media = content_type
        iterator: Iterator[bytes] = _read(reader, body_ranges)
    elif len(ranges) == 1:
        only = ranges[0]
        status, length, media = 206, only.length, content_type
        headers["Content-Range"] = f"bytes {only.start}-{only.end}/{size}"
        iterator = _read(reader, ranges)
    else:
        boundary = secrets.token_hex(16)
        iterator, length = _multipart(reader, ranges, size, content_type, boundary)
        status, media = 206, f"multipart/byteranges; boundary={boundary}"
    headers["Content-Length"] = str(length)
    if head_only:
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(iterator, status_code=status, headers=headers, media_type=media)
