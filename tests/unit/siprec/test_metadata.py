from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from srs.errors import MetadataError
from srs.siprec import metadata as metadata_module
from srs.siprec.metadata import MAX_METADATA_BYTES, merge_metadata, parse_metadata
from tests.unit.siprec.fixtures import load

RECORDING_OPEN = b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"


def test_rfc7865_dialect_resolves_stream_ids_to_labels() -> None:
    m = parse_metadata(load("rfc7865-8.1-complete.xml"))
    assert (m.dialect, m.datamode) == ("rfc7865", "complete")
    bob = m.participant("srfBElmCRp2QB23b7Mpk0w==")
    assert bob is not None and bob.aor == "sip:bob@biloxi.com" and bob.name == "Bob"
    assert bob.send == ("97", "96") and bob.recv == ("98", "99")
    assert bob.send_stream_ids == ("i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw==")
    assert bob.associate_time == "2010-12-16T23:41:07Z" and bob.session == "hVpd7YQgRW2nD22h7q60JQ=="
    assert [g.id for g in m.groups] == ["7+OTCyoxTmqmqyA/1weDAg=="]
    assert m.sessions[0].group == "7+OTCyoxTmqmqyA/1weDAg=="
    assert m.extension("urn:ietf:params:xml:ns:callcenter:supervisor") == ("sip:alice@atlanta.com",)
    assert len(m.extension_xml) == 5 and m.extension_xml[0].startswith("<call-center")
    assert m.call_recording_id is None and m.warnings == ()


def test_draft_dialect_with_participant_send_recv() -> None:
    m = parse_metadata(load("handmade-oracle-apkt-draft.xml"))
    assert m.dialect == "draft"
    assert [(p.aor, p.name, p.send, p.recv) for p in m.participants] == [
        ("sip:+15551230001@198.51.100.7", "Caller One", ("1",), ("2",)),
        ("sip:+15551230002@203.0.113.20", "Agent 2", ("2",), ("1",)),
    ]
    assert m.extension("apkt:ucid") == ("00FA080018A5B4C2;encoding=hex",)
    assert m.sessions[0].id == "dGVzdC1zZXNzaW9u"


def test_dialect_is_decided_by_root_namespace_alone() -> None:
    rfc = b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'><participant id='x'/></recording>"
    draft = (
        b"<recording xmlns='urn:ietf:params:xml:ns:recording'><participant participant_id='x'/></recording>"
    )
    bw = b"<recording xmlns='urn:ietf:params:xml:ns:siprec'/>"
    assert parse_metadata(rfc).dialect == "rfc7865" and parse_metadata(rfc).participants[0].id == "x"
    assert parse_metadata(draft).dialect == "draft" and parse_metadata(draft).participants[0].id == "x"
    assert parse_metadata(bw).dialect == "broadworks"


def test_unknown_namespace_recording_root_is_read_with_warning() -> None:
    m = parse_metadata(b"<recording><datamode>partial</datamode></recording>")
    assert m.dialect == "rfc7865" and m.datamode == "partial" and m.warnings


def test_non_recording_root_is_refused() -> None:
    with pytest.raises(MetadataError):
        parse_metadata(b"<html><body/></html>")


def test_call_recording_id_any_prefix_only_audiocodes_namespace() -> None:
    assert parse_metadata(load("handmade-audiocodes-call-recording-id.xml")).call_recording_id == (
        "ACREC-2024-000123"
    )
    other = (
        b"<recording xmlns='urn:ietf:params:xml:ns:recording:1' xmlns:x='http://example.com/x'>"
        b"<x:call-recording-id>nope</x:call-recording-id></recording>"
    )
    m = parse_metadata(other)
    assert m.call_recording_id is None and m.extension("x:call-recording-id") == ("nope",)


def test_not_well_formed_ampersand_is_escaped_and_warned() -> None:
    m = parse_metadata(load("tolerance-metadata-unescaped-ampersand.xml"))
    assert m.participants[0].name == "Smith & Sons" and any("escaped" in w for w in m.warnings)


def test_not_well_formed_less_than_is_escaped_and_warned() -> None:
    m = parse_metadata(load("tolerance-metadata-unescaped-less-than.xml"))
    assert m.participants[0].name == "Tier <1 support" and m.warnings


def test_mismatched_tags_are_recovered_with_warning() -> None:
    m = parse_metadata(load("aws-chime-siprec-complete.xml"))
    assert [p.aor for p in m.participants] == ["sip:alice@atlanta.com", "sip:bob@biloxy.com"]
    assert any("recover" in w for w in m.warnings)


@pytest.mark.parametrize("name", ["attack-xxe-file.xml", "attack-billion-laughs.xml"])
def test_dtd_documents_are_refused(name: str) -> None:
    with pytest.raises(MetadataError, match="DTD"):
        parse_metadata(load(name))


def test_doctype_hidden_by_case_or_spacing_is_refused() -> None:
    with pytest.raises(MetadataError):
        parse_metadata(b"<?xml version='1.0'?><!doctype recording><recording/>")
    with pytest.raises(MetadataError):
        parse_metadata(b"<!  DOCTYPE recording><recording/>")


def test_parser_never_reads_the_file_system_even_past_the_prescan(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    document = (
        f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]><r>&xxe;</r>'.encode()
    )
    for recover in (False, True):
        try:
            root = etree.fromstring(document, metadata_module._parser(recover=recover))
        except etree.XMLSyntaxError:
            continue
        assert b"TOP-SECRET-VALUE" not in etree.tostring(root)
    with pytest.raises(MetadataError):
        parse_metadata(document)


