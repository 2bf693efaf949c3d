"""The SIPp scenarios and captures themselves, checked against a stand-in recorder.

These run without the daemon: they prove that each scenario completes its flow, that the
captures reach both answered RTP ports with the right payload type, and that the offer carries
what a SIPREC recorder needs.  A failure here is a broken test tool, not a recorder bug.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import SippResult, StubSrs

pytestmark = pytest.mark.e2e

RunSipp = Callable[..., SippResult]


def _packets(summary: dict[str, object]) -> dict[str, int]:
    packets = summary["rtp_packets"]
    assert isinstance(packets, dict)
    return {str(k): int(v) for k, v in packets.items()}


def test_basic_offer_is_a_siprec_offer_and_both_streams_flow(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_basic.xml",
        "-set",
        "crid",
        "SELF-1",
        "-d",
        "2000",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    invite = result.find(sent=True, method="INVITE")
    assert invite.header("Require") == "siprec"
    assert ";+sip.src" in (invite.header("Contact") or "")
    assert (invite.header("Content-Type") or "").startswith("multipart/mixed;boundary=")
    body = invite.body
    assert body.count("m=audio") == 2 and "a=label:1" in body and "a=label:2" in body
    assert "Content-Disposition: recording-session" in body
    assert "<ac:call-recording-id>SELF-1</ac:call-recording-id>" in body
    assert _packets(summary) == {"0": 100, "2": 100}
    assert summary["requests"] == {"INVITE": 1, "ACK": 1, "BYE": 1}


def test_basic_over_tcp(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_basic.xml",
        "-t",
        "t1",
        "-set",
        "crid",
        "SELF-2",
        "-d",
        "2000",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    assert "SIP/2.0/TCP" in (result.find(sent=True, method="INVITE").header("Via") or "")
    assert _packets(summary) == {"0": 100, "2": 100}


def test_hold_resume_sends_inactive_then_sendonly(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_hold_resume.xml",
        "-set",
        "crid",
        "SELF-3",
        "-d",
        "2000",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"], "two_tone_pcmu_b.pcap": pcaps["pcmu_2s_b"]},
    )
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    hold = result.find(sent=True, method="INVITE", cseq=(2, "INVITE")).body
    resume = result.find(sent=True, method="INVITE", cseq=(3, "INVITE")).body
    assert hold.count("a=inactive") == 2 and resume.count("a=sendonly") == 2
    assert _packets(summary) == {"0": 200, "2": 200}


def test_codec_change_switches_payload_type(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_codec_change.xml",
        "-set",
        "crid",
        "SELF-4",
        "-d",
        "2000",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"], "two_tone_pcma.pcap": pcaps["pcma_2s"]},
    )
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    assert summary["rtp_payload_types"] == {"0": [0, 8], "2": [0, 8]}


def test_metadata_update_carries_partial_metadata(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_metadata_update.xml",
        "-set",
        "crid",
        "SELF-5",
        "-d",
        "1500",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    stub.stop()
    assert result.returncode == 0, result.describe()
    update = result.find(sent=True, method="INVITE", cseq=(2, "INVITE")).body
    assert "<datamode>partial</datamode>" in update and 'aor="sip:carol@example.org"' in update


def test_metadata_update_via_update_carries_only_metadata(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    result = run_sipp(
        "siprec_metadata_update_via_update.xml",
        "-set",
        "crid",
        "SELF-7",
        "-d",
        "1500",
        target=stub.sip_target,
        pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    update = result.find(sent=True, method="UPDATE", cseq=(2, "UPDATE"))
    assert update.header("Content-Type") == "application/rs-metadata+xml"
    assert update.header("Content-Disposition") == "recording-session"
    assert "<datamode>partial</datamode>" in update.body and "m=audio" not in update.body
    assert summary["requests"] == {"INVITE": 1, "ACK": 1, "UPDATE": 1, "BYE": 1}


def test_cancel_gets_487(start_stub: Callable[..., StubSrs], run_sipp: RunSipp) -> None:
    stub = start_stub(answer_delay_ms=1500)
    result = run_sipp("siprec_cancel.xml", "-set", "crid", "SELF-6", target=stub.sip_target)
    summary = stub.stop()
    assert result.returncode == 0, result.describe()
    result.find(sent=False, status=487, cseq=(1, "INVITE"))
    assert summary["requests"] == {"INVITE": 1, "CANCEL": 1, "ACK": 1}


def test_options_and_load(
    start_stub: Callable[..., StubSrs], run_sipp: RunSipp, pcaps: dict[str, Path]
) -> None:
    stub = start_stub()
    options = run_sipp("options_ping.xml", "-m", "3", target=stub.sip_target)
    load = run_sipp(
        "siprec_load.xml",
        "-set",
        "crid",
        "SELF-LOAD",
        "-d",
        "1000",
        "-r",
        "10",
        "-l",
        "5",
        "-m",
        "10",
        target=stub.sip_target,
        pcaps={"load_pcmu.pcap": pcaps["load_1s"]},
    )
    summary = stub.stop()
    assert options.returncode == 0, options.describe()
    assert load.returncode == 0, load.describe()
    assert summary["requests"] == {"OPTIONS": 3, "INVITE": 10, "ACK": 10, "BYE": 10}
    crids = {
        m.body.split("<ac:call-recording-id>")[1].split("<")[0]
        for m in load.messages
        if m.sent and m.method == "INVITE"
    }
    assert len(crids) == 10
    assert sum(_packets(summary).values()) == 10 * 2 * 50
