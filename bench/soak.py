"""``python -m bench.soak``: does srs leak anything when it records calls for half an hour?

A daemon (media in ``--media-workers`` processes) gets rounds of ``--calls`` staggered two-stream
G.711 calls from the load generator, back to back until ``--minutes`` are over: each round ramps
up at ``--rate`` calls/s, holds everyone up for ``--hold`` s and ramps down as staggered as it
began, so about ``--calls`` calls are up most of the time and every call's setup, media and
teardown is exercised many times.  Between rounds the daemon is quiet (no session, every
recording available); those quiet points are where a leak shows without the noise of live calls.

Every ``--interval`` s a sampler thread records, for the daemon, its index writer and each media
worker: RSS (``/proc/PID/status``), open descriptors (``/proc/PID/fd``), UDP sockets they own bound in the
RTP range and those sockets' kernel drop counters (``/proc/net/udp``); plus live sessions (the
daemon's ``/metrics``) and index rows by state.  Every round's recordings are verified (index and
WAV, as ``bench.loadgen.verify``) and their WAVs deleted afterwards, so disk use stays flat.

The output is one JSON document: the samples, the RSS slope per process (least squares, KB/min)
over the second half (all samples, and quiet points only: the sawtooth of the rounds does not
bias the latter), descriptors and ports at each quiet point against the baseline, calls made,
calls failed and recordings verified bad.  Loopback only; bounded in time.

    python -m bench.soak --minutes 30 --calls 500 --media-workers 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.__main__ import LOOPBACK, children, free_port, media_workers, options_ok, pin, stop

_UNFINISHED = ("starting", "recording", "stopping")
_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


# ------------------------------------------------------------------------------------------ /proc


def parse_vm_rss_kb(status: str) -> int | None:
    """The ``VmRSS`` line of ``/proc/PID/status`` in KiB (None when absent, e.g. a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1])
    return None


@dataclass(frozen=True)
class UdpSocket:
    inode: int
    port: int
    drops: int


