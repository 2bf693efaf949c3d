"""Coverage-guided fuzzing of every parser target with atheris (libFuzzer).

    python -m tests.fuzz.run [--runs N] [--seconds S] [--target NAME ...] [--jobs J]
    python -m tests.fuzz.run --replay FILE --target NAME

Each target runs in its own subprocess, so a crash, hang (``--timeout`` per input)
or memory blow-up (``--rss-limit-mb``) of one target is reported without stopping
the others. One JSON line per target is printed:
``{"target", "inputs", "crashes", "seconds", "exec_per_s", "artifact", "kind"}``; the exit
status is non-zero when any target crashed. New coverage is kept under
``--work`` (not in the seed corpus), crash inputs are written there too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
TARGET_NAMES = ("sip_udp", "sip_tcp", "multipart", "sdp", "metadata", "rtp", "rtcp", "siprec_ua")

_STATUS_RE = re.compile(r"^#(\d+)\s+(?:\w+)\s.*?exec/s: (\d+)", re.M)
_DONE_RE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)
_ARTIFACT_RE = re.compile(r"Test unit written to (\S+)")
_CRASH_MARKERS = (
    "Uncaught Python exception",
    "ERROR: libFuzzer",
    "ERROR: AddressSanitizer",
)


@dataclass(frozen=True, slots=True)
class Summary:
    target: str
    inputs: int
    crashes: int
    seconds: float
    exec_per_s: int
    artifact: str | None
    kind: str | None
    """``exception``, ``timeout`` (hang), ``oom`` (memory) or ``abort``; None without a crash."""
    detail: str | None


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="repeatable; default: all")
    parser.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    parser.add_argument("--seconds", type=int, default=0, help="time per target (0: no limit)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="targets fuzzed in parallel")
    parser.add_argument("--timeout", type=int, default=1, help="seconds per input before a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="memory cap of one target process")
    parser.add_argument("--work", type=Path, default=Path("var/fuzz"), help="grown corpora and crash inputs")
    parser.add_argument("--replay", type=Path, help="run one saved input through --target in-process")
    parser.add_argument("--child", choices=TARGET_NAMES, help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs == 0 and args.seconds == 0 and args.child is None and args.replay is None:
        parser.error("give --runs and/or --seconds so the run ends")
    return args


def _child(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the per-target process: instrument srs, then hand control to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["srs", "srs_codecs"]):
        from tests.fuzz import targets

    target = targets.TARGETS[name]
    allowed = targets.ALLOWED

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*allowed):
            target(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _replay(name: str, path: Path) -> int:
    from tests.fuzz import targets

    started = time.monotonic()
    try:
        targets.TARGETS[name](path.read_bytes())
    except targets.ALLOWED as error:
        print(f"allowed: {type(error).__name__}: {error}")
    except Exception:
        traceback.print_exc()
        return 1
    print(f"ok in {time.monotonic() - started:.3f} s")
    return 0


def _fuzz(name: str, args: argparse.Namespace) -> Summary:
    from tests.fuzz.targets import MAX_LEN

    work = args.work / name
    grown = work / "corpus"
    grown.mkdir(parents=True, exist_ok=True)
    flags = [
        f"-runs={args.runs if args.runs else -1}",
        f"-max_total_time={args.seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={MAX_LEN[name]}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        str(grown),
        str(CORPUS / name),
    ]
    command = [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--", *flags]
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
        log.seek(0)
        output = log.read()
    seconds = round(time.monotonic() - started, 1)
    (work / "last.log").write_text(output)
    return _summarize(name, output, process.returncode, seconds)


def _summarize(name: str, output: str, returncode: int, seconds: float) -> Summary:
    statuses = _STATUS_RE.findall(output)
    done = _DONE_RE.findall(output)
    inputs = int(done[-1][0]) if done else (int(statuses[-1][0]) if statuses else 0)
    exec_per_s = int(statuses[-1][1]) if statuses else 0
    if done and int(done[-1][1]) > 0:
        exec_per_s = int(int(done[-1][0]) / int(done[-1][1]))
    artifact = _ARTIFACT_RE.findall(output)
    crashed = returncode != 0 or any(marker in output for marker in _CRASH_MARKERS)
    detail = None
    kind = None
    if crashed:
        kind = (
            "timeout"
            if "libFuzzer: timeout" in output
            else "oom"
            if "libFuzzer: out-of-memory" in output
            else "exception"
            if "Uncaught Python exception" in output
            else "abort"
        )
        lines = [line for line in output.splitlines() if line.strip()]
        key = next((i for i, line in enumerate(lines) if any(m in line for m in _CRASH_MARKERS)), None)
        detail = "\n".join(lines[key : key + 25] if key is not None else lines[-25:])
    return Summary(
        target=name,
        inputs=inputs,
        crashes=1 if crashed else 0,
        seconds=seconds,
        exec_per_s=exec_per_s,
        artifact=artifact[-1] if artifact else None,
        kind=kind,
        detail=detail,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if args.child is not None:
        _child(args.child, list(args.libfuzzer_args))
        return 0
    names = tuple(args.target or TARGET_NAMES)
    if args.replay is not None:
        if len(names) != 1:
            print("--replay needs exactly one --target", file=sys.stderr)
            return 2
        return _replay(names[0], args.replay)
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for summary in pool.map(lambda name: _fuzz(name, args), names):
            record = asdict(summary)
            if summary.crashes:
                failed = True
                print(summary.detail or "", file=sys.stderr)
            del record["detail"]
            print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
