from __future__ import annotations

import base64

import pytest

from srs.errors import MultipartError, UnsupportedMediaType
from srs.siprec.multipart import content_type_params, extract_siprec_body, media_type, split_multipart
from tests.unit.siprec.fixtures import body_of

SDP = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
XML = b"<?xml version='1.0'?>\r\n<recording xmlns='urn:ietf:params:xml:ns:recording:1'/>\r\n"


def body(boundary: str = "b1") -> bytes:
    delimiter = f"--{boundary}".encode()
    return (
        delimiter + b"\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n"
        + delimiter + b"\r\nContent-Type: application/rs-metadata+xml\r\n"
        b"Content-Disposition: recording-session\r\n\r\n" + XML + b"\r\n" + delimiter + b"--\r\n"
    )


def test_well_formed_body_splits_exactly() -> None:
    result = extract_siprec_body("multipart/mixed;boundary=b1", body())
    assert result.sdp == SDP and result.metadata == XML
    assert result.metadata_content_type == "application/rs-metadata+xml"
    assert result.other_parts == () and result.warnings == ()


def test_plain_sdp_body() -> None:
    result = extract_siprec_body("application/sdp", SDP)
    assert (result.sdp, result.metadata, result.warnings) == (SDP, None, ())


def test_empty_body() -> None:
    result = extract_siprec_body(None, b"")
    assert (result.sdp, result.metadata) == (None, None)


def test_unknown_content_type_is_415() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        extract_siprec_body("text/plain", b"hello")
    assert caught.value.status == 415


def test_untyped_unknown_body_is_415() -> None:
    with pytest.raises(UnsupportedMediaType):
        extract_siprec_body(None, b"hello")


def test_untyped_multipart_is_sniffed_with_warning() -> None:
    result = extract_siprec_body(None, body())
    assert result.sdp == SDP and any("no Content-Type" in w for w in result.warnings)


def test_boundary_quoted_with_parameters_around() -> None:
    result = extract_siprec_body('multipart/mixed; charset=x; boundary="a b:c"; x=y', body("a b:c"))
    assert result.sdp == SDP and result.metadata == XML and result.warnings == ()


def test_missing_boundary_parameter_is_recovered() -> None:
    result = extract_siprec_body("multipart/mixed", body())
    assert result.sdp == SDP and any("no boundary" in w for w in result.warnings)


def test_wrong_boundary_parameter_is_recovered() -> None:
    result = extract_siprec_body("multipart/mixed;boundary=zzz", body())
    assert result.metadata == XML and any("not in the body" in w for w in result.warnings)


def test_metadata_before_sdp_and_plain_rs_metadata_type() -> None:
    data = (
        b"--b1\r\nContent-Type: application/rs-metadata\r\n\r\n" + XML + b"\r\n"
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b1--\r\n"
    )
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP and result.metadata == XML
    assert any("before the SDP" in w for w in result.warnings)
    assert any("application/rs-metadata instead" in w for w in result.warnings)


def test_single_part_metadata_body() -> None:
    result = extract_siprec_body("application/rs-metadata", XML, "recording-session")
    assert result.metadata == XML and result.sdp is None and len(result.warnings) == 1


def test_missing_closing_delimiter_keeps_last_part() -> None:
    data = body().replace(b"\r\n--b1--\r\n", b"\r\n")
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP and result.metadata == XML + b"\r\n"
    assert any("closing delimiter missing" in w for w in result.warnings)


def test_lf_only_lines() -> None:
    data = body().replace(b"\r\n", b"\n")
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP.replace(b"\r\n", b"\n") and any("LF only" in w for w in result.warnings)


def test_preamble_and_epilogue_are_ignored() -> None:
    result = extract_siprec_body("multipart/mixed;boundary=b1", b"preamble\r\n" + body() + b"epilogue\r\n")
    assert result.sdp == SDP
    assert any("preamble" in w for w in result.warnings) and any("epilogue" in w for w in result.warnings)


def test_extra_parts_are_kept() -> None:
    data = body().replace(b"--b1--", b"--b1\r\nContent-Type: application/isup\r\n\r\nISUP\r\n--b1--")
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert [(p.media_type, p.body) for p in result.other_parts] == [("application/isup", b"ISUP")]


def test_part_without_blank_line_after_headers() -> None:
    data = b"--b1\r\nContent-Type: application/sdp\r\n" + SDP + b"\r\n--b1--\r\n"
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP and any("no blank line" in w for w in result.warnings)


def test_part_without_content_type_is_sniffed() -> None:
    data = b"--b1\r\n\r\n" + SDP + b"\r\n--b1--\r\n"
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP and any("read as application/sdp" in w for w in result.warnings)


def test_folded_part_header() -> None:
    data = b"--b1\r\nContent-Type: application/sdp;\r\n  x=y\r\n\r\nv=0\r\n--b1--"
    parts = split_multipart(data, "b1").parts
    assert parts[0].content_type == "application/sdp; x=y" and parts[0].header("content-type") is not None


def test_body_truncated_mid_part_yields_complete_parts() -> None:
    data = body()
    cut = data[: data.index(b"<recording")]
    result = extract_siprec_body("multipart/mixed;boundary=b1", cut)
    assert result.sdp == SDP and result.metadata is not None


def test_no_delimiter_at_all_is_multipart_error() -> None:
    with pytest.raises(MultipartError):
        extract_siprec_body("multipart/mixed;boundary=b1", b"just text\r\n")


def test_only_closing_delimiter_is_multipart_error() -> None:
    with pytest.raises(MultipartError):
        extract_siprec_body("multipart/mixed;boundary=b1", b"--b1--\r\n")


def test_transport_padding_after_boundary() -> None:
    headers, data = body_of("cisco-siprec-invite.sip")
    result = extract_siprec_body(headers["content-type"], data)
    assert result.sdp is not None and result.sdp.startswith(b"v=0\r\n") and result.metadata is not None


def test_content_type_helpers() -> None:
    assert media_type(" Multipart/Mixed ; boundary=x") == "multipart/mixed"
    assert media_type(None) == ""
    assert content_type_params('a/b; Boundary="q\\"x"; n=1') == {"boundary": 'q"x', "n": "1"}


def test_base64_part_is_decoded() -> None:
    data = (
        b"--b1\r\nContent-Type: application/sdp\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(SDP)
        + b"--b1--\r\n"
    )
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.sdp == SDP and any("base64" in w for w in result.warnings)


def test_xml_typed_recording_session_part_is_metadata() -> None:
    data = body().replace(b"application/rs-metadata+xml", b"application/xml")
    result = extract_siprec_body("multipart/mixed;boundary=b1", data)
    assert result.metadata == XML and any("application/xml" in w for w in result.warnings)
