"""``python -m bench.overload``: what srs does with more calls than it admits.

Two runs, each against a fresh daemon (media in one worker), each recording verified afterwards
(index and WAV, as ``bench.loadgen.verify``):

* ``max_sessions``: ``[limits] max_sessions = M`` and 2·M calls offered at once.  Reports
  offered, accepted, refused with 503 (and any other failure); a raw INVITE sent while the daemon
  is full shows the 503's Retry-After; every accepted recording must be complete.
* ``loop_lag``: no session limit, but setups offered faster than the daemon's loop can take them
  (a SIPp burst of signalling-only calls well above the measured setup rate) while
  ``--background`` calls with RTP are already recording.  Reports whether the loop-lag shedding
  (``[limits] max_loop_lag_ms``) triggered, how many INVITEs it refused, the setup latency of the
  calls it answered, calls SIPp counted failed, and whether the recordings already running lost
  packets or were damaged.  ``--compare`` repeats the burst with the shedding off
  (``max_loop_lag_ms = 0``), the shape srs had without it.

Loopback only; bounded in time (about a minute per run).

    python -m bench.overload [--max-sessions 50] [--burst 800 --burst-rate 400] [--compare]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.__main__ import LOOPBACK, free_port, no_media_scenario
from bench.soak import Running, index_states, launch, parse_metric, udp_table, wait_quiet

REFUSED_503 = "INVITE answered 503"


def failure_kinds(result: loadgen.LoadResult) -> dict[str, int]:
    """``{"INVITE answered 503": 12, "INVITE timed out": 3, ...}`` from the load generator's failures."""
    kinds: dict[str, int] = {}
    for failure in result.failures:
        kind = failure.split(": ", 1)[-1]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _ms(values: list[float], q: float) -> float | None:
    value = loadgen.percentile(values, q)
    return round(value * 1000, 1) if value is not None else None


def outcome(result: loadgen.LoadResult, checked: dict[str, Any]) -> dict[str, Any]:
    kinds = failure_kinds(result)
    refused = kinds.get(REFUSED_503, 0)
    never_answered = kinds.get("INVITE timed out", 0)
    return {
        "offered": result.calls,
        "accepted": result.calls - refused - never_answered - _other_refusals(kinds),
        "refused_503": refused,
        "invite_timed_out": never_answered,
        "failure_kinds": kinds,
        "concurrent_peak": result.concurrent_peak,
        "setup_ms_p50": _ms(result.setup_times, 50),
        "setup_ms_p99": _ms(result.setup_times, 99),
        "setup_ms_max": _ms(result.setup_times, 100),
        "recordings_checked": checked["recordings_checked"],
        "recordings_bad": checked["recordings_bad"],
        "packets_sent": checked["packets_sent"],
        "packets_lost": checked["packets_lost"],
        "bad_examples": checked["examples"],
    }


def _other_refusals(kinds: dict[str, int]) -> int:
    return sum(n for k, n in kinds.items() if k.startswith("INVITE answered") and k != REFUSED_503)


# ------------------------------------------------------------------------------------------ raw probe


@dataclass(frozen=True)
class ProbeAnswer:
    status: int | None
    retry_after: str | None
    reason: str


def _sdp_and_metadata(crid: str, call_id: str) -> bytes:
    sdp = (
        "v=0\r\no=SBC 1 1 IN IP4 127.0.0.1\r\ns=SIPREC\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=label:1\r\n"
        "m=audio 11 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=label:2\r\n"
    )
    metadata = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>'
        f'<session session_id="probe"><sipSessionID>{call_id}</sipSessionID>'
        '<extensiondata xmlns:ac="http://AudioCodes">'
        f"<ac:call-recording-id>{crid}</ac:call-recording-id></extensiondata></session>"
        '<stream stream_id="st1" session_id="probe"><label>1</label></stream>'
        '<stream stream_id="st2" session_id="probe"><label>2</label></stream></recording>\r\n'
    )
    return (
        "--probe7866\r\nContent-Type: application/sdp\r\n\r\n" + sdp + "\r\n--probe7866\r\n"
        "Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
        + metadata
        + "--probe7866--\r\n"
    ).encode()


