from __future__ import annotations

import json

import pytest

from srs.errors import ParseError
from srs.siprec.inspect import inspect_bytes
from tests.unit.siprec.fixtures import body_of, load

KEYS = {"kind", "method", "headers", "parts", "is_siprec", "sdp", "metadata", "warnings"}


def test_bare_multipart_body_takes_boundary_from_first_line() -> None:
    _, body = body_of("broadworks-siprec-invite.sip")
    result = inspect_bytes(body)
    assert set(result) == KEYS
    assert (result["kind"], result["method"], result["headers"]) == ("body", None, [])
    assert result["is_siprec"] is None
    assert result["sdp"] == {"media": [{"label": "5", "direction": "sendonly", "port": 58014,
                                        "codecs": ["PCMA", "TELEPHONE-EVENT"]}]}
    metadata = result["metadata"]
    assert metadata["dialect"] == "broadworks"
    assert [p["aor"] for p in metadata["participants"]] == [
        "sip:02077705371", "sip:07949538036@exponential-e.com;user=phone"
    ]
    json.dumps(result)


def test_metadata_document() -> None:
    result = inspect_bytes(load("handmade-audiocodes-call-recording-id.xml"))
    assert result["kind"] == "metadata" and result["sdp"] is None
    metadata = result["metadata"]
    assert metadata["call_recording_id"] == "ACREC-2024-000123"
    assert metadata["extensions"]["acx:call-recording-id"] == "ACREC-2024-000123"
    assert metadata["participants"][0] == {
        "id": "cC0x", "aor": "sip:+15551230001@example.com", "name": "Caller", "send": ["1"], "recv": ["2"]
    }
    assert metadata["streams"][0] == {"id": "cy0x", "label": "1", "session": "c2Vzcy0x"}
    assert metadata["sessions"][0]["start_time"] == "2024-03-01T10:00:00Z"


def test_repeated_extension_keys_become_lists() -> None:
    extensions = inspect_bytes(load("rfc7865-8.1-complete.xml"))["metadata"]["extensions"]
    assert extensions["http://example.com/my:structure"] == ["FOO!"] * 4
    assert extensions["urn:ietf:params:xml:ns:callcenter:supervisor"] == "sip:alice@atlanta.com"


def test_bare_sdp_with_hold_reads_inactive() -> None:
    result = inspect_bytes(load("tolerance-sdp-sloppy.sdp"))
    assert result["kind"] == "sdp"
    assert [(m["label"], m["direction"], m["codecs"]) for m in result["sdp"]["media"]] == [
        ("0123456789abcdef0123456789abcdef-leg-A", "sendonly", ["PCMU", "G729", "TELEPHONE-EVENT"]),
        ("leg B", "inactive", ["PCMA"]),
    ]
    assert any(w.startswith("sdp: ") for w in result["warnings"])


def test_refused_metadata_is_a_warning_not_a_crash() -> None:
    result = inspect_bytes(load("attack-xxe-file.xml"))
    assert result["metadata"] is None and any("DTD" in w for w in result["warnings"])


def test_unknown_input_is_parse_error() -> None:
    with pytest.raises(ParseError):
        inspect_bytes(b"hello there")
