from __future__ import annotations

import pytest

from srs.service.errors import BadRequest, NotFound
from srs.service.tokens import TokenService, hash_token, scope_allows
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout


def test_create_verify_revoke(index: RecordingIndex) -> None:
    tokens = TokenService(index)
    plain, record = tokens.create("read", "grafana")
    assert plain.startswith("srs_") and len(plain) > 40
    assert record["scope"] == "read" and record["name"] == "grafana" and record["revoked_at"] is None
    assert tokens.verify(plain) == "read"
    admin_plain, _ = tokens.create("admin")
    assert tokens.verify(admin_plain) == "admin"
    tokens.revoke(record["id"])
    assert tokens.verify(plain) is None
    assert tokens.verify(admin_plain) == "admin"
    listed = {r["id"]: r for r in tokens.list()}
    assert listed[record["id"]]["revoked_at"] is not None and "hash" not in listed[record["id"]]
    with pytest.raises(NotFound):
        tokens.revoke(record["id"])


@pytest.mark.parametrize("bad", [None, "", "srs_", "srs_nope", "Bearer srs_x", "x" * 500])
def test_unknown_tokens_are_refused(index: RecordingIndex, bad: str | None) -> None:
    TokenService(index).create("admin")
    assert TokenService(index).verify(bad) is None


def test_scope_is_validated(index: RecordingIndex) -> None:
    with pytest.raises(BadRequest):
        TokenService(index).create("root")


def test_only_a_hash_is_stored(index: RecordingIndex, layout: DataLayout) -> None:
    plain, _ = TokenService(index).create("admin")
    with index.db.read() as conn:
        stored = "\n".join(str(tuple(row)) for row in conn.execute("SELECT * FROM api_tokens")).encode()
    index.close()
    stored += b"".join(p.read_bytes() for p in layout.data_dir.glob("index.sqlite3*"))
    assert plain.encode() not in stored
    assert hash_token(plain).encode() in stored


def test_a_token_made_by_another_process_is_seen_at_once(index: RecordingIndex, index_target: str) -> None:
    daemon_view = TokenService(index)
    cli_index = RecordingIndex(index_target)
    plain, _ = TokenService(cli_index).create("read")
    cli_index.close()
    assert daemon_view.verify(plain) == "read"


def test_scope_allows() -> None:
    assert scope_allows("admin", "read") and scope_allows("admin", "admin") and scope_allows("read", "read")
    assert not scope_allows("read", "admin")
