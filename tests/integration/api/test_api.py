"""The HTTP API against the real app, service and SQLite index, through an in-process ASGI client."""

from __future__ import annotations

import io
import json
import tarfile
from urllib.parse import parse_qs, urlsplit

import pytest

from srs.storage.records import State
from tests.integration.api.conftest import Api
from tests.unit.storage.factory import T0, add_recording, wav_bytes

PREFIX = "/api/v1"


def _error(response: object) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()  # type: ignore[attr-defined]
    return body["error"]


# ---- auth ----------------------------------------------------------------------------------------


def test_healthz_needs_no_token(api: Api) -> None:
    response = api.request("GET", "/healthz", token=None)
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer srs_wrong", "Basic dXNlcjpwYXNz", "srs_x"])
@pytest.mark.parametrize("path", [f"{PREFIX}/recordings", "/metrics", f"{PREFIX}/recordings/X/file"])
def test_missing_or_invalid_token_is_401(api: Api, header: str | None, path: str) -> None:
    response = api.request("GET", path, token=header)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert _error(response)["code"] == "unauthorized"


def test_revoked_token_is_refused_at_once(api: Api) -> None:
    plain, record = api.tokens.create("read")
    assert api.request("GET", f"{PREFIX}/recordings", token=f"Bearer {plain}").status_code == 200
    api.tokens.revoke(record["id"])
    assert api.request("GET", f"{PREFIX}/recordings", token=f"Bearer {plain}").status_code == 401


