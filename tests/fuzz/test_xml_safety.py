"""rs-metadata arrives from the network: DTDs, external entities and entity expansion must be
refused without the parser opening a file or a connection (XXE, SSRF, billion laughs).

Each attack is tried through ``parse_metadata`` and, to prove the defence does not rest on
the byte prescan alone, straight through the configured lxml parser and in UTF-16 (which
the prescan cannot read). A local HTTP server and a FIFO are the tripwires: the server
must receive no request and nobody may open the FIFO.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from lxml import etree

from srs.errors import MetadataError
from srs.siprec import metadata as metadata_module
from srs.siprec.metadata import MAX_DEPTH, MAX_METADATA_BYTES, parse_metadata

NS = "urn:ietf:params:xml:ns:recording:1"
MARKER = "MARKER-7f3a9c-SHOULD-NEVER-BE-READ"


class _Tripwire(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = f'<!ENTITY leak "{MARKER}">'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_tripwire() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Tripwire,), {"hits": hits})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fifo_tripwire(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A FIFO that records whether anything opened it for reading (and then feeds it the marker)."""
    path = tmp_path / "secret.xml"
    os.mkfifo(path)
    opened: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
                stop.wait(0.005)
                continue
            opened.append("opened")
            with contextlib.suppress(OSError):
                os.write(fd, MARKER.encode())
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield path, opened
    finally:
        stop.set()
        thread.join(timeout=5)


def _attacks(url: str) -> dict[str, str]:
    return {
        "external-dtd": f'<!DOCTYPE recording SYSTEM "{url}/ext.dtd"><recording xmlns="{NS}"/>',
        "external-entity": (
            f'<!DOCTYPE recording [<!ENTITY leak SYSTEM "{url}/leak">]>'
            f'<recording xmlns="{NS}"><group group_id="g">&leak;</group></recording>'
        ),
        "parameter-entity": (
            f'<!DOCTYPE recording [<!ENTITY % ext SYSTEM "{url}/ext.dtd"> %ext;]>'
            f'<recording xmlns="{NS}"><group group_id="&leak;"/></recording>'
        ),
        "attribute-entity": (
            f'<!DOCTYPE recording [<!ENTITY leak SYSTEM "{url}/leak">]>'
            f'<recording xmlns="{NS}"><participant participant_id="p"><nameID aor="&leak;"/>'
            "</participant></recording>"
        ),
    }


def _encodings(text: str) -> list[bytes]:
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?>' + text).encode("utf-16")
    return [text.encode(), utf16]


class _RecordingResolver(etree.Resolver):  # type: ignore[misc]
    """Called by lxml for every external resource the parser tries to load, whatever libxml2 can fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        self.requested.append(system_url)
        return self.resolve_string(f'<!ENTITY leak "{MARKER}">', context)


def _everything_the_parser_returns(document: bytes) -> str:
    """Every result of the configured parser (strict and recovering) and of parse_metadata, as text.

    The configured parser gets a recording resolver: any attempt to load an external
    resource (even one this libxml2 could not fetch) fails the test.
    """
    seen: list[str] = []
    for recover in (False, True):
        parser = metadata_module._parser(recover=recover)
        resolver = _RecordingResolver()
        parser.resolvers.add(resolver)
        try:
            root = etree.fromstring(document, parser)
        except etree.XMLSyntaxError as error:
            seen.append(str(error))
            root = None
        assert resolver.requested == [], f"parser tried to load {resolver.requested}"
        if root is not None:
            seen.append(etree.tostring(root, encoding="unicode"))
    try:
        seen.append(repr(parse_metadata(document)))
    except MetadataError as error:
        seen.append(str(error))
    return "\n".join(seen)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(_attacks("x")))
def test_network_entities_are_never_fetched(attack: str, http_tripwire: tuple[str, list[str]]) -> None:
    url, hits = http_tripwire
    for document in _encodings(_attacks(url)[attack]):
        seen = _everything_the_parser_returns(document)
        assert MARKER not in seen
        with pytest.raises(MetadataError):
            parse_metadata(document)
    assert hits == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(_attacks("x")))
def test_file_entities_are_never_opened(attack: str, fifo_tripwire: tuple[Path, list[str]]) -> None:
    path, opened = fifo_tripwire
    template = _attacks("file://")[attack].replace("file:///leak", f"file://{path}")
    template = template.replace("file:///ext.dtd", f"file://{path}")
    for document in [*_encodings(template), *_encodings(template.replace(f"file://{path}", str(path)))]:
        seen = _everything_the_parser_returns(document)
        assert MARKER not in seen
        with pytest.raises(MetadataError):
            parse_metadata(document)
    assert opened == []


def _billion_laughs(levels: int = 10) -> str:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return (
        f"<!DOCTYPE recording [{''.join(entities)}]>"
        f'<recording xmlns="{NS}"><group group_id="&lol{levels - 1};"/></recording>'
    )


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_without_expansion() -> None:
    for document in _encodings(_billion_laughs()):
        with pytest.raises(MetadataError):
            parse_metadata(document)
        # past the prescan the parser still does not expand: its output stays small
        assert len(_everything_the_parser_returns(document)) < 100_000


@pytest.mark.timeout(30)
def test_quadratic_blowup_without_dtd_is_bounded_by_the_size_cap() -> None:
    attribute = "A" * (MAX_METADATA_BYTES // 2)
    document = f'<recording xmlns="{NS}"><group group_id="{attribute}"/>{"<x/>" * 50_000}</recording>'
    with pytest.raises(MetadataError, match="limit"):
        parse_metadata(document.encode())


def test_depth_cap_counts_from_the_root() -> None:
    def nested(depth: int) -> bytes:
        return f'<recording xmlns="{NS}">{"<a>" * depth}{"</a>" * depth}</recording>'.encode()

    parse_metadata(nested(MAX_DEPTH))
    with pytest.raises(MetadataError, match="deeper"):
        parse_metadata(nested(MAX_DEPTH + 1))
    with pytest.raises(MetadataError):
        parse_metadata(nested(100_000)[: MAX_METADATA_BYTES - 1])


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(MetadataError, match="limit"):
        parse_metadata(b"<" * (MAX_METADATA_BYTES + 1))
    parse_metadata(f'<recording xmlns="{NS}">'.encode() + b" " * 1000 + b"</recording>")
