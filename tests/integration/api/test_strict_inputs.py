"""Unknown inputs are refused by name on every route, and a read token does not see server paths."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from tests.integration.api.conftest import Api
from tests.unit.storage.factory import add_recording

PREFIX = "/api/v1"


def test_a_misspelt_list_filter_is_refused_by_name(api: Api) -> None:
    add_recording(api.index, api.layout, call_recording_id="X")
    add_recording(api.index, api.layout, call_recording_id="Y")
    response = api.request("GET", f"{PREFIX}/recordings?callrecordingid=X")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request" and "'callrecordingid'" in error["message"]
    assert "call_recording_id" in error["message"]  # the expected names are listed
    good = api.request("GET", f"{PREFIX}/recordings?call_recording_id=X&ext.vendor:agent=42&page=1&max=5")
    assert good.status_code == 200 and len(good.json()["items"]) == 1


def test_every_route_refuses_an_unknown_query_parameter(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    # a signed link is its own credential: the guard refuses a link without a valid signature
    # before any parameter is looked at, so the link route is tried with a real one
    link = api.request("POST", f"{PREFIX}/recordings/{rid}/link", token="admin").json()["link"]
    signed = "?" + link.split("?", 1)[1] + "&"
    checked = 0
    for route in api.app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{recording_id}", rid).replace("{export_id}", "01HZX3Y5Q8K2M4N6P8R0S2T4V6")
        path = path.replace("{link_id}", "0" * 26)
        query = signed if route.path == f"{PREFIX}/links/{{recording_id}}" else "?"
        for method in route.methods:
            response = api.request(method, f"{path}{query}bogus_param=1", token="admin")
            assert response.status_code == 400, (method, route.path, response.status_code)
            if method != "HEAD":
                assert "'bogus_param'" in response.json()["error"]["message"]
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"filter": {"callrecordingid": "X"}}, "'callrecordingid'"),
        ({"filters": {"call_recording_id": "X"}}, "filters"),
        ({"ids": [], "fromat": "zip"}, "fromat"),
    ],
)
def test_export_bodies_with_unknown_keys_are_refused_by_name(api: Api, body: object, needle: str) -> None:
    response = api.request("POST", f"{PREFIX}/exports", token="admin", json=body)
    assert response.status_code == 400 and needle in response.json()["error"]["message"]


def test_export_filter_takes_extension_both_ways(api: Api) -> None:
    add_recording(api.index, api.layout, extensions={"queue": "sales"})
    for filt in ({"extension": ["queue:sales"]}, {"ext.queue": "sales"}):
        response = api.request("POST", f"{PREFIX}/exports", token="admin", json={"filter": filt})
        assert response.status_code == 202, response.text


def test_the_file_path_is_shown_to_admin_tokens_only(api: Api) -> None:
    rid = add_recording(api.index, api.layout)
    for url in (f"{PREFIX}/recordings/{rid}", f"{PREFIX}/recordings"):
        as_read = api.request("GET", url).json()
        as_admin = api.request("GET", url, token="admin").json()
        read_file = (as_read["items"][0] if "items" in as_read else as_read)["file"]
        admin_file = (as_admin["items"][0] if "items" in as_admin else as_admin)["file"]
        assert "path" not in read_file and read_file["size"] == admin_file["size"]
        assert admin_file["path"].startswith(str(api.layout.data_dir))
