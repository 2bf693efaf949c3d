"""``python -m bench``: the performance figures of srs on this machine, as one JSON document.

Sections (each measured on loopback, bounded in time and count):

* ``media``: the largest number of concurrent two-stream G.711 calls one media worker pinned to
  one core records with zero lost packets and every WAV right; CPU µs per packet of srs (receive
  to disk, every srs process) and RSS per call at that level, and at each level the receive-only
  floor (the same loop discarding what it receives), the ratio of the two and how far behind
  schedule the RTP generator (native, ``sendmmsg``, where a C compiler is installed) fell;
  ``media_in_process`` is the same ladder for the in-process plane (readers on the daemon's
  uvloop), the shape srs had before workers.
* ``setup``: SIPREC setups per second (INVITE→200→ACK, BYE→200) at zero failed calls, srs against
  ``sipp -sn uas`` driven by the same SIPp client in the same run, and their ratio.
* ``end_to_end``: the load generator against a running daemon (media in a worker): failed calls,
  BYE → available p50/p99, every recording checked in the index and as a WAV.
* ``index``: lookup by call-recording-id and API list p99 with ``rows`` recordings indexed.
* ``index_pg``: the same on PostgreSQL, a throw-away server started for it (``index_postgresql``).
* ``lowload``: 200 calls from SIPp (pcap play) against a daemon: CPU of every srs process per
  packet where each stream brings few packets per wake-up (not in ``--quick``).

``--quick`` is the CI variant (small levels, a few minutes, no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import index as index_bench
from bench import loadgen, media, native_sender
from bench.lowload import low_load

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "sipp-scenarios"
LOOPBACK = "127.0.0.1"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind((LOOPBACK, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def options_ok(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        local = s.getsockname()[1]
        call_id = uuid.uuid4().hex
        s.settimeout(0.3)
        msg = (
            f"OPTIONS sip:srs@{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{call_id[:12]};rport\r\n"
            f"From: <sip:bench@{LOOPBACK}>;tag={call_id[:8]}\r\nTo: <sip:srs@{LOOPBACK}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            s.sendto(msg.encode(), (LOOPBACK, port))
            return s.recv(65535).startswith(b"SIP/2.0 200")
        except OSError:
            return False


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def media_workers(pid: int) -> list[int]:
    """The daemon's media worker processes (its other child is the index writer)."""
    workers = []
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"srs.mediaplane.worker_loop" in command:
            workers.append(child)
    return workers