def parse_proc_net_udp(text: str) -> list[UdpSocket]:
    """The sockets of ``/proc/net/udp`` or ``udp6``: inode, local port and kernel drop counter."""
    sockets: list[UdpSocket] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13 or ":" not in fields[1]:
            continue
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            sockets.append(UdpSocket(inode=int(fields[9]), port=port, drops=int(fields[12])))
        except ValueError:
            continue
    return sockets


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        with contextlib.suppress(OSError):
            match = _SOCKET_LINK.fullmatch(os.readlink(f"/proc/{pid}/fd/{name}"))
            if match:
                inodes.add(int(match.group(1)))
    return inodes


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_kb(pid: int) -> int | None:
    try:
        return parse_vm_rss_kb(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def udp_table() -> list[UdpSocket]:
    sockets: list[UdpSocket] = []
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            sockets.extend(parse_proc_net_udp(Path(name).read_text()))
    return sockets


def slope_per_minute(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` against ``times`` (seconds), per minute; None under 3 points."""
    if len(times) < 3 or len(times) != len(values):
        return None
    mean_t = statistics.fmean(times)
    mean_v = statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return None
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


def parse_metric(text: str, name: str, labels: str = "") -> float | None:
    """One sample of a Prometheus text exposition, e.g. ``srs_active_sessions`` or
    ``srs_sip_requests_refused_total`` with ``labels='status="503"'``."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            try:
                return float(value)
            except ValueError:
                return None
    return None


# ------------------------------------------------------------------------------------------ daemon


@dataclass(frozen=True)
class Running:
    """A daemon started for a soak or overload run."""

    process: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    rtp_low: int
    rtp_high: int
    data_dir: Path
    log_path: Path
    token: str

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    def metrics_text(self) -> str:
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.http_port}/metrics", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            return ""

    def log_events(self, name: str) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict) and item.get("event") == name:
                    events.append(item)
        return events


@contextlib.contextmanager
def launch(
    work: Path,
    *,
    workers: int,
    config_toml: str | None = None,
    media_cpu: int | None = None,
    other_cpus: set[int] | None = None,
    log_level: str = "warning",
) -> Iterator[Running]:
    """``srs serve`` as ``bench.serve`` runs it, plus the HTTP side (for ``/metrics``) and an
    optional configuration file; waits until it answers OPTIONS; SIGTERM at the end."""
    data = work / f"data-{time.monotonic_ns()}"
    data.mkdir(parents=True)
    sip = free_port()
    http = free_port()
    low = 20000 + (os.getpid() % 100) * 100
    token = read_token(data)
    cmd = [
        sys.executable, "-m", "bench.serve", "--media-workers", str(workers),
        "--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{low + 19999}",
        "--data-dir", str(data), "--http", f"{LOOPBACK}:{http}", "--log-level", log_level,
    ]  # fmt: skip
    if config_toml is not None:
        config = work / f"srs-{sip}.toml"
        config.write_text(config_toml)
        cmd += ["--config", str(config)]
    log_path = work / f"srs-{sip}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not options_ok(sip):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"srs did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        pin(process.pid, media_cpu=media_cpu, other_cpus=other_cpus)
        yield Running(process, sip, http, low, low + 19999, data, log_path, token)
    finally:
        stop(process, 60)
        log.close()


def read_token(data_dir: Path) -> str:
    """A read-scope API token (for ``/metrics``), made with the CLI as an operator would."""
    made = subprocess.run(
        [sys.executable, "-m", "srs", "token", "create", "--scope", "read", "--name", "bench",
         "--json", "--data-dir", str(data_dir)],
        capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return str(json.loads(made.stdout)["token"])


def index_states(data_dir: Path) -> dict[str, int]:
    path = data_dir / "index.sqlite3"
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT state, count(*) FROM recordings GROUP BY state").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {str(state): int(count) for state, count in rows}


def sample(daemon: Running, started: float) -> dict[str, Any]:
    """One observation of the daemon, its media workers and its index writer."""
    workers = set(media_workers(daemon.process.pid))
    pids = {"daemon": daemon.process.pid} | {
        f"{'worker' if pid in workers else 'index-writer'}-{pid}": pid for pid in children(daemon.process.pid)
    }
    table = {
        s.inode: s
        for s in udp_table()
        if daemon.rtp_low <= s.port <= daemon.rtp_high and s.port != daemon.sip_port
    }
    owned: set[int] = set()
    for pid in pids.values():
        owned |= socket_inodes(pid)
    rtp = [table[inode] for inode in owned if inode in table]
    live = parse_metric(daemon.metrics_text(), "srs_active_sessions")
    return {
        "t": round(time.monotonic() - started, 2),
        "rss_kb": {name: rss_kb(pid) for name, pid in pids.items()},
        "fds": {name: fd_count(pid) for name, pid in pids.items()},
        "rtp_udp_sockets": len(rtp),
        "rtp_udp_drops": sum(s.drops for s in rtp),
        "live_sessions": int(live) if live is not None else None,
        "index": index_states(daemon.data_dir),
    }


class Sampler(threading.Thread):
    """Samples every ``interval`` s until stopped."""

    def __init__(self, daemon: Running, started: float, interval: float) -> None:
        super().__init__(daemon=True)
        self.target_daemon = daemon
        self.started = started
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(sample(self.target_daemon, self.started))
            self.halt.wait(self.interval)


def wait_quiet(daemon: Running, within: float) -> bool:
    """Until no session is live and no recording is unfinished (True), or ``within`` s pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        live = parse_metric(daemon.metrics_text(), "srs_active_sessions")
        states = index_states(daemon.data_dir)
        if live == 0 and not any(states.get(s) for s in _UNFINISHED):
            return True
        time.sleep(0.2)
    return False


def delete_wavs(data_dir: Path, prefix: str) -> int:
    """Remove the audio of one round (already verified) so a long soak does not fill the disk."""
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        paths = [
            row[0]
            for row in db.execute(
                "SELECT file_path FROM recordings WHERE call_recording_id LIKE ? AND file_path IS NOT NULL",
                (f"{prefix}-%",),
            )
        ]
    finally:
        db.close()
    removed = 0
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
    return removed


# ------------------------------------------------------------------------------------------ report


def process_names(samples: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for s in samples:
        names.update(dict.fromkeys(s["rss_kb"]))
    return list(names)


def rss_slopes(samples: list[dict[str, Any]], second_half_from: float) -> dict[str, float | None]:
    """KB/min per process over the samples at or after ``second_half_from`` s."""
    slopes: dict[str, float | None] = {}
    for name in process_names(samples):
        points = [
            (s["t"], s["rss_kb"][name])
            for s in samples
            if s["t"] >= second_half_from and s["rss_kb"].get(name) is not None
        ]
        slope = slope_per_minute([p[0] for p in points], [p[1] for p in points])
        slopes[name] = round(slope, 1) if slope is not None else None
    return slopes


def leak_check(baseline: dict[str, Any], quiet: list[dict[str, Any]]) -> dict[str, Any]:
    """Descriptors and RTP sockets at every quiet point minus the baseline (before any call) and minus
    the first quiet point (after one round: lazily made objects exist by then): a leak grows round by
    round; a one-off step after the first round is warm-up."""
    if not quiet:
        return {}
    first = quiet[0]
    fd_deltas = {
        name: [(q["fds"].get(name) or 0) - (baseline["fds"].get(name) or 0) for q in quiet]
        for name in baseline["fds"]
    }
    socket_deltas = [q["rtp_udp_sockets"] - baseline["rtp_udp_sockets"] for q in quiet]
    rss_growth = {
        name: [(q["rss_kb"].get(name) or 0) - (baseline["rss_kb"].get(name) or 0) for q in quiet]
        for name in baseline["rss_kb"]
    }
    return {
        "fd_delta_per_quiet_point": fd_deltas,
        "rtp_udp_sockets_delta_per_quiet_point": socket_deltas,
        "rss_growth_kb_per_quiet_point": rss_growth,
        "fd_growth_since_first_quiet_point": {
            name: (quiet[-1]["fds"].get(name) or 0) - (first["fds"].get(name) or 0) for name in first["fds"]
        },
        "rss_growth_kb_since_first_quiet_point": {
            name: (quiet[-1]["rss_kb"].get(name) or 0) - (first["rss_kb"].get(name) or 0)
            for name in first["rss_kb"]
        },
        "rtp_sockets_back_to_baseline": socket_deltas[-1] <= 0,
    }


# ------------------------------------------------------------------------------------------ run


def soak(
    work: Path,
    *,
    minutes: float,
    calls: int,
    rate: float,
    hold: float,
    workers: int,
    senders: int,
    interval: float,
    media_cpu: int | None,
    other_cpus: set[int] | None,
    keep_wavs: bool = False,
) -> dict[str, Any]:
    ramp = calls / rate
    rounds: list[dict[str, Any]] = []
    quiet: list[dict[str, Any]] = []
    totals = {"calls_made": 0, "calls_failed": 0, "wavs_verified_bad": 0, "packets_lost": 0}
    bad_examples: dict[str, list[str]] = {}
    with launch(work, workers=workers, media_cpu=media_cpu, other_cpus=other_cpus) as daemon:
        started = time.monotonic()
        deadline = started + minutes * 60
        baseline = sample(daemon, started)
        sampler = Sampler(daemon, started, interval)
        sampler.start()
        number = 0
        try:
            while True:
                left = deadline - time.monotonic()
                # a round needs its two ramps, a few s of hold and a few s to settle
                round_hold = min(hold, left - 2 * ramp - 10)
                if round_hold < 3:
                    break
                number += 1
                prefix = f"SOAK{number:03d}-{os.getpid()}"
                began = time.monotonic() - started
                result = loadgen.run_load(
                    daemon.target, daemon.data_dir, calls=calls, rate=rate, hold=round_hold,
                    senders=senders, prefix=prefix, timeout=60,
                )  # fmt: skip
                settled = wait_quiet(daemon, 30)
                point = sample(daemon, started)
                point["round"] = number
                point["settled"] = settled
                quiet.append(point)
                checked = loadgen.verify(result, daemon.data_dir)
                removed = 0 if keep_wavs else delete_wavs(daemon.data_dir, prefix)
                failure_kinds: dict[str, int] = {}
                for failure in result.failures:
                    kind = failure.split(": ", 1)[-1]
                    failure_kinds[kind] = failure_kinds.get(kind, 0) + 1
                rounds.append(
                    {
                        "round": number,
                        "began_s": round(began, 1),
                        "hold_s": round(round_hold, 1),
                        "calls": calls,
                        "concurrent_peak": result.concurrent_peak,
                        "failed": result.failed_setup,
                        "failure_kinds": failure_kinds,
                        "recordings_bad": checked["recordings_bad"],
                        "packets_sent": checked["packets_sent"],
                        "packets_lost": checked["packets_lost"],
                        "sender_errors": result.sender_errors,
                        "setup_ms_p50": _ms(loadgen.percentile(result.setup_times, 50)),
                        "setup_ms_p99": _ms(loadgen.percentile(result.setup_times, 99)),
                        "bye_to_available_ms_p99": _ms(loadgen.percentile(result.bye_to_available, 99)),
                        "settled_quiet": settled,
                        "wavs_deleted": removed,
                        "bad_examples": dict(list(checked["examples"].items())[:2]),
                    }
                )
                totals["calls_made"] += calls
                totals["calls_failed"] += result.failed_setup
                totals["wavs_verified_bad"] += checked["recordings_bad"]
                totals["packets_lost"] += checked["packets_lost"]
                for crid, problems in checked["examples"].items():
                    if len(bad_examples) < 5:
                        bad_examples[crid] = problems
                print(json.dumps({"round": rounds[-1]}), file=sys.stderr, flush=True)
        finally:
            sampler.halt.set()
            sampler.join(30)
        elapsed = time.monotonic() - started
        final_states = index_states(daemon.data_dir)
    samples = sampler.samples
    half = elapsed / 2
    live = [s["live_sessions"] for s in samples if s.get("live_sessions") is not None]
    quiet_half = [q for q in quiet if q["t"] >= half]
    return {
        "config": {
            "minutes": minutes,
            "calls_per_round": calls,
            "ramp_rate_per_s": rate,
            "hold_s": hold,
            "media_workers": workers,
            "senders": senders,
            "sample_interval_s": interval,
            "media_cpu": media_cpu,
        },
        "elapsed_s": round(elapsed, 1),
        **totals,
        "bad_examples": bad_examples,
        "rounds": rounds,
        "live_sessions": {
            "mean": round(statistics.fmean(live), 1) if live else None,
            "max": max(live) if live else None,
        },
        "rss_slope_kb_per_min_second_half": rss_slopes(samples, half),
        "rss_slope_kb_per_min_second_half_quiet_points": rss_slopes(quiet_half, half)
        if len(quiet_half) >= 3
        else "fewer than 3 quiet points in the second half",
        "baseline": baseline,
        "quiet_points": quiet,
        "leak_check": leak_check(baseline, quiet),
        "index_final": final_states,
        "samples": samples,
    }


def _ms(value: float | None) -> float | None:
    return round(value * 1000, 1) if value is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=500, help="calls up at once (default: half of capacity)")
    parser.add_argument("--rate", type=float, default=50.0, help="ramp rate of each round, calls/s")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds every call of a round is up")
    parser.add_argument("--media-workers", type=int, default=1)
    parser.add_argument("--senders", type=int, default=2, help="RTP sender processes of the load generator")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--media-cpu", type=int, default=0, help="the core the media workers are pinned to")
    parser.add_argument("--keep-wavs", action="store_true", help="keep the audio (deleted once verified)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 240 or not 0 < args.calls <= 5000 or args.rate <= 0:
        parser.error("--minutes in (0, 240], --calls in (0, 5000], --rate > 0")
    cpus = sorted(os.sched_getaffinity(0))
    media_cpu = args.media_cpu if args.media_cpu in cpus and len(cpus) > 1 and args.media_workers else None
    others = {c for c in cpus if c != media_cpu} or None
    if others and media_cpu is not None:
        os.sched_setaffinity(0, others)
    with tempfile.TemporaryDirectory(prefix="srs-soak-") as scratch:
        report = soak(
            Path(scratch), minutes=args.minutes, calls=args.calls, rate=args.rate, hold=args.hold,
            workers=args.media_workers, senders=args.senders, interval=args.interval,
            media_cpu=media_cpu, other_cpus=others if media_cpu is not None else None,
            keep_wavs=args.keep_wavs,
        )  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