def probe_invite(target: str, crid: str, timeout: float = 4.0) -> ProbeAnswer:
    """One SIPREC INVITE over UDP; the final response's status and Retry-After.

    A probe that is accepted is ended at once (ACK, BYE) so it does not hold a session.
    """
    host, port = target.rsplit(":", 1)
    dest = (host, int(port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = f"{host}:{sock.getsockname()[1]}"
        call_id = f"probe-{uuid.uuid4().hex}"
        tag = uuid.uuid4().hex[:8]
        body = _sdp_and_metadata(crid, call_id)
        invite = (
            f"INVITE sip:srs@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{tag}inv;rport\r\n"
            f"From: <sip:sbc@{local}>;tag={tag}\r\nTo: <sip:srs@{target}>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:sbc@{local}>;+sip.src\r\nMax-Forwards: 70\r\n"
            "Require: siprec\r\nContent-Type: multipart/mixed;boundary=probe7866\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        deadline = time.monotonic() + timeout
        next_send = 0.0
        interval = 0.5
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_send:
                sock.sendto(invite, dest)
                next_send = now + interval
                interval *= 2
            sock.settimeout(max(0.01, min(next_send, deadline) - time.monotonic()))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            head = data.partition(b"\r\n\r\n")[0].decode(errors="replace")
            lines = head.split("\r\n")
            if call_id not in head or not lines[0].startswith("SIP/2.0 "):
                continue
            status = int(lines[0][8:11])
            if status < 200:
                continue
            headers = {ln.partition(":")[0].strip().lower(): ln.partition(":")[2].strip() for ln in lines[1:]}
            to = headers.get("to", "")
            # a non-2xx is acknowledged inside the INVITE transaction (same branch); a 2xx in a new one
            ends = (("ACK", 1, "inv"),) if status >= 300 else (("ACK", 1, "ack"), ("BYE", 2, "bye"))
            for method, cseq, branch in ends:
                sock.sendto(
                    (
                        f"{method} sip:srs@{target} SIP/2.0\r\n"
                        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{tag}{branch};rport\r\n"
                        f"From: <sip:sbc@{local}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
                        f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    ).encode(),
                    dest,
                )
            return ProbeAnswer(status, headers.get("retry-after"), lines[0][12:])
    return ProbeAnswer(None, None, "no final response")


# ------------------------------------------------------------------------------------------ runs


class LoadThread(threading.Thread):
    """``loadgen.run_load`` in the background; its result (or error) kept for the caller."""

    def __init__(self, run: Callable[[], loadgen.LoadResult]) -> None:
        super().__init__(daemon=True)
        self.run_load = run
        self.result: loadgen.LoadResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.run_load()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def outcome(self) -> loadgen.LoadResult:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def refused_total(daemon: Running) -> int:
    value = parse_metric(daemon.metrics_text(), "srs_sip_requests_refused_total", 'status="503"')
    return int(value or 0)


def live_sessions(daemon: Running) -> int | None:
    value = parse_metric(daemon.metrics_text(), "srs_active_sessions")
    return int(value) if value is not None else None


def by_max_sessions(
    work: Path, *, limit: int, hold: float, media_cpu: int | None, others: set[int] | None
) -> dict[str, Any]:
    """2·limit calls offered within half a second against ``max_sessions = limit``."""
    offered = 2 * limit
    config = f"[limits]\nmax_sessions = {limit}\n"
    with launch(work, workers=1, config_toml=config, media_cpu=media_cpu, other_cpus=others) as daemon:
        load = LoadThread(
            lambda: loadgen.run_load(
                daemon.target, daemon.data_dir, calls=offered, rate=offered / 0.5, hold=hold,
                prefix=f"MAXS-{uuid.uuid4().hex[:6]}", senders=2, timeout=30,
            )
        )  # fmt: skip
        load.start()
        full_at = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and load.is_alive():
            if (live_sessions(daemon) or 0) >= limit:
                full_at = time.monotonic()
                break
            time.sleep(0.05)
        probe = probe_invite(daemon.target, f"PROBE-{uuid.uuid4().hex[:6]}") if full_at else None
        result = load.outcome()
        settled = wait_quiet(daemon, 30)
        checked = loadgen.verify(result, daemon.data_dir)
        states = index_states(daemon.data_dir)
        refused_metric = refused_total(daemon)
    return {
        "max_sessions": limit,
        **outcome(result, checked),
        "probe_while_full": None
        if probe is None
        else {"status": probe.status, "reason": probe.reason, "retry_after": probe.retry_after},
        "daemon_503_total": refused_metric,
        "settled": settled,
        "index_states_after": states,
    }


def bye_bound_to_its_transaction(scenario: Path) -> Path:
    """The scenario with its BYE's 200 matched to the BYE transaction.

    Otherwise SIPp takes a retransmitted 200 to the INVITE (srs still waiting for an ACK lost in
    the overload) for the answer to the BYE, stops retransmitting the BYE and counts the call
    successful while srs never saw it end.
    """
    text = scenario.read_text(encoding="iso-8859-1")
    bye = text.rindex('<send retrans="500">')
    text = text[:bye] + '<send retrans="500" start_txn="bye">' + text[bye + len('<send retrans="500">') :]
    answer = text.rindex('<recv response="200"')
    text = (
        text[:answer]
        + '<recv response="200" response_txn="bye"'
        + text[answer + len('<recv response="200"') :]
    )
    scenario.write_text(text, encoding="iso-8859-1")
    return scenario


def sip_socket_drops(daemon: Running) -> int:
    """Datagrams the kernel dropped on the daemon's SIP UDP socket (its receive buffer was full)."""
    return sum(s.drops for s in udp_table() if s.port == daemon.sip_port)


def sipp_burst(target: str, calls: int, rate: float, work: Path) -> dict[str, Any]:
    """``calls`` signalling-only SIPREC setups (INVITE, 200, ACK, BYE) offered at ``rate``/s by SIPp.

    SIPp, not the load generator: under overload INVITEs are retransmitted, and SIPp retransmits
    them as RFC 3261 says (same branch), so what is measured is srs, not duplicate requests.
    Setup latency (INVITE sent to 200 received) of each answered call comes from ``-trace_rtt``.
    """
    burst_dir = work / f"burst-{uuid.uuid4().hex[:6]}"
    burst_dir.mkdir()
    scenario = bye_bound_to_its_transaction(no_media_scenario(burst_dir))
    screen = burst_dir / "screen.txt"
    cmd = [
        shutil.which("sipp") or "sipp", target, "-sf", str(scenario),
        "-set", "crid", f"BURST-{uuid.uuid4().hex[:6]}",
        "-r", f"{rate:g}", "-l", str(calls), "-m", str(calls),
        "-i", LOOPBACK, "-p", str(free_port()), "-nostdin", "-timeout", "120s",
        "-trace_screen", "-screen_file", str(screen), "-trace_rtt", "-rtt_freq", "1",
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=burst_dir, capture_output=True, timeout=150, check=False)
    wall = time.monotonic() - began
    text = screen.read_text(errors="replace") if screen.exists() else ""

    def cumulative(label: str) -> int | None:
        match = re.search(rf"{label}\s*\|\s*([\d.]+)[^|]*\|\s*([\d.]+)", text)
        return int(float(match.group(2))) if match else None

    latencies: list[float] = []
    for rtt in burst_dir.glob("*_rtt.csv"):
        for line in rtt.read_text(errors="replace").splitlines()[1:]:
            fields = line.split(";")
            with contextlib.suppress(IndexError, ValueError):
                latencies.append(float(fields[1]) / 1000)
    return {
        "offered": calls,
        "offered_rate_per_s": rate,
        "sipp_successful": cumulative("Successful call"),
        "sipp_failed": cumulative("Failed call"),
        "sipp_exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "answered_setup_ms_p50": _ms(latencies, 50),
        "answered_setup_ms_p99": _ms(latencies, 99),
        "answered_setup_ms_max": _ms(latencies, 100),
        "answered_count": len(latencies),
    }


def by_loop_lag(
    work: Path,
    *,
    lag_ms: int,
    background: int,
    burst: int,
    burst_rate: float,
    media_cpu: int | None,
    others: set[int] | None,
) -> dict[str, Any]:
    """``background`` calls recording (with RTP), then ``burst`` setups offered at ``burst_rate``/s."""
    if shutil.which("sipp") is None:
        return {"skipped": "sipp not found"}
    # the "off" run turns both kinds of shedding off; otherwise the queue limit keeps its default
    config = f"[limits]\nmax_loop_lag_ms = {lag_ms}\n" + ("" if lag_ms else "max_sip_backlog_kb = 0\n")
    background_rate = 50.0
    ramp = background / background_rate
    burst_span = burst / burst_rate + 10.0
    with launch(work, workers=1, config_toml=config, media_cpu=media_cpu, other_cpus=others) as daemon:
        running = LoadThread(
            lambda: loadgen.run_load(
                daemon.target, daemon.data_dir, calls=background, rate=background_rate,
                hold=2.0 + burst_span, prefix=f"BG-{uuid.uuid4().hex[:6]}", senders=1, timeout=60,
            )
        )  # fmt: skip
        running.start()
        time.sleep(ramp + 1.0)
        refused_before = refused_total(daemon)
        drops_before = sip_socket_drops(daemon)
        offered = sipp_burst(daemon.target, burst, burst_rate, work)
        refused_by_burst = refused_total(daemon) - refused_before
        sip_drops = sip_socket_drops(daemon) - drops_before
        kept = running.outcome()
        settled = wait_quiet(daemon, 30)
        checked_running = loadgen.verify(kept, daemon.data_dir)
        overloads = daemon.log_events("overload")
        refusals = daemon.log_events("call_refused_overload")
        states = index_states(daemon.data_dir)
    return {
        "max_loop_lag_ms": lag_ms,
        "shedding_triggered": bool(overloads),
        "overload_events": len(overloads),
        "worst_reported_loop_lag_ms": max((int(e.get("loop_lag_ms") or 0) for e in overloads), default=None),
        "worst_reported_sip_backlog_kb": max(
            (int(e.get("sip_backlog_kb") or 0) for e in overloads), default=None
        ),
        "shedding_reasons": sorted({str(e.get("reason")) for e in overloads})[:4],
        "refused_by_shedding": len(refusals),
        "daemon_503_during_burst": refused_by_burst,
        "sip_datagrams_dropped_by_kernel": sip_drops,
        "burst": offered,
        "already_recording": {
            "calls": background,
            "failed": kept.failed_setup,
            "failures": kept.failures[:5],
            "recordings_bad": checked_running["recordings_bad"],
            "packets_sent": checked_running["packets_sent"],
            "packets_lost": checked_running["packets_lost"],
            "bad_examples": checked_running["examples"],
        },
        "settled": settled,
        "index_states_after": states,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.split("\n")[0])
    parser.add_argument("--max-sessions", type=int, default=50, help="the limit of the first run")
    parser.add_argument("--hold", type=float, default=4.0, help="seconds the admitted calls stay up")
    parser.add_argument("--lag-ms", type=int, default=250, help="[limits] max_loop_lag_ms of the second run")
    parser.add_argument("--background", type=int, default=100, help="calls recording before the burst")
    parser.add_argument("--burst", type=int, default=3000, help="calls offered in the burst")
    parser.add_argument("--burst-rate", type=float, default=600.0, help="burst setups offered per second")
    parser.add_argument("--compare", action="store_true", help="repeat the burst with the shedding off")
    parser.add_argument("--only", choices=["max_sessions", "loop_lag"])
    parser.add_argument("--media-cpu", type=int, default=0, help="the core the media worker is pinned to")
    args = parser.parse_args(argv)
    if not 0 < args.max_sessions <= 2000 or not 0 < args.burst <= 5000 or args.burst_rate <= 0:
        parser.error("--max-sessions in (0, 2000], --burst in (0, 5000], --burst-rate > 0")
    cpus = sorted(os.sched_getaffinity(0))
    media_cpu = args.media_cpu if args.media_cpu in cpus and len(cpus) > 1 else None
    others = {c for c in cpus if c != media_cpu} or None
    if others and media_cpu is not None:
        os.sched_setaffinity(0, others)
    else:
        others = None
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="srs-overload-") as scratch:
        work = Path(scratch)
        if args.only in (None, "max_sessions"):
            report["max_sessions"] = by_max_sessions(
                work, limit=args.max_sessions, hold=args.hold, media_cpu=media_cpu, others=others
            )
            print(json.dumps({"max_sessions": report["max_sessions"]}), file=sys.stderr, flush=True)
        if args.only in (None, "loop_lag"):
            lag_runs = [args.lag_ms, 0] if args.compare else [args.lag_ms]
            for lag_ms in lag_runs:
                key = "loop_lag" if lag_ms else "loop_lag_shedding_off"
                report[key] = by_loop_lag(
                    work, lag_ms=lag_ms, background=args.background, burst=args.burst,
                    burst_rate=args.burst_rate, media_cpu=media_cpu, others=others,
                )  # fmt: skip
                print(json.dumps({key: report[key]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
