"""Every fixture in tests/data read the way a person reads it."""

from __future__ import annotations

from srs.sdp.model import Direction
from srs.sdp.parse import parse_sdp
from srs.siprec.metadata import parse_metadata
from srs.siprec.multipart import extract_siprec_body
from tests.unit.siprec.fixtures import DATA, body_of, load


def test_readme_lists_every_fixture() -> None:
    readme = (DATA / "README.md").read_text()
    for path in DATA.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name


def test_rfc7865_complete_example() -> None:
    m = parse_metadata(load("rfc7865-8.1-complete.xml"))
    assert [p.aor for p in m.participants] == ["sip:bob@biloxi.com", "sip:Paul@biloxi.com"]
    assert [p.name for p in m.participants] == ["Bob", "Paul"]
    assert [s.label for s in m.streams] == ["96", "97", "98", "99"]
    assert m.sessions[0].sip_session_ids[0].startswith("ab30317f1a784dc48ff824d0d3715d86;")


def test_aws_complete_example_with_its_typo() -> None:
    m = parse_metadata(load("aws-chime-siprec-complete.xml"))
    assert m.dialect == "rfc7865" and m.datamode == "complete"
    assert [p.aor for p in m.participants] == ["sip:alice@atlanta.com", "sip:bob@biloxy.com"]
    assert m.participants[1].name == "Bob" and m.warnings


def test_aws_partial_examples() -> None:
    hold = parse_metadata(load("aws-chime-siprec-partial-hold.xml"))
    resume = parse_metadata(load("aws-chime-siprec-partial-resume.xml"))
    assert hold.datamode == resume.datamode == "partial"
    assert hold.participants[0].send_stream_ids == ()
    assert hold.participants[1].recv_stream_ids == ()
    assert resume.participants[1].recv_stream_ids == ("i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw==")


def test_cisco_invite() -> None:
    headers, body = body_of("cisco-siprec-invite.sip")
    assert int(headers["content-length"]) == len(body)
    parts = extract_siprec_body(headers["content-type"], body)
    assert parts.sdp is not None and parts.metadata is not None
    sdp = parse_sdp(parts.sdp).session
    assert [(m.label, m.port, m.direction) for m in sdp.media] == [
        ("1", 16412, Direction.SENDONLY), ("2", 16414, Direction.SENDONLY)
    ]
    assert [c.encoding for c in sdp.media[0].codecs] == ["PCMA", "CN"]
    m = parse_metadata(parts.metadata)
    assert m.dialect == "rfc7865"
    assert [p.aor for p in m.participants] == ["sip:448707803128@192.168.33.1", "sip:8001@172.17.12.99"]
    assert (m.participants[0].send, m.participants[0].recv) == (("1",), ("2",))
    assert m.sessions[0].start_time == "2016-05-06T07:57:48.526Z"
    # The capture's second association names a stream id as participant: reported, not invented.
    assert any("DyxVShKXEeaAO/FyJSj9YQ==" in w for w in m.warnings)


def test_broadworks_invite() -> None:
    headers, body = body_of("broadworks-siprec-invite.sip")
    assert int(headers["content-length"]) == len(body)
    parts = extract_siprec_body(headers["content-type"], body)
    assert any("before the SDP" in w for w in parts.warnings)
    assert parts.sdp is not None and parts.metadata is not None
    media = parse_sdp(parts.sdp).session.media
    assert [(m.label, m.port) for m in media] == [("5", 58014)]
    m = parse_metadata(parts.metadata)
    assert (m.dialect, m.datamode) == ("broadworks", "complete")
    assert [p.aor for p in m.participants] == [
        "sip:02077705371", "sip:07949538036@exponential-e.com;user=phone"
    ]
    assert [p.send for p in m.participants] == [("1",), ("1",)]
    assert m.extension("http://schema.broadsoft.com/broadworksCallRecording:extTrackingID") == ("8028549:1",)
    assert m.sessions[0].start_time == "2016-06-22T10:44:43+01:00"
    assert m.extension_xml[0].startswith("<broadWorksRecordingMetadata")


def test_audiocodes_invite() -> None:
    headers, body = body_of("audiocodes-mediant-siprec-invite.sip")
    assert int(headers["content-length"]) == len(body)
    parts = extract_siprec_body(headers["content-type"], body)
    assert parts.metadata_content_type == "application/rs-metadata"
    assert parts.sdp is not None and parts.metadata is not None
    media = parse_sdp(parts.sdp).session.media
    assert [(m.label, [c.encoding for c in m.codecs]) for m in media] == [
        ("1", ["PCMU", "TELEPHONE-EVENT"]), ("2", ["PCMU", "TELEPHONE-EVENT"])
    ]
    assert media[0].codecs[1].fmtp == "0-15,16"
    m = parse_metadata(parts.metadata)
    assert m.dialect == "draft" and m.call_recording_id is None
    assert [(p.id, p.aor, p.send, p.recv) for p in m.participants] == [
        ("+18888888888", "+18888888888@fakeip.com", ("1",), ("2",)),
        ("+17777777777", "+17777777777@fakeip.com", ("2",), ("1",)),
    ]
    assert m.groups[0].associate_time == "2023-08-21T16:42:05Z"


def test_handmade_vendor_documents() -> None:
    oracle = parse_metadata(load("handmade-oracle-apkt-draft.xml"))
    assert oracle.extension("apkt:callingParty") == ("true",)
    audiocodes = parse_metadata(load("handmade-audiocodes-call-recording-id.xml"))
    assert audiocodes.call_recording_id == "ACREC-2024-000123"
    assert audiocodes.extension("acx:avaya-ucid") == ("00FA080018A5B4C2",)
    partial = parse_metadata(load("handmade-audiocodes-partial-disassociate.xml"))
    assert partial.datamode == "partial"
    assert partial.participants[-1].disassociate_time == "2024-03-01T10:05:00Z"


def test_every_tolerance_message_yields_sdp_and_metadata() -> None:
    for path in sorted(DATA.glob("tolerance-*.sip")):
        if "single-part" in path.name or "no-blank-line" in path.name:
            continue
        headers, body = body_of(path.name)
        parts = extract_siprec_body(headers.get("content-type"), body)
        assert parts.sdp is not None and parts.metadata is not None, path.name
        assert [m.label for m in parse_sdp(parts.sdp).session.media] == ["caller", "callee"], path.name
        metadata = parse_metadata(parts.metadata)
        assert metadata.participants[0].aor == "sip:alice@example.com" if metadata.participants else True
        if path.name not in ("tolerance-truncated-body.sip",):
            assert [p.send for p in metadata.participants] == [("caller",), ("callee",)], path.name
