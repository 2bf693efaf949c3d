"""Inputs the fuzzers and stress runs found, each pinned to the fix that handles it."""

from __future__ import annotations

import pytest

from srs.errors import MultipartError, SipParseError
from srs.sip.message import Request, parse_message
from srs.siprec.metadata import MAX_MERGED_EXTENSIONS, merge_metadata, parse_metadata
from srs.siprec.multipart import MAX_PARTS, extract_siprec_body, split_multipart

NS = "urn:ietf:params:xml:ns:recording:1"


def _partial_with_extensions(first: int, count: int) -> bytes:
    leaves = "".join(f"<x:tag>{i}</x:tag>" for i in range(first, first + count))
    return (
        f'<recording xmlns="{NS}" xmlns:x="urn:example:x"><datamode>partial</datamode>{leaves}</recording>'
    ).encode()


def test_merge_keeps_each_extension_once_in_order() -> None:
    first = parse_metadata(_partial_with_extensions(0, 3))
    second = parse_metadata(_partial_with_extensions(2, 3))
    merged = merge_metadata(first, second)
    assert [value for _, value in merged.extensions] == ["0", "1", "2", "3", "4"]
    assert len(merged.extension_xml) == 5


def test_merged_extensions_stay_bounded_across_many_updates() -> None:
    # Found by stress: an update with ~10k extension leaves made merge_metadata quadratic
    # (tens of seconds on the event loop), and each further update grew the snapshot.
    snapshot = parse_metadata(_partial_with_extensions(0, 3000))
    for update in range(1, 4):
        snapshot = merge_metadata(snapshot, parse_metadata(_partial_with_extensions(update * 3000, 3000)))
    assert len(snapshot.extensions) == MAX_MERGED_EXTENSIONS
    assert len(snapshot.extension_xml) == MAX_MERGED_EXTENSIONS
    assert [value for _, value in snapshot.extensions[:2]] == ["0", "1"]
    assert any(str(MAX_MERGED_EXTENSIONS) in warning for warning in snapshot.warnings)


def _parts(count: int) -> bytes:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return part * count + b"--b--\r\n"


def test_part_count_is_capped() -> None:
    assert len(split_multipart(_parts(MAX_PARTS), "b").parts) == MAX_PARTS
    with pytest.raises(MultipartError, match="at most"):
        split_multipart(_parts(MAX_PARTS + 1), "b")
    with pytest.raises(MultipartError):
        extract_siprec_body("multipart/mixed;boundary=b", _parts(10_000))


def test_delimiters_in_the_epilogue_do_not_count_as_parts() -> None:
    body = _parts(2) + b"--b\r\n" * (MAX_PARTS + 5)
    split = split_multipart(body, "b")
    assert len(split.parts) == 2
    assert any("epilogue" in warning for warning in split.warnings)


def test_start_line_is_capped_like_a_header_line() -> None:
    head = (
        "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
        "Call-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    short = f"OPTIONS sip:{'a' * 100}@example.com SIP/2.0\r\n{head}".encode()
    long = f"OPTIONS sip:{'a' * 9000}@example.com SIP/2.0\r\n{head}".encode()
    parsed = parse_message(short, max_header_length=200)
    assert isinstance(parsed, Request) and parsed.method == "OPTIONS"
    with pytest.raises(SipParseError, match="start line"):
        parse_message(long)