def test_entity_reference_without_dtd_is_not_expanded() -> None:
    m = parse_metadata(
        b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
        b"<participant participant_id='p'><nameID aor='&xxe;'/></participant></recording>"
    )
    assert m.participants[0].aor in (None, "&xxe;", "") and m.warnings


def test_size_cap() -> None:
    big = RECORDING_OPEN + b" " * MAX_METADATA_BYTES + b"</recording>"
    with pytest.raises(MetadataError, match="limit"):
        parse_metadata(big)


def test_depth_cap() -> None:
    deep = RECORDING_OPEN + b"<a>" * 100 + b"</a>" * 100 + b"</recording>"
    with pytest.raises(MetadataError, match="deeper"):
        parse_metadata(deep)


@pytest.mark.parametrize("data", [b"", b"   ", b"not xml at all", b"<", b"\x00\x01\x02"])
def test_garbage_is_metadata_error(data: bytes) -> None:
    with pytest.raises(MetadataError):
        parse_metadata(data)


def test_raw_is_kept() -> None:
    data = load("rfc7865-8.1-complete.xml")
    assert parse_metadata(data).raw == data


def test_merge_partial_hold_then_resume() -> None:
    complete = parse_metadata(load("rfc7865-8.1-complete.xml"))
    hold = merge_metadata(complete, parse_metadata(load("aws-chime-siprec-partial-hold.xml")))
    bob = hold.participant("srfBElmCRp2QB23b7Mpk0w==")
    paul = hold.participant("zSfPoSvdSDCmU3A3TRDxAw==")
    assert bob is not None and paul is not None
    assert (bob.send, bob.recv) == ((), ("98", "99"))
    assert (paul.send, paul.recv) == (("98", "99"), ())
    assert bob.aor == "sip:bob@biloxi.com" and bob.name == "Bob"
    assert len(hold.streams) == 4 and hold.datamode == "complete" and hold.dialect == "rfc7865"
    resumed = merge_metadata(hold, parse_metadata(load("aws-chime-siprec-partial-resume.xml")))
    bob = resumed.participant("srfBElmCRp2QB23b7Mpk0w==")
    assert bob is not None and (bob.send, bob.recv) == (("97", "96"), ("98", "99"))


def test_merge_partial_adds_participant_stream_and_disassociates() -> None:
    base = parse_metadata(load("handmade-audiocodes-call-recording-id.xml"))
    update = parse_metadata(load("handmade-audiocodes-partial-disassociate.xml"))
    merged = merge_metadata(base, update)
    assert [p.id for p in merged.participants] == ["cC0x", "cC0y", "cC0z"]
    supervisor = merged.participant("cC0z")
    assert supervisor is not None and (supervisor.send, supervisor.recv) == (("3",), ("1",))
    leaver = merged.participant("cC0y")
    assert leaver is not None and leaver.disassociate_time == "2024-03-01T10:05:00Z"
    assert leaver.associate_time == "2024-03-01T10:00:00Z" and leaver.aor == "tel:+15551230002"
    assert [s.label for s in merged.streams] == ["1", "2", "3"]
    assert merged.call_recording_id == "ACREC-2024-000123"
    assert merged.extensions[-1] == ("acx:transfer-reason", "blind")
    assert merged.raw == update.raw


def test_merge_complete_replaces() -> None:
    base = parse_metadata(load("handmade-audiocodes-call-recording-id.xml"))
    replacement = parse_metadata(load("rfc7865-8.1-complete.xml"))
    assert merge_metadata(base, replacement) is replacement
    assert merge_metadata(None, base) is base


def test_merge_does_not_duplicate_extensions() -> None:
    base = parse_metadata(load("handmade-audiocodes-call-recording-id.xml"))
    again = parse_metadata(load("handmade-audiocodes-call-recording-id.xml").replace(
        b"<datamode>complete</datamode>", b"<datamode>partial</datamode>"))
    assert merge_metadata(base, again).extensions == base.extensions


def test_doctype_in_utf16_is_refused_after_parsing() -> None:
    document = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "AAAA">]>'
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
        "<participant participant_id='&a;'/></recording>"
    ).encode("utf-16")
    with pytest.raises(MetadataError, match="DTD"):
        parse_metadata(document)


def test_invented_tag_names_cannot_grow_the_split_cache() -> None:
    limit = metadata_module._SPLIT_LIMIT
    extensions = "".join(f"<x:t{n}>v</x:t{n}>" for n in range(limit + 10))
    xml = (
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1" xmlns:x="urn:example:ext">'
        f"<datamode>complete</datamode>{extensions}</recording>"
    ).encode()
    parsed = parse_metadata(xml)
    assert len(parsed.extensions) == limit + 10
    assert len(metadata_module._SPLIT) <= limit


def test_text_of_an_element_with_and_without_children_reads_the_same() -> None:
    xml = (
        b'<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
        b'<participant participant_id="p1"><nameID aor="sip:a@example.com">'
        b"<name>  Alice <!-- dropped --> Smith </name></nameID></participant>"
        b'<participant participant_id="p2"><nameID aor="sip:b@example.com">'
        b"<name>Bob <b>Jones</b></name></nameID></participant></recording>"
    )
    names = [p.name for p in parse_metadata(xml).participants]
    assert names == ["Alice  Smith", "Bob Jones"]
