"""Signed links: round trip, expiry, tampering, validity bounds."""

from __future__ import annotations

import pytest

from srs.service.errors import BadRequest, BadSignature, LinkExpired, NotAvailable
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import State
from tests.unit.conftest import FakeClock
from tests.unit.storage.factory import add_recording


def test_signed_link_round_trip_and_expiry(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, clock: FakeClock
) -> None:
    rid = add_recording(index, layout)
    path, expires_at = service.sign_link(rid, 300)
    assert expires_at == int(clock.now + 300)
    query = dict(part.split("=") for part in path.split("?", 1)[1].split("&"))
    assert path.startswith(f"/api/v1/links/{rid}?")
    assert "tok" not in query  # made by the CLI: tied to no token
    service.verify_link(rid, query["exp"], query["sig"], query["lid"])
    clock.now += 299
    service.verify_link(rid, query["exp"], query["sig"], query["lid"])
    clock.now += 1
    with pytest.raises(LinkExpired):
        service.verify_link(rid, query["exp"], query["sig"], query["lid"])


def test_signed_link_tampering(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, clock: FakeClock
) -> None:
    rid = add_recording(index, layout)
    other = add_recording(index, layout, seed=2)
    path, expires_at = service.sign_link(rid, 60)
    sig = path.rsplit("sig=", 1)[1]
    lid = path.split("lid=", 1)[1].split("&", 1)[0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    service.verify_link(rid, str(expires_at), sig, lid)
    for args in [
        (rid, str(expires_at + 1), sig, lid),
        (rid, str(expires_at), flipped, lid),
        (other, str(expires_at), sig, lid),
        (rid, "soon", sig, lid),
        (rid, str(expires_at), "", lid),
        ("../x", str(expires_at), sig, lid),
        (rid, str(expires_at), sig, ""),
        (rid, str(expires_at), sig, lid, lid),  # claims a token the signature does not cover
    ]:
        with pytest.raises(BadSignature):
            service.verify_link(*args)
    clock.now += 3600  # a forged link is "bad", never "expired": it learns nothing
    with pytest.raises(BadSignature):
        service.verify_link(rid, str(expires_at), flipped, lid)
    foreign = RecordingService(index, layout, b"another secret of enough length", clock)
    with pytest.raises(BadSignature):
        foreign.verify_link(rid, str(expires_at), sig, lid)


def test_link_validity_bounds(service: RecordingService, index: RecordingIndex, layout: DataLayout) -> None:
    rid = add_recording(index, layout)
    with pytest.raises(BadRequest):
        service.sign_link(rid, 0)
    with pytest.raises(BadRequest):
        service.sign_link(rid, service.max_link_validity_s + 1)
    unfinished = add_recording(index, layout, state=State.RECORDING)
    with pytest.raises(NotAvailable):
        service.sign_link(unfinished, 60)
