"""The API under attack, in process: each test is an attack that worked before the hardening.

Bodies are driven through the raw ASGI interface so the test can count how much of a body the app
pulled before answering; everything else goes through the HTTP client against the real app, service
and SQLite index.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from srs.api.app import create_app
from srs.api.ranges import MAX_RANGES, ByteRange, RangeNotSatisfiable, parse_range
from srs.service.principal import Principal
from tests.integration.api.conftest import Api
from tests.unit.storage.factory import add_recording, wav_bytes

PREFIX = "/api/v1"
MB = 1024 * 1024
CHUNK = 64 * 1024


class RawResult:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.pulled = 0  # body bytes the app asked for


async def raw_post(
    app: Any, path: str, headers: Iterable[tuple[str, str]], total: int, chunk: int = CHUNK
) -> RawResult:
    """POST ``total`` body bytes in ``chunk`` pieces; count what the app reads before it answers."""
    result = RawResult()
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent >= total:
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}
        piece = min(chunk, total - sent)
        sent += piece
        result.pulled += piece
        return {"type": "http.request", "body": b" " * piece, "more_body": sent < total}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 40000), "server": ("srs.test", 80),
    }
    await app(scope, receive, send)
    return result


def _error(response: Any) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()
    return body["error"]


def _token_id(api: Api, token: str) -> str:
    principal = api.tokens.identify(token)
    assert isinstance(principal, Principal) and principal.token_id
    return principal.token_id


# ---- authentication before the body; the body cap ------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer srs_wrong", "read"])
def test_unauthorised_100_mb_post_is_refused_without_reading_the_body(api: Api, auth: str | None) -> None:
    headers = [("content-type", "application/json"), ("content-length", str(100 * MB))]
    if auth == "read":
        headers.append(("authorization", f"Bearer {api.read_token}"))
    elif auth is not None:
        headers.append(("authorization", auth))
    result = api.run(raw_post(api.app, f"{PREFIX}/exports", headers, 100 * MB))
    assert result.status == (403 if auth == "read" else 401)
    assert result.pulled == 0, "the body was read before the caller was refused"
    assert result.headers["connection"] == "close"  # the unread rest is never received


def test_unauthorised_chunked_post_is_refused_without_reading(api: Api) -> None:
    headers = [("content-type", "application/json"), ("transfer-encoding", "chunked")]
    result = api.run(raw_post(api.app, f"{PREFIX}/recordings/X/hold", headers, 100 * MB))
    assert result.status == 401 and result.pulled == 0


def test_admin_body_past_the_cap_is_413_declared_lying_or_absent(api: Api) -> None:
    admin = ("authorization", f"Bearer {api.admin_token}")
    declared = api.run(raw_post(api.app, f"{PREFIX}/exports", [admin, ("content-length", str(100 * MB))],
                                100 * MB))
    assert declared.status == 413 and declared.pulled == 0
    # Content-Length says 10 bytes and 100 MB follow; then no Content-Length at all (chunked)
    for headers in ([admin, ("content-length", "10")], [admin, ("transfer-encoding", "chunked")]):
        result = api.run(raw_post(api.app, f"{PREFIX}/exports", headers, 100 * MB))
        assert result.status == 413, headers
        assert result.pulled <= MB + CHUNK, f"read {result.pulled} bytes past a 1 MiB cap"
        assert b"payload_too_large" in result.body


def test_configured_cap_and_a_small_body_still_works(api: Api) -> None:
    small = create_app(api.service, api.tokens, api.exports, max_body_bytes=2048)
    client_body = b'{"ids": []}'
    admin = ("authorization", f"Bearer {api.admin_token}")
    ok = api.run(raw_post(small, f"{PREFIX}/exports", [admin, ("content-length", str(len(client_body)))],
                          len(client_body), chunk=len(client_body)))
    assert ok.status == 400  # read and parsed (an empty id list), not refused for its size
    big = api.run(raw_post(small, f"{PREFIX}/exports", [admin, ("content-length", "4096")], 4096))
    assert big.status == 413 and big.pulled == 0
    response = api.request("POST", f"{PREFIX}/exports", token="admin", json={"ids": ["A" * 26] * 100_000})
    assert response.status_code == 413 and _error(response)["code"] == "payload_too_large"


def test_bad_content_length_is_400(api: Api) -> None:
    admin = ("authorization", f"Bearer {api.admin_token}")
    for value in ("-1", "1e9", "٣", "9" * 30):
        result = api.run(raw_post(api.app, f"{PREFIX}/exports", [admin, ("content-length", value)], 10))
        assert result.status == 400 and result.pulled == 0, value


# ---- Range --------------------------------------------------------------------------------------


def _wire(header: str) -> bytes:
    """Header bytes as a client sends them: servers decode headers as Latin-1, so "²" (0xB2) arrives
    as itself and passes ``str.isdigit``."""
    try:
        return header.encode("latin-1")
    except UnicodeEncodeError:
        return header.encode()


@pytest.fixture
def audio(api: Api) -> tuple[str, bytes]:
    rid = add_recording(api.index, api.layout)
    return rid, wav_bytes()


def test_range_attacks_never_500_nor_log_a_traceback(
    api: Api, audio: tuple[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    rid, data = audio
    size = len(data)
    url = f"{PREFIX}/recordings/{rid}/file"
    huge = "9" * 4301  # int() refuses more than 4,300 digits: this was the 500
    long = "9" * 40  # past the 18-digit cap, inside the header length cap
    cases: list[tuple[str, int, bytes | None]] = [
        (f"bytes={huge}-", 200, data),  # a header past 1,024 characters is ignored
        (f"bytes=0-{huge}", 200, data),
        (f"bytes={long}-", 416, None),  # starts past any file
        (f"bytes={long}0-{long}", 416, None),
        (f"bytes=0-{long}", 206, data),  # an end past the file is the end of the file
        (f"bytes=-{long}", 206, data),  # a suffix longer than the file is the file
        (f"bytes={long}-5", 200, data),  # last < first: invalid, ignored
        ("bytes=²-5", 200, data),  # "²".isdigit() is True; int("²") raised
        ("bytes=٣-5", 200, data),  # Arabic-Indic three: int() accepted it as 3
        ("bytes=0-٣", 200, data),
        ("bytes=0x10-20", 200, data),
        ("bytes=--5", 200, data),
        ("bytes=" + ",".join(["0-"] * 32), 416, None),  # 32 overlapping ranges: too many
        ("bytes=" + ",".join(["0-"] * MAX_RANGES), 206, data),  # merged into one
        ("bytes=0-99,50-149,150-199", 206, data[:200]),  # overlapping and adjacent: merged
    ]
    with caplog.at_level(logging.DEBUG):
        for header, status, expected in cases:
            response = api.request("GET", url, headers={"Range": _wire(header)})
            assert response.status_code == status, (header[:40], response.status_code, response.text[:200])
            if expected is not None:
                assert response.content == expected, header[:40]
            assert len(response.content) <= size + 1024
            if status == 416:
                assert response.headers["content-range"] == f"bytes */{size}"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text[:2000]


def test_many_small_ranges_stay_bounded(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    header = "bytes=" + ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(MAX_RANGES))
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges")
    for i in range(MAX_RANGES):
        assert data[i * 100:i * 100 + 10] in response.content
    assert len(response.content) < MAX_RANGES * (10 + 200)


def test_parse_range_unit() -> None:
    assert parse_range("bytes=0-0,0-0,1-1", 10) == [ByteRange(0, 1)]
    assert parse_range("bytes=5-,0-2", 10) == [ByteRange(0, 2), ByteRange(5, 9)]
    assert parse_range("BYTES = 1 - 2", 10) is None or parse_range("BYTES = 1 - 2", 10) == [ByteRange(1, 2)]
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=" + "0-1," * 600, 10) is None  # past the header length cap: ignored
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1)), 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)


# ---- signed links die with their token -----------------------------------------------------------


def _make_link(api: Api, rid: str, token: str) -> tuple[str, str]:
    response = api.request("POST", f"{PREFIX}/recordings/{rid}/link", token=f"Bearer {token}")
    assert response.status_code == 200, response.text
    body = response.json()
    url = urlsplit(body["link"])
    return f"{url.path}?{url.query}", body["id"]


def test_revoked_token_kills_its_links(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    plain, record = api.tokens.create("read", "temp")
    link, _ = _make_link(api, rid, plain)
    other_link, _ = _make_link(api, rid, api.read_token)
    assert parse_qs(urlsplit(link).query)["tok"] == [record["id"]]
    assert api.request("GET", link, token=None).content == data
    api.tokens.revoke(record["id"])
    refused = api.request("GET", link, token=None)
    assert refused.status_code == 403 and _error(refused)["code"] == "link_revoked"
    assert api.request("HEAD", link, token=None).status_code == 403
    assert api.request("GET", other_link, token=None).status_code == 200  # another token's link lives


def test_deleted_token_and_explicit_revoke_kill_links(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    plain, record = api.tokens.create("read", "gone")
    link, _ = _make_link(api, rid, plain)
    with api.index.db.write() as conn:
        conn.execute("DELETE FROM api_tokens WHERE id = ?", (record["id"],))
    assert _error(api.request("GET", link, token=None))["code"] == "link_revoked"
    link, link_id = _make_link(api, rid, api.read_token)
    assert api.request("POST", f"{PREFIX}/links/{link_id}/revoke", token="read").status_code == 403
    assert api.request("GET", link, token=None).status_code == 200
    assert api.request("POST", f"{PREFIX}/links/{link_id}/revoke", token="admin").status_code == 204
    assert _error(api.request("GET", link, token=None))["code"] == "link_revoked"
    assert api.request("POST", f"{PREFIX}/links/{link_id}/revoke", token="admin").status_code == 404


def test_link_without_link_id_or_with_a_swapped_token_is_forged(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    link, _ = _make_link(api, rid, api.read_token)
    query = parse_qs(urlsplit(link).query)
    old_style = f"{PREFIX}/links/{rid}?exp={query['exp'][0]}&sig={query['sig'][0]}"
    assert _error(api.request("GET", old_style, token=None))["code"] == "bad_signature"
    admin_id = _token_id(api, api.admin_token)
    swapped = link.replace(f"tok={query['tok'][0]}", f"tok={admin_id}")
    assert _error(api.request("GET", swapped, token=None))["code"] == "bad_signature"


# ---- the audit trail ------------------------------------------------------------------------------


def _finish_export(api: Api, ids: list[str]) -> str:
    created = api.request("POST", f"{PREFIX}/exports", token="admin", json={"ids": ids})
    assert created.status_code == 202, created.text
    export_id: str = created.json()["id"]
    api.run(api.exports.wait(export_id))
    return export_id


def test_every_read_of_audio_and_admin_action_is_audited(api: Api) -> None:
    rid = add_recording(api.index, api.layout, seed=1)
    doomed = add_recording(api.index, api.layout, seed=2, call_recording_id="B")
    url = f"{PREFIX}/recordings/{rid}/file"
    assert api.request("GET", url).status_code == 200
    assert api.request("HEAD", url).status_code == 200
    assert api.request("GET", url, headers={"Range": "bytes=0-9"}).status_code == 206
    link, link_id = _make_link(api, rid, api.read_token)
    api.clock.now += 1
    assert api.request("GET", link, token=None).status_code == 200
    export_id = _finish_export(api, [rid])
    assert api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin").status_code == 200
    api.clock.now += 1
    assert api.request("DELETE", f"{PREFIX}/recordings/{doomed}", token="admin").status_code == 204

    reader_id, admin_id = _token_id(api, api.read_token), _token_id(api, api.admin_token)

    def audit(query: str = "", token: str = "admin") -> Any:
        response = api.request("GET", f"{PREFIX}/audit{query}", token=token)
        assert response.status_code == 200, response.text
        return response.json()

    everything = audit()["items"]
    actions = [item["action"] for item in reversed(everything)]
    assert actions == ["download", "head", "download", "link_create", "link_use", "export_create",
                       "export_download", "delete"], actions
    assert all(item["client"] == "127.0.0.1" for item in everything)
    by_reader = audit(f"?token={reader_id}")["items"]
    assert {i["action"] for i in by_reader} == {"download", "head", "link_create", "link_use"}
    (use,) = audit("?action=link_use")["items"]
    assert use["recording_id"] == rid and use["token_id"] == reader_id
    assert use["actor"] == f"signed link {link_id} of token {reader_id}"
    ranged = [i for i in by_reader if i["detail"].get("range")]
    assert [(i["detail"]["range"], i["detail"]["status"]) for i in ranged] == [("bytes=0-9", 206)]
    (deletion,) = audit(f"?recording_id={doomed}")["items"]
    assert deletion["action"] == "delete" and deletion["token_id"] == admin_id
    exported = audit(f"?export_id={export_id}")["items"]
    assert {i["action"] for i in exported} == {"export_create", "export_download"}
    assert audit(f"?since={api.clock.now}")["items"][0]["action"] == "delete"
    early = [i["action"] for i in audit(f"?until={api.clock.now - 1.5}")["items"]]
    assert early == ["link_create", "download", "head", "download"]
    page = audit("?max=3&page=2")
    assert page["pagination"] == {"pages": 3, "total": 8, "current": 2, "max": 3}
    assert [i["id"] for i in page["items"]] == [i["id"] for i in everything[3:6]]
    refused = api.request("GET", f"{PREFIX}/audit", token="read")
    assert refused.status_code == 403
    assert api.request("GET", f"{PREFIX}/audit", token=None).status_code == 401
    assert api.request("GET", f"{PREFIX}/audit?action=nonsense", token="admin").status_code == 400
    assert api.request("GET", f"{PREFIX}/audit?since=yesterday", token="admin").status_code == 400


def test_audit_migration_keeps_old_rows(api: Api) -> None:
    with api.index.db.read() as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        # the hardening migration's columns exist on either engine (no rows needed to prove it)
        assert conn.execute("SELECT token_id, export_id, client FROM audit_log WHERE 1 = 0").fetchall() == []
    assert version >= 5


# ---- exports die with their recordings and their TTL ------------------------------------------------


def test_export_is_gone_after_its_recording_is_deleted(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    export_id = _finish_export(api, [rid])
    archive = api.layout.export_path(export_id, "tar.gz")
    assert api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin").status_code == 200
    assert api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin").status_code == 204
    gone = api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin")
    assert gone.status_code == 410, gone.text
    assert not archive.exists()
    status = api.request("GET", f"{PREFIX}/exports/{export_id}", token="admin").json()
    assert status["state"] == "purged" and "file" not in status["links"]
    purge = api.index.admin.audit_entries()[-1]
    assert purge["action"] == "export_purge" and purge["export_id"] == export_id


def test_export_is_gone_after_its_ttl_and_swept_from_disk(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    export_id = _finish_export(api, [rid])
    archive = api.layout.export_path(export_id, "tar.gz")
    status = api.request("GET", f"{PREFIX}/exports/{export_id}", token="admin").json()
    assert status["expires_at"] is not None
    api.clock.now += api.service.export_ttl_s - 1
    assert api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin").status_code == 200
    assert api.service.purge_expired_exports() == []
    api.clock.now += 1
    assert api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin").status_code == 410
    assert api.service.purge_expired_exports() == [export_id]
    assert not archive.exists()
    assert api.request("GET", f"{PREFIX}/exports/{export_id}", token="admin").json()["state"] == "expired"


def test_export_archive_is_private_whatever_the_umask(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    old = os.umask(0o022)
    try:
        export_id = _finish_export(api, [rid])
    finally:
        os.umask(old)
    mode = api.layout.export_path(export_id, "tar.gz").stat().st_mode & 0o777
    assert mode & 0o027 == 0, oct(mode)


def test_parse_range_never_raises_else_and_never_amplifies() -> None:
    """Random headers built from the characters that matter: only RangeNotSatisfiable escapes, and
    the ranges given back are disjoint, inside the file, and at most MAX_RANGES."""
    rng = random.Random(8)
    alphabet = ["0", "1", "9", "-", ",", " ", "=", "²", "٣", "x", "9" * 25]
    for _ in range(5000):
        size = rng.choice([0, 1, 10, 48_000])
        header = "bytes=" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        try:
            ranges = parse_range(header, size)
        except RangeNotSatisfiable:
            continue
        if ranges is None:
            continue
        assert 1 <= len(ranges) <= MAX_RANGES
        assert all(0 <= r.start <= r.end < size for r in ranges), (header, ranges)
        assert all(a.end + 1 < b.start for a, b in itertools.pairwise(ranges)), (header, ranges)
        assert sum(r.length for r in ranges) <= size


def test_export_is_purged_when_retention_deletes_its_recording(api: Api) -> None:
    rid = add_recording(api.index, api.layout)  # started at T0, the clock's "now"
    kept = add_recording(api.index, api.layout, seed=2, call_recording_id="K")
    api.index.set_legal_hold(kept, True)
    export_id = _finish_export(api, [rid, kept])
    archive = api.layout.export_path(export_id, "tar.gz")
    assert archive.exists()
    api.clock.now += 3 * 86_400
    assert api.service.sweep(api.clock.now, 1.0) == [rid]
    assert not archive.exists()
    assert api.request("GET", f"{PREFIX}/exports/{export_id}/file", token="admin").status_code == 410
    actions = [(e["action"], e["actor"]) for e in api.index.admin.audit_entries()[-2:]]
    assert actions == [("retention_delete", "retention"), ("export_purge", "retention")]