def test_read_token_cannot_do_admin_things(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    for method, path in [
        ("DELETE", f"{PREFIX}/recordings/{rid}"),
        ("POST", f"{PREFIX}/recordings/{rid}/hold"),
        ("POST", f"{PREFIX}/exports"),
    ]:
        response = api.request(method, path, json={"ids": [rid]} if method == "POST" else None)
        assert response.status_code == 403, path
        assert _error(response)["code"] == "forbidden"
    assert api.index.get(rid) is not None


def test_openapi_is_served(api: Api) -> None:
    response = api.request("GET", "/openapi.json", token=None)
    assert response.status_code == 200
    assert f"{PREFIX}/recordings/{{recording_id}}/file" in response.json()["paths"]


# ---- listing and details -------------------------------------------------------------------------


def test_list_with_filters_and_pagination(api: Api) -> None:
    a = add_recording(
        api.index,
        api.layout,
        started_at=T0,
        call_recording_id="A",
        duration_ms=5000,
        extensions={"queue": "sales"},
    )
    b = add_recording(api.index, api.layout, started_at=T0 + 10, call_recording_id="B", duration_ms=120_000)
    c = add_recording(api.index, api.layout, started_at=T0 + 20, state=State.RECORDING, call_recording_id="C")
    body = api.request("GET", f"{PREFIX}/recordings").json()
    assert [i["id"] for i in body["items"]] == [c, b, a]
    assert body["pagination"] == {"pages": 1, "total": 3, "current": 1, "max": 50}

    def ids(query: str) -> list[str]:
        response = api.request("GET", f"{PREFIX}/recordings?{query}")
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert ids("state=recording") == [c]
    assert ids("call_recording_id=A") == [a]
    assert ids("min_duration=60") == [b]
    assert ids("max_duration=60") == [a]
    assert ids("ext.queue=sales") == [a]
    assert ids("extension=queue:sales") == [a]
    assert ids("extension=queue:support") == []
    assert ids("participant=5551230002") == [c, b, a]
    assert ids("start=2023-11-14T22:13:25Z") == [c, b]
    assert ids(f"end={T0 + 10}") == [a]
    assert ids("source=192.0.2.10:5060&sip_call_id=call-1@sbc&order=oldest") == [a, b, c]
    page = api.request("GET", f"{PREFIX}/recordings?max=2&page=2").json()
    assert [i["id"] for i in page["items"]] == [a]
    assert page["pagination"] == {"pages": 2, "total": 3, "current": 2, "max": 2}


@pytest.mark.parametrize(
    "query",
    ["state=paused", "page=0", "max=0", "max=abc", "start=tomorrow", "extension=novalue", "min_duration=-1"],
)
def test_bad_list_queries_are_400(api: Api, query: str) -> None:
    response = api.request("GET", f"{PREFIX}/recordings?{query}")
    assert response.status_code == 400
    assert _error(response)["code"] == "bad_request"


def test_show_and_unknown(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    body = api.request("GET", f"{PREFIX}/recordings/{rid}").json()
    assert body["id"] == rid and body["file"]["name"] == f"{rid}.wav"
    for wanted in ["01HZX3Y5Q8K2M4N6P8R0S2T4V6", "..%2F..%2Fetc%2Fpasswd", "nope"]:
        response = api.request("GET", f"{PREFIX}/recordings/{wanted}")
        assert response.status_code == 404
        assert _error(response)["code"] == "not_found"


def test_metadata_versions(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    api.index.add_metadata_version(rid, T0 + 1, b"<recording>v2</recording>")
    body = api.request("GET", f"{PREFIX}/recordings/{rid}/metadata").json()
    assert [v["seq"] for v in body["versions"]] == [1, 2]
    raw = api.request("GET", f"{PREFIX}/recordings/{rid}/metadata?seq=2")
    assert raw.content == b"<recording>v2</recording>"
    assert raw.headers["content-type"].startswith("application/rs-metadata+xml")
    assert api.request("GET", f"{PREFIX}/recordings/{rid}/metadata?seq=9").status_code == 404


# ---- file serving --------------------------------------------------------------------------------


@pytest.fixture
def audio(api: Api) -> tuple[str, bytes]:
    data = wav_bytes(samples=50_000, seed=7)  # 100 044 bytes: several read chunks
    return add_recording(api.index, api.layout, audio=data), data


def test_full_file(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{api.index.get(rid)["sha256"]}"'  # type: ignore[index]


def test_head(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    response = api.request("HEAD", f"{PREFIX}/recordings/{rid}/file")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(data))
    ranged = api.request("HEAD", f"{PREFIX}/recordings/{rid}/file", headers={"Range": "bytes=0-43"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "44"


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-43", 0, 43),
        ("bytes=0-0", 0, 0),
        ("bytes=-100", -100, None),
        ("bytes=99990-", 99990, None),
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=100000-999999", 100000, None),
        ("bytes=-999999", 0, None),
    ],
)
def test_range_is_byte_exact(
    api: Api, audio: tuple[str, bytes], spec: str, start: int, end: int | None
) -> None:
    rid, data = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": spec})
    expected = data[start:] if end is None else data[start : end + 1]
    first = len(data) + start if start < 0 else start
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert response.headers["content-length"] == str(len(expected))


@pytest.mark.parametrize("spec", ["bytes=100044-", "bytes=200000-300000", "bytes=-0"])
def test_unsatisfiable_range_is_416(api: Api, audio: tuple[str, bytes], spec: str) -> None:
    rid, data = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": spec})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("spec", ["bytes=5-2", "items=0-1", "bytes=abc", "bytes=1-2-3", "0-10"])
def test_malformed_range_is_ignored(api: Api, audio: tuple[str, bytes], spec: str) -> None:
    rid, data = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": spec})
    assert response.status_code == 200 and response.content == data


def test_multi_range(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": "bytes=0-9,-5"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1]
    assert int(response.headers["content-length"]) == len(response.content)
    parts = response.content.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    first, second = (part.split(b"\r\n\r\n", 1) for part in parts[1:3])
    assert b"Content-Range: bytes 0-9/100044" in first[0] and first[1] == data[:10] + b"\r\n"
    assert b"Content-Range: bytes 100039-100043/100044" in second[0] and second[1] == data[-5:] + b"\r\n"


def test_etag_conditionals(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    etag = api.request("HEAD", f"{PREFIX}/recordings/{rid}/file").headers["etag"]
    not_modified = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    changed = api.request("GET", f"{PREFIX}/recordings/{rid}/file", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    same = api.request(
        "GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": "bytes=0-3", "If-Range": etag}
    )
    assert same.status_code == 206 and same.content == data[:4]
    stale = api.request(
        "GET", f"{PREFIX}/recordings/{rid}/file", headers={"Range": "bytes=0-3", "If-Range": '"x"'}
    )
    assert stale.status_code == 200 and stale.content == data


@pytest.mark.parametrize("state", [State.STARTING, State.RECORDING, State.STOPPING, State.FAILED])
def test_file_of_unavailable_recording_is_404_with_state(api: Api, state: State) -> None:
    rid = add_recording(api.index, api.layout, state=state)
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file")
    assert response.status_code == 404
    assert _error(response) == {
        "code": "not_available",
        "message": _error(response)["message"],
        "state": state.value,
    }


def test_download_disposition(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    response = api.request("GET", f"{PREFIX}/recordings/{rid}/file?download=true")
    assert response.headers["content-disposition"] == f'attachment; filename="{rid}.wav"'


# ---- signed links --------------------------------------------------------------------------------


def _link(api: Api, rid: str, query: str = "") -> dict[str, str]:
    response = api.request("POST", f"{PREFIX}/recordings/{rid}/link{query}")
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_signed_link_serves_without_token(api: Api, audio: tuple[str, bytes]) -> None:
    rid, data = audio
    body = _link(api, rid)
    assert body["expires_at"] == "2023-11-14T22:18:20.000Z"  # default 5 minutes
    url = urlsplit(body["link"])
    assert url.netloc == "srs.test" and url.path == f"{PREFIX}/links/{rid}"
    assert set(parse_qs(url.query)) == {"exp", "lid", "tok", "sig"}
    response = api.request("GET", f"{url.path}?{url.query}", token=None)
    assert response.status_code == 200 and response.content == data
    ranged = api.request("GET", f"{url.path}?{url.query}", token=None, headers={"Range": "bytes=-4"})
    assert ranged.status_code == 206 and ranged.content == data[-4:]


def test_signed_link_tampered_is_403(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    other = add_recording(api.index, api.layout, seed=9)
    url = urlsplit(_link(api, rid)["link"])
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    for query in [
        f"exp={int(params['exp']) + 60}&sig={params['sig']}",
        f"exp={params['exp']}&sig={'0' * 64}",
        f"exp={params['exp']}",
        "",
    ]:
        response = api.request("GET", f"{url.path}?{query}", token=None)
        assert response.status_code == 403, query
        assert _error(response)["code"] == "bad_signature"
    swapped = api.request("GET", f"{PREFIX}/links/{other}?{url.query}", token=None)
    assert swapped.status_code == 403


def test_signed_link_expired_is_410(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    url = urlsplit(_link(api, rid, "?validity=1")["link"])
    api.clock.now += 61
    response = api.request("GET", f"{url.path}?{url.query}", token=None)
    assert response.status_code == 410
    assert _error(response)["code"] == "link_expired"


def test_link_validity_limits_and_redirect(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    assert api.request("POST", f"{PREFIX}/recordings/{rid}/link?validity=61").status_code == 400
    assert api.request("POST", f"{PREFIX}/recordings/{rid}/link?validity=0").status_code == 400
    redirect = api.request("POST", f"{PREFIX}/recordings/{rid}/link?download=1")
    assert redirect.status_code == 303
    assert redirect.headers["location"].startswith(f"http://srs.test{PREFIX}/links/{rid}?exp=")
    running = add_recording(api.index, api.layout, state=State.RECORDING)
    assert api.request("POST", f"{PREFIX}/recordings/{running}/link").status_code == 404


# ---- admin operations ----------------------------------------------------------------------------


def test_hold_and_delete(api: Api, audio: tuple[str, bytes]) -> None:
    rid, _ = audio
    held = api.request("POST", f"{PREFIX}/recordings/{rid}/hold", token="admin")
    assert held.status_code == 200 and held.json()["legal_hold"] is True
    refused = api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin")
    assert refused.status_code == 409 and _error(refused)["code"] == "legal_hold"
    api.request("POST", f"{PREFIX}/recordings/{rid}/hold?on=false", token="admin")
    deleted = api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin")
    assert deleted.status_code == 204
    assert api.request("GET", f"{PREFIX}/recordings/{rid}").status_code == 404
    assert [e["action"] for e in api.index.admin.audit_entries(rid)] == ["hold", "release", "delete"]
    last = api.index.admin.audit_entries(rid)[-1]
    assert last["actor"].startswith("token ") and last["actor"].endswith("(admin)")
    assert last["token_id"] == api.tokens.identify(api.admin_token).token_id  # type: ignore[union-attr]


def test_export_job(api: Api) -> None:
    first = add_recording(api.index, api.layout, call_recording_id="A", seed=1)
    add_recording(api.index, api.layout, call_recording_id="B", seed=2)
    created = api.request(
        "POST",
        f"{PREFIX}/exports",
        token="admin",
        json={"filter": {"call_recording_id": "A"}, "format": "tar.gz"},
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["location"] == f"{PREFIX}/exports/{job['id']}"
    api.run(api.exports.wait(job["id"]))
    status = api.request("GET", f"{PREFIX}/exports/{job['id']}", token="admin").json()
    assert status["state"] == "done" and status["count"] == 1
    archive = api.request("GET", status["links"]["file"], token="admin")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["index.json", f"recordings/{first}.wav"]
        member = tar.extractfile(f"recordings/{first}.wav")
        assert member is not None and member.read() == wav_bytes(seed=1)
        index_file = tar.extractfile("index.json")
        assert index_file is not None and json.load(index_file)["recordings"][0]["id"] == first


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": ["x"], "filter": {}},
        {"filter": {"colour": "red"}},
        {"ids": ["../../etc"]},
        {"ids": [], "format": "rar"},
    ],
)
def test_bad_export_requests(api: Api, body: dict[str, object]) -> None:
    response = api.request("POST", f"{PREFIX}/exports", token="admin", json=body)
    assert response.status_code == 400, response.text
    assert _error(response)["code"] == "bad_request"


def test_unknown_export_is_404(api: Api) -> None:
    assert (
        api.request("GET", f"{PREFIX}/exports/01HZX3Y5Q8K2M4N6P8R0S2T4V6", token="admin").status_code == 404
    )
    assert api.request("GET", f"{PREFIX}/exports/nope/file", token="admin").status_code == 404


def test_metrics(api: Api) -> None:
    add_recording(api.index, api.layout)
    add_recording(api.index, api.layout, state=State.RECORDING)
    text = api.request("GET", "/metrics").text
    assert "srs_active_sessions 3.0" in text
    assert 'srs_recordings{state="available"} 1.0' in text
    assert 'srs_recordings{state="recording"} 1.0' in text
    assert "srs_disk_free_bytes" in text
    names = [
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    ]
    assert names and all(name.startswith("srs_") for name in names)


def test_unknown_route_is_json_404(api: Api) -> None:
    response = api.request("GET", f"{PREFIX}/nothing-here")
    assert response.status_code == 404 and _error(response)["code"] == "not_found"
