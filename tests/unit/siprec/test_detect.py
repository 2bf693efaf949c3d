from __future__ import annotations

import pytest

from srs.siprec.detect import detect_siprec, is_siprec_request


@pytest.mark.parametrize(
    "headers",
    [
        [("Require", "siprec")],
        [("Require", "timer, SIPREC")],
        [("Supported", "replaces,siprec")],
        [("k", "siprec")],
        [("Contact", "<sip:src@192.0.2.1>;+sip.src")],
        [("m", "<sip:src@192.0.2.1;+sip.src>")],
        [("Contact", "<sip:+442077705371@192.0.2.1:5060;transport=udp>;src")],
        [("Content-Type", "application/rs-metadata+xml")],
    ],
)
def test_siprec_markers(headers: list[tuple[str, str]]) -> None:
    assert is_siprec_request(headers)


@pytest.mark.parametrize(
    "headers",
    [
        [("Require", "100rel")],
        [("Supported", "siprec-ish")],
        [("Contact", "<sip:srcuser@192.0.2.1>")],
        [("Contact", "<sip:a@192.0.2.1>;+sip.srs")],
        [("Content-Type", "application/sdp")],
        [("Subject", "siprec")],
    ],
)
def test_ordinary_calls(headers: list[tuple[str, str]]) -> None:
    assert not is_siprec_request(headers)


def test_multipart_with_metadata_part() -> None:
    headers = [("Content-Type", "multipart/mixed;boundary=x")]
    metadata_body = b"--x\r\nContent-Type: Application/RS-Metadata+xml\r\n\r\n<r/>\r\n--x--"
    assert is_siprec_request(headers, metadata_body)
    assert not is_siprec_request(headers, b"--x\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--x--")


class _Request:
    headers = (("Require", "siprec"),)
    body = b""


def test_detect_on_a_request_object() -> None:
    assert detect_siprec(_Request())
