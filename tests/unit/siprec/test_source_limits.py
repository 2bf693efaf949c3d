"""Per-call and per-source bounds in the user agent, sans-IO: m-lines per offer, sessions and
streams per source (taken at admission, given back when a call or a refused re-offer ends),
metadata versions and bytes per recording."""

from __future__ import annotations

from srs.sip.routing import Address, Transport
from srs.siprec.admission import SourceQuota
from srs.siprec.events import LimitReached, MetadataReceived, SessionOffered
from tests.unit.siprec.sbc import (
    PARTIAL_METADATA,
    TWO_STREAMS,
    Sbc,
    ack_for,
    audio,
    invite,
    make_ua,
    multipart,
    of_type,
    request,
    responses,
    sdp,
    statuses,
)


def test_quota_counts_per_host_and_forgets_hosts_without_calls() -> None:
    quota = SourceQuota(max_sessions=2, max_streams=3)
    assert quota.refusal("a", 1, 2) is None
    quota.take("a", 1, 2)
    assert quota.refusal("a", 1, 2) == "streams_per_source"
    assert quota.refusal("a", 1, 1) is None
    quota.take("a", 1, 1)
    assert quota.refusal("a", 1, 0) == "sessions_per_source"
    assert quota.refusal("b", 1, 3) is None
    quota.release("a", 2, 3)
    assert quota.held("a") == (0, 0) and quota._held == {}


def streams(count: int) -> tuple[str, bytes]:
    return multipart(("application/sdp", sdp(*(audio(40000 + 2 * i, str(i)) for i in range(count)))))


def test_too_many_m_lines_get_488_with_a_warning_and_no_offer() -> None:
    ua = make_ua(max_streams_per_call=4)
    events = Sbc(ua).send(invite(content=streams(5)), 0.0)
    assert statuses(events) == [100, 488]
    assert "5 media streams, at most 4 per call" in (responses(events)[1].headers.get("warning") or "")
    assert of_type(events, SessionOffered) == [] and ua.active_sessions == 0
    assert [e.limit for e in of_type(events, LimitReached)] == ["streams_per_call"]
    assert statuses(Sbc(ua).send(invite(content=streams(4), branch="z9hG4bKok"), 0.1)) == [100]


def call(ua: object, sbc: Sbc, n: int, now: float) -> list[int]:
    events = sbc.send(invite(call_id=f"c{n}", from_tag=f"t{n}", branch=f"z9hG4bKc{n}"), now)
    for offered in of_type(events, SessionOffered):
        events += ua.accept(offered.session_id, [30000 + 4 * n, 30002 + 4 * n], now)  # type: ignore[attr-defined]
    return statuses(events)


def test_sessions_per_source_refused_with_503_and_released_when_a_call_ends() -> None:
    ua = make_ua(max_sessions_per_source=2)
    a, b = Sbc(ua, source=Address("192.0.2.1", 5060)), Sbc(ua, source=Address("192.0.2.2", 5060))
    assert call(ua, a, 1, 0.0) == [100, 200] and call(ua, a, 2, 0.0) == [100, 200]
    refused = a.send(invite(call_id="c3", from_tag="t3", branch="z9hG4bKc3"), 0.0)
    assert statuses(refused) == [100, 503] and responses(refused)[1].headers.get("retry-after")
    assert call(ua, b, 4, 0.0) == [100, 200]
    ua.hangup_all(1.0, "x")
    assert ua.quota.held("192.0.2.1") == (0, 0)
    assert call(ua, a, 5, 2.0) == [100, 200]


def test_a_refused_re_offer_gives_its_streams_back() -> None:
    ua = make_ua(max_streams_per_source=3)
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    sbc.send(ack_for(ok), 0.1)
    to_tag = ok.to_addr.tag
    three = multipart(
        ("application/sdp", sdp(audio(40000, "1"), audio(40002, "2"), audio(40004, "3"), origin_version=2))
    )
    events = sbc.send(request("INVITE", cseq=2, to_tag=to_tag, content=three, branch="z9hG4bKre1"), 1.0)
    (reoffer,) = of_type(events, SessionOffered)
    assert reoffer.ports_needed == 1 and ua.quota.held(sbc.source.host) == (1, 3)
    ua.reject(offered.session_id, 503, "Service Unavailable", 1.1)
    assert ua.quota.held(sbc.source.host) == (1, 2)
    four = multipart(
        ("application/sdp", sdp(*(audio(40000 + 2 * i, str(i)) for i in range(4)), origin_version=3))
    )
    events = sbc.send(request("INVITE", cseq=3, to_tag=to_tag, content=four, branch="z9hG4bKre2"), 2.0)
    assert statuses(events)[-1] == 503 and ua.active_sessions == 1
    assert [e.limit for e in of_type(events, LimitReached)] == ["streams_per_source"]


def metadata_body() -> tuple[str, bytes]:
    return multipart(("application/sdp", TWO_STREAMS), ("application/rs-metadata+xml", PARTIAL_METADATA))


def test_metadata_versions_are_capped_info_refused_refresh_still_answered() -> None:
    ua = make_ua(max_metadata_versions=3)
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]  # the INVITE's metadata: version 1
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    sbc.send(ack_for(ok), 0.1)
    to_tag = ok.to_addr.tag
    info = ("application/rs-metadata+xml", PARTIAL_METADATA)
    taken = []
    for cseq in range(2, 6):
        events = sbc.send(
            request("INFO", cseq=cseq, to_tag=to_tag, content=info, branch=f"z9hG4bKi{cseq}"), 1.0
        )
        taken.append((statuses(events), len(of_type(events, MetadataReceived))))
    assert taken == [([200], 1), ([200], 1), ([403], 0), ([403], 0)]
    # a re-INVITE refresh carrying metadata is still answered; only the metadata is left out
    events = sbc.send(
        request("INVITE", cseq=6, to_tag=to_tag, content=metadata_body(), branch="z9hG4bKr"), 2.0
    )
    assert of_type(events, MetadataReceived) == []
    assert [e.limit for e in of_type(events, LimitReached)] == ["metadata_versions"]
    (reoffer,) = of_type(events, SessionOffered)
    assert statuses(ua.accept(reoffer.session_id, [], 2.0)) == [200] and ua.active_sessions == 1


def test_metadata_bytes_are_capped() -> None:
    ua = make_ua(max_metadata_bytes=2 * len(PARTIAL_METADATA) + 1000)
    sbc = Sbc(ua, transport=Transport.TCP)
    offered = of_type(sbc.send(invite(via_transport="TCP"), 0.0), SessionOffered)[0]
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    to_tag = ok.to_addr.tag
    info = ("application/rs-metadata+xml", PARTIAL_METADATA)
    got = [
        statuses(sbc.send(request("INFO", cseq=c, to_tag=to_tag, content=info, branch=f"z9hG4bKb{c}"), 1.0))
        for c in range(2, 6)
    ]
    assert got.count([200]) >= 1 and got[-1] == [403]
    refused = sbc.send(request("INFO", cseq=9, to_tag=to_tag, content=info, branch="z9hG4bKb9"), 1.0)
    assert [e.limit for e in of_type(refused, LimitReached)] == ["metadata_bytes"]
