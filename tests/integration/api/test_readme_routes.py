"""README.md's route table is the API: every route listed, with the token it really asks for,
and the export bodies the README shows are the ones the API takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.routing import APIRoute

from tests.integration.api.conftest import Api
from tests.unit.storage.factory import add_recording
from tests.unit.test_readme import README, table_after


def _normalise(route: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", route.strip("`").split("?")[0])


def documented_routes() -> dict[tuple[str, str], str]:
    routes: dict[tuple[str, str], str] = {}
    for methods, route, token in table_after("### Routes and tokens"):
        for method in methods.split(","):
            routes[(method.strip(), _normalise(route))] = token
    return routes


def test_every_route_is_documented_and_nothing_else(api: Api) -> None:
    served = {("GET", "/openapi.json"), ("GET", "/docs")}
    for route in api.app.routes:
        if isinstance(route, APIRoute):
            served |= {(method, _normalise(route.path)) for method in route.methods}
    assert set(documented_routes()) == served


def test_each_route_asks_for_the_token_the_readme_says(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    for (method, route), token in documented_routes().items():
        url = route.replace("{}", rid)
        if token == "read (or a ticket)":
            # an event stream never ends: only the refusal is asked for here (tests of the feed
            # open it with a token and with a ticket)
            assert api.request(method, url, token=None).status_code == 401, (method, route)
            continue
        anonymous = api.request(method, url, token=None)
        as_read = api.request(method, url, token="read")
        if token == "none":
            assert anonymous.status_code not in (401, 403) or "links" in route, (method, route)
            assert anonymous.status_code != 401, (method, route)
        elif token == "read":
            assert anonymous.status_code == 401, (method, route)
            assert as_read.status_code not in (401, 403), (method, route, as_read.status_code)
        else:
            assert token == "admin", token
            assert anonymous.status_code == 401, (method, route)
            assert as_read.status_code == 403, (method, route)
            as_admin = api.request(method, url, token="admin")
            assert as_admin.status_code not in (401, 403), (method, route)


def test_the_openapi_document_is_public_as_documented(api: Api) -> None:
    assert api.request("GET", "/openapi.json", token=None).status_code == 200
    assert api.request("GET", "/docs", token=None).status_code == 200
    assert api.request("GET", "/redoc", token=None).status_code == 404


def test_the_export_bodies_in_the_readme_are_accepted(api: Api, tmp_path: Path) -> None:
    bodies = [json.loads(m) for m in re.findall(r"-d '(\{.*?\})' \S+/api/v1/exports", README)]
    assert len(bodies) >= 2
    add_recording(api.index, api.layout, call_recording_id="ACREC-123")
    for body in bodies:
        if "ids" in body:
            body["ids"] = [add_recording(api.index, api.layout)]
        response = api.request("POST", "/api/v1/exports", token="admin", json=body)
        assert response.status_code == 202, (body, response.text)
        assert response.headers["location"].startswith("/api/v1/exports/")


def test_download_1_is_a_redirect_to_the_signed_link_as_documented(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    assert "`download=1` answers\n  `303 See Other`" in README
    response = api.request("POST", f"/api/v1/recordings/{rid}/link?download=1")
    assert response.status_code == 303
    assert f"/api/v1/links/{rid}?" in response.headers["location"]
    plain = api.request("POST", f"/api/v1/recordings/{rid}/link")
    assert set(plain.json()) == {"id", "link", "path", "expires_at"}