@contextlib.contextmanager
def daemon(
    data_dir: Path, *, workers: int, media_cpu: int | None, other_cpus: set[int] | None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``srs serve`` (media in ``workers`` processes) on free loopback ports; yields (SIP port, process)."""
    sip = free_port()
    low = 20000 + (os.getpid() % 100) * 100
    cmd = [
        sys.executable, "-m", "bench.serve", "--media-workers", str(workers),
        "--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{low + 19999}",
        "--data-dir", str(data_dir), "--http", "off", "--log-level", "warning",
    ]  # fmt: skip
    log = open(data_dir.parent / f"srs-{sip}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not options_ok(sip):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"srs did not start: {(data_dir.parent / f'srs-{sip}.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        pin(process.pid, media_cpu=media_cpu, other_cpus=other_cpus)
        yield sip, process
    finally:
        stop(process, 30)
        log.close()


def pin(pid: int, *, media_cpu: int | None, other_cpus: set[int] | None) -> None:
    """The daemon and its index writer on ``other_cpus``, its media workers on ``media_cpu``."""
    workers = set(media_workers(pid))
    if other_cpus:
        for process in (pid, *(child for child in children(pid) if child not in workers)):
            os.sched_setaffinity(process, other_cpus)
    if media_cpu is not None:
        for worker in workers:
            os.sched_setaffinity(worker, {media_cpu})


def stop(process: subprocess.Popen[bytes], wait_s: float) -> None:
    """SIGTERM (the daemon drains and closes its files), SIGKILL after ``wait_s``."""
    process.terminate()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ------------------------------------------------------------------------------------------ setup rate


SIPP_BUFFER = 4 << 20
"""SIPp's socket buffers, as large as srs's SIP socket: with the 208 KB default a burst of 100 INVITEs
overflows them and the run measures 500 ms retransmission timers, not the peer."""


def no_media_scenario(directory: Path) -> Path:
    """siprec_load.xml without its pcap play and pause: signalling only."""
    text = (SCENARIOS / "siprec_load.xml").read_text(encoding="iso-8859-1")
    text = re.sub(r"<nop>\s*<action>\s*<exec play_pcap_audio=\"[^\"]*\"\s*/>\s*</action>\s*</nop>", "", text)
    text = text.replace("<pause />", '<pause milliseconds="0" />')
    path = directory / "siprec_setup_only.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


def settle_disk(pause_s: float = 2.0) -> None:
    """Write back what earlier stages left dirty before a rate is measured: otherwise the kernel's
    writeback of the media stage's files runs on both cores during the next stage and the figure
    swings by a third from run to run."""
    os.sync()
    time.sleep(pause_s)


def sipp_client(target_port: int, scenario: Path, calls: int, limit: int, workdir: Path) -> dict[str, Any]:
    settle_disk()
    local = free_port()
    screen = workdir / f"screen-{local}.txt"
    cmd = [
        shutil.which("sipp") or "sipp", f"{LOOPBACK}:{target_port}", "-sf", str(scenario),
        "-set", "crid", f"SETUP-{uuid.uuid4().hex[:6]}", "-r", "100000", "-l", str(limit), "-m", str(calls),
        "-i", LOOPBACK, "-p", str(local), "-nostdin", "-timeout", "300s", "-buff_size", str(SIPP_BUFFER),
        "-trace_screen", "-screen_file", str(screen),
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=330, check=False)
    wall = time.monotonic() - began
    text = screen.read_text(errors="replace") if screen.exists() else ""

    def cumulative(label: str) -> float:
        match = re.search(rf"{label}\s*\|\s*([\d.]+)[^|]*\|\s*([\d.]+)", text)
        return float(match.group(2)) if match else float("nan")

    return {
        "calls": calls,
        "concurrency": limit,
        "successful": int(cumulative("Successful call")),
        "failed": int(cumulative("Failed call")),
        "setups_per_s": round(cumulative("Call Rate"), 1),
        "wall_s": round(wall, 2),
        "exit_code": proc.returncode,
    }


def setup_rate(work: Path, calls: int, limit: int, repeats: int = 1) -> dict[str, Any]:
    """Signalling only, nothing pinned: srs (its SIP loop, media worker and index writer) and SIPp's
    UAS each get the whole machine, shared with the SIPp client, as they would in production. srs
    runs ``repeats`` times, each against a fresh daemon: one figure of a noisy host says little."""
    if shutil.which("sipp") is None or not (SCENARIOS / "siprec_load.xml").exists():
        return {"skipped": "sipp or sipp-scenarios/siprec_load.xml not found"}
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    try:
        return _setup_rate(work, calls, limit, repeats)
    finally:
        os.sched_setaffinity(0, pinned)


def _setup_rate(work: Path, calls: int, limit: int, repeats: int) -> dict[str, Any]:
    scenario = no_media_scenario(work)
    srs_runs = []
    for attempt in range(repeats):
        data = work / f"setup-data-{attempt}"
        data.mkdir()
        with daemon(data, workers=1, media_cpu=None, other_cpus=None) as (sip, _):
            srs_runs.append(sipp_client(sip, scenario, calls, limit, work))
    rates = sorted(r["setups_per_s"] for r in srs_runs)
    srs_result = dict(srs_runs[0]) if repeats == 1 else {
        "calls": calls, "concurrency": limit,
        "successful": sum(r["successful"] for r in srs_runs), "failed": sum(r["failed"] for r in srs_runs),
        "setups_per_s": rates[len(rates) // 2], "setups_per_s_min": rates[0], "setups_per_s_max": rates[-1],
        "runs": srs_runs,
    }  # fmt: skip
    uas_port = free_port()
    uas = subprocess.Popen(
        [
            shutil.which("sipp") or "sipp", "-sn", "uas", "-i", LOOPBACK, "-p", str(uas_port), "-nostdin",
            "-buff_size", str(SIPP_BUFFER),
        ],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        uas_result = sipp_client(uas_port, scenario, calls, limit, work)
        if uas_result["failed"]:
            # a burst of retransmissions on a busy 2-core box: the reference gets one more try
            retry = sipp_client(uas_port, scenario, calls, limit, work)
            retry["earlier_attempt"] = uas_result
            uas_result = retry
    finally:
        uas.terminate()
        uas.wait(10)
    ratio = srs_result["setups_per_s"] / uas_result["setups_per_s"] if uas_result["setups_per_s"] else None
    return {
        "srs": srs_result,
        "sipp_uas": uas_result,
        "srs_setups_per_s_zero_failures": srs_result["setups_per_s"] if srs_result["failed"] == 0 else None,
        "ratio_to_sipp_uas": round(ratio, 3) if ratio is not None else None,
    }


# ------------------------------------------------------------------------------------------ end to end


def end_to_end(
    work: Path, calls: int, rate: float, hold: float, media_cpu: int | None, others: set[int] | None
) -> dict[str, Any]:
    data = work / "e2e-data"
    data.mkdir()
    with daemon(data, workers=1, media_cpu=media_cpu, other_cpus=others) as (sip, process):
        worker_pids = media_workers(process.pid)
        result = loadgen.run_load(f"{LOOPBACK}:{sip}", data, calls=calls, rate=rate, hold=hold, timeout=120)
        time.sleep(0.5)
        checked = loadgen.verify(result, data)
        summary = loadgen.summary(result, checked)
        summary["media_workers"] = len(worker_pids)
    return summary


# ------------------------------------------------------------------------------------------ main


def _uvloop_run(coro: Any) -> Any:
    """The daemon's loop (uvloop) for the in-process plane, so "before" is measured as it ran."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CI variant (a few minutes)")
    sections = ["media", "inprocess", "setup", "e2e", "index", "index_pg", "lowload"]
    parser.add_argument("--only", action="append", choices=sections)
    parser.add_argument("--levels", help="comma-separated call counts for the media ladder")
    parser.add_argument("--seconds", type=float, help="seconds per media level")
    parser.add_argument("--rows", type=int, help="recordings in the index benchmark")
    parser.add_argument("--media-cpu", type=int, default=0, help="the core the media path is pinned to")
    parser.add_argument("--senders", type=int, default=2, help="RTP sender processes of the load generator")
    parser.add_argument(
        "--python-senders", action="store_true", help="RTP from Python, not the native sender"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the receive-only floor of each level")
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="media ladder without crash journals (on by default, as in srs)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    cpus = sorted(os.sched_getaffinity(0))
    media_cpu = args.media_cpu if args.media_cpu in cpus and len(cpus) > 1 else None
    others = {c for c in cpus if c != media_cpu} or None
    if others:
        os.sched_setaffinity(0, others)
    levels = (
        [int(x) for x in args.levels.split(",")]
        if args.levels
        else ([50, 100] if quick else [250, 500, 1000, 1500, 2000, 2500])
    )
    seconds = args.seconds or (4.0 if quick else 10.0)
    only = set(args.only or ["media", "inprocess", "setup", "e2e", "index", "index_pg",
                             *([] if quick else ["lowload"])])
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "media_cpu": media_cpu,
            "load_average_at_start": list(os.getloadavg()),
            "quick": quick,
        }
    }
    with tempfile.TemporaryDirectory(prefix="srs-bench-") as scratch:
        work = Path(scratch)
        native = None if args.python_senders else native_sender.build(work)
        if "media" in only:
            best, runs = asyncio.run(
                media.ladder(
                    levels,
                    seconds,
                    media_cpu=media_cpu,
                    other_cpus=others,
                    senders=args.senders,
                    native=native,
                    floor=not args.no_floor,
                    journal=not args.no_journal,
                )
            )
            at_best = next((r for r in runs if r["calls"] == best), runs[-1] if runs else {})
            us = at_best.get("us_per_packet") or 0
            report["media"] = {
                "max_concurrent_calls_zero_loss_one_core": best,
                "us_per_packet": us,
                "rss_per_call_kb": at_best.get("rss_per_call_kb"),
                "projected_calls_per_core": int(1e6 / (us * 100)) if us else None,
                "generator": "native sendmmsg" if native is not None else "python",
                "by_level": {
                    r["calls"]: {
                        "us_per_packet": r["us_per_packet"],
                        "floor_us_per_packet": r.get("floor_us_per_packet"),
                        "ratio_to_floor": r.get("ratio_to_floor"),
                        "zero_loss": r["zero_loss"],
                        "generator_lag_ms": r.get("generator_lag_ms"),
                    }
                    for r in runs
                },
                "levels": runs,
            }
            _progress(report, "media")
        if "inprocess" in only:
            # the in-process plane is the "before" reference; past ~500 calls its loop starves its own
            # flush timers and buffers packets without bound, so its ladder stops there
            base_levels = [level for level in levels if level <= 500] or levels[:1]
            best, runs = _uvloop_run(
                media.ladder(
                    base_levels,
                    seconds,
                    media_cpu=media_cpu,
                    other_cpus=others,
                    senders=args.senders,
                    in_process=True,
                )
            )
            if others:
                os.sched_setaffinity(0, others)
            at_best = next((r for r in runs if r["calls"] == best), runs[-1] if runs else {})
            report["media_in_process"] = {
                "max_concurrent_calls_zero_loss_one_core": best,
                "us_per_packet": at_best.get("us_per_packet"),
                "levels": runs,
            }
            _progress(report, "media_in_process")
        if "setup" in only:
            calls = 500 if quick else 3000
            report["setup"] = setup_rate(work, calls, 50 if quick else 100, 1 if quick else 3)
            _progress(report, "setup")
        if "e2e" in only:
            report["end_to_end"] = (
                end_to_end(work, 40, 20.0, 2.0, media_cpu, others)
                if quick
                else end_to_end(work, 400, 40.0, 5.0, media_cpu, others)
            )
        if "lowload" in only:
            report["lowload"] = low_load(work, daemon, children, free_port, SCENARIOS)
            _progress(report, "lowload")
        if "index" in only:
            rows = args.rows or (20_000 if quick else 1_000_000)
            report["index"] = index_bench.run(
                rows, 500 if quick else 5000, 100 if quick else 300, directory=work
            )
            _progress(report, "index")
        if "index_pg" in only:
            rows = args.rows or (20_000 if quick else 1_000_000)
            report["index_postgresql"] = index_bench.run_postgresql(
                rows, 500 if quick else 5000, 100 if quick else 300, directory=work
            )
            _progress(report, "index_postgresql")
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))
    return 0


def _progress(report: dict[str, Any], name: str) -> None:
    """Each section to stderr as soon as it is done, so a long run that is cut short keeps its results."""
    print(json.dumps({name: report.get(name)}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
