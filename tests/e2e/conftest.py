"""Fixtures for end-to-end tests: a real daemon on loopback, driven by SIPp and pjsua2.

Everything binds to 127.0.0.1 on ports picked free at run time, and every child process is
bounded in time, so the suite can run on a shared machine and never hangs.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "sipp-scenarios"
MAKE_PCAP = SCENARIOS / "make_pcap.py"
SRS_BIN = Path(sys.executable).with_name("srs")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


# ---------------------------------------------------------------------------------------------
# ports


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port(kinds: tuple[int, ...] = (socket.SOCK_DGRAM, socket.SOCK_STREAM), *, even: bool = False) -> int:
    """A port currently free for every socket kind given (SIP needs the same port on UDP and TCP)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kinds[0]) as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if even and port % 2:
            port -= 1
        if port > 1024 and _bindable(port, kinds):
            return port
    raise RuntimeError("no free port found")


def free_port_range(count: int) -> tuple[int, int]:
    """An even-aligned block of ``count`` UDP ports all currently free."""
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(20000, 60000 - count) & ~1
        if all(_bindable(p, (socket.SOCK_DGRAM,)) for p in range(low, low + count)):
            return low, low + count - 1
    raise RuntimeError("no free RTP port range found")


@dataclass(frozen=True)
class Ports:
    sip: int
    rtp_low: int
    rtp_high: int
    http: int


@pytest.fixture
def ports() -> Ports:
    low, high = free_port_range(200)
    return Ports(sip=free_port(), rtp_low=low, rtp_high=high, http=free_port((socket.SOCK_STREAM,)))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def crid() -> str:
    """A call-recording-id unique to this test run."""
    return f"E2E-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# SIP probing


def options_status(port: int, timeout: float = 0.3) -> int | None:
    """The status an out-of-dialog OPTIONS over UDP to 127.0.0.1:port gets (None: no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        local = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        call_id = uuid.uuid4().hex
        msg = (
            f"OPTIONS sip:srs@{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={branch[7:15]}\r\n"
            f"To: <sip:srs@{LOOPBACK}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        s.settimeout(timeout)
        try:
            s.sendto(msg.encode(), (LOOPBACK, port))
            while True:
                data = s.recv(65535)
                if call_id.encode() in data:
                    return int(data.split(b" ", 2)[1])
        except (OSError, ValueError, IndexError):
            return None


def sip_options_ok(port: int, transport_timeout: float = 0.3) -> bool:
    """True when an OPTIONS sent over UDP to 127.0.0.1:port is answered 200."""
    return options_status(port, transport_timeout) == 200


# ---------------------------------------------------------------------------------------------
# the daemon


@dataclass
class SrsDaemon:
    process: subprocess.Popen[bytes]
    ports: Ports
    data_dir: Path
    stderr_path: Path
    config_path: Path | None

    @property
    def sip_target(self) -> str:
        return f"{LOOPBACK}:{self.ports.sip}"

    def log_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                events.append(item)
        return events

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                return -9999
        return int(self.process.returncode)


def srs_command() -> list[str]:
    if SRS_BIN.exists():
        return [str(SRS_BIN)]
    return [sys.executable, "-m", "srs"]


@pytest.fixture
def start_srs(
    request: pytest.FixtureRequest, ports: Ports, data_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., SrsDaemon]]:
    """Factory: ``start_srs(config_toml=None)`` runs ``srs serve`` and waits until it answers OPTIONS."""
    started: list[SrsDaemon] = []

    def start(config_toml: str | None = None) -> SrsDaemon:
        assert not started, "one daemon per test"
        config_path = None
        cmd = [*srs_command(), "serve"]
        if config_toml is not None:
            config_path = tmp_path / "srs.toml"
            config_path.write_text(config_toml)
            cmd += ["--config", str(config_path)]
        cmd += [
            "--sip",
            f"{LOOPBACK}:{ports.sip}",
            "--rtp-ports",
            f"{ports.rtp_low}-{ports.rtp_high}",
            "--data-dir",
            str(data_dir),
            "--http",
            f"{LOOPBACK}:{ports.http}",
        ]
        stderr_path = tmp_path / "srs.stderr.log"
        with stderr_path.open("wb") as err:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=tmp_path)
        daemon = SrsDaemon(process, ports, data_dir, stderr_path, config_path)
        started.append(daemon)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"srs exited early with {process.returncode}:\n{daemon.log_text()}")
            if sip_options_ok(ports.sip):
                return daemon
            time.sleep(0.1)
        pytest.fail(f"srs not ready (no 200 to OPTIONS) within {READY_TIMEOUT_S} s:\n{daemon.log_text()}")

    yield start

    for daemon in started:
        code = daemon.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed or code != 0:
            print(f"----- srs stderr ({daemon.stderr_path}) -----\n{daemon.log_text()}")
        assert code == 0, f"srs exit code after SIGTERM: {code}"


@pytest.fixture
def srs_daemon(start_srs: Callable[..., SrsDaemon]) -> SrsDaemon:
    return start_srs()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item so fixtures can tell, at teardown, whether it failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# ---------------------------------------------------------------------------------------------
# pcaps


PCAP_SECONDS = {"basic": 5.0, "short": 2.0, "load": 1.0}


def make_pcap(
    path: Path,
    seconds: float,
    *,
    codec: str = "pcmu",
    seed: int = 7366,
    tones: str = "440,1000",
    level_dbfs: float = -12.0,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            str(MAKE_PCAP),
            str(path),
            "--seconds",
            str(seconds),
            "--tones",
            tones,
            "--level-dbfs",
            str(level_dbfs),
            "--codec",
            codec,
            "--seed",
            str(seed),
        ],
        check=True,
        timeout=60,
    )
    return path


# ---------------------------------------------------------------------------------------------
# SIPp


@dataclass(frozen=True)
class SipMessage:
    """One entry of SIPp's -trace_msg log."""

    time: float
    sent: bool
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    def header(self, name: str) -> str | None:
        match = re.search(rf"(?im)^{re.escape(name)}\s*:\s*(.*?)\s*$", self.text)
        return match.group(1) if match else None

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.header("CSeq") or "0 ?"
        number, method = value.split()
        return int(number), method.upper()

    @property
    def status(self) -> int | None:
        if self.first_line.startswith("SIP/2.0 "):
            return int(self.first_line.split()[1])
        return None

    @property
    def method(self) -> str | None:
        return None if self.status is not None else self.first_line.split(" ", 1)[0]

    @property
    def body(self) -> str:
        text = self.text.replace("\r\n", "\n")
        return text.split("\n\n", 1)[1] if "\n\n" in text else ""


_TRACE_ENTRY = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(\w+) message (sent|received) [\[(]\d+(?:[\])] bytes| bytes[\])]) ?:?\n\n",
    re.M,
)


def parse_message_trace(text: str) -> list[SipMessage]:
    matches = list(_TRACE_ENTRY.finditer(text))
    out = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(SipMessage(stamp, match.group(3) == "sent", text[match.end() : end].strip("\n")))
    return out


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    messages: list[SipMessage] = field(default_factory=list)
    errors: str = ""
    stats: str = ""

    def describe(self) -> str:
        trace = "\n\n".join(f"[{m.time:.3f}] {'>>' if m.sent else '<<'} {m.text}" for m in self.messages)
        return (
            f"sipp exit code {self.returncode}\n--- stderr ---\n{self.stderr[-3000:]}\n"
            f"--- errors ---\n{self.errors[-3000:]}\n--- stdout (tail) ---\n{self.stdout[-2500:]}\n"
            f"--- messages ---\n{trace[-12000:]}"
        )

    def find(
        self,
        *,
        sent: bool,
        status: int | None = None,
        method: str | None = None,
        cseq: tuple[int, str] | None = None,
    ) -> SipMessage:
        for m in self.messages:
            if m.sent != sent or (status is not None and m.status != status):
                continue
            if method is not None and m.method != method:
                continue
            if cseq is not None and m.cseq != cseq:
                continue
            return m
        raise AssertionError(
            f"no {'sent' if sent else 'received'} message {status or method} {cseq}\n" + self.describe()
        )


@pytest.fixture
def run_sipp(tmp_path: Path) -> Callable[..., SippResult]:
    """``run_sipp(scenario, *args, target, timeout=30, pcaps={name: path})``.

    The scenario is copied into a fresh working directory next to a ``pcap/`` folder holding the
    given captures, because SIPp resolves ``play_pcap_audio`` next to the scenario first.
    ``-m`` defaults to 1; ``-timeout`` is always set and makes SIPp fail when reached.
    """
    counter = iter(range(1000))

    def run(
        scenario: str, *args: str, target: str, timeout: float = 30.0, pcaps: dict[str, Path] | None = None
    ) -> SippResult:
        workdir = tmp_path / f"sipp-{next(counter)}-{Path(scenario).stem}"
        (workdir / "pcap").mkdir(parents=True)
        shutil.copy(SCENARIOS / scenario, workdir / scenario)
        for name, source in (pcaps or {}).items():
            shutil.copy(source, workdir / "pcap" / name)
        extra = list(args)
        if "-m" not in extra:
            extra += ["-m", "1"]
        cmd = [
            SIPP,
            target,
            "-sf",
            scenario,
            *extra,
            "-i",
            LOOPBACK,
            "-p",
            str(free_port((socket.SOCK_DGRAM, socket.SOCK_STREAM))),
            "-mi",
            LOOPBACK,
            "-mp",
            str(free_port((socket.SOCK_DGRAM,), even=True)),
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            "errors.log",
            "-trace_stat",
            "-stf",
            "stats.csv",
            "-trace_msg",
            "-message_file",
            "messages.log",
        ]
        try:
            proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout + 20)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = -9999, exc.stdout or b"", exc.stderr or b""

        def read(name: str) -> str:
            path = workdir / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(
            code,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            workdir,
            parse_message_trace(read("messages.log")),
            read("errors.log"),
            read("stats.csv"),
        )

    return run


# ---------------------------------------------------------------------------------------------
# the recordings CLI


def recordings_show(
    crid: str, data_dir: Path, timeout: float = 20.0
) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``srs recordings show --call-recording-id CRID --json``: (exit code, object or None, stderr)."""
    proc = subprocess.run(
        [
            *srs_command(),
            "recordings",
            "show",
            "--call-recording-id",
            crid,
            "--data-dir",
            str(data_dir),
            "--json",
        ],
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    try:
        obj = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        obj = None
    return (
        proc.returncode,
        obj if isinstance(obj, dict) else None,
        proc.stderr.decode(errors="replace") + (proc.stdout.decode(errors="replace") if obj is None else ""),
    )


def wait_recording(
    crid: str, data_dir: Path, state: str = "available", within: float = 1.0
) -> dict[str, Any]:
    """Poll the CLI until the recording reaches ``state`` within ``within`` s from now.

    One CLI run takes a while itself (interpreter start-up), so the budget is stretched by the
    slowest run seen: the recorder gets ``within`` s, not ``within`` minus the tool's latency.
    """
    started = time.monotonic()
    slowest = 0.0
    last: tuple[int, dict[str, Any] | None, str] = (0, None, "not tried")
    while True:
        before = time.monotonic()
        last = recordings_show(crid, data_dir)
        slowest = max(slowest, time.monotonic() - before)
        if last[1] is not None and last[1].get("state") == state:
            return last[1]
        if time.monotonic() >= started + within + slowest:
            raise AssertionError(
                f"recording {crid} not in state {state!r} within {within} s: "
                f"exit {last[0]}, object {last[1]}, output {last[2][-2000:]}"
            )
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# WAV analysis


@dataclass(frozen=True)
class Wav:
    sample_rate: int
    channels: int
    sample_width: int
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def read_wav(path: Path | str) -> Wav:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        samples = (
            np.frombuffer(frames, dtype="<i2") if w.getsampwidth() == 2 else np.frombuffer(frames, np.uint8)
        )
        return Wav(w.getframerate(), w.getnchannels(), w.getsampwidth(), samples.astype(np.int16))


def tone_level_dbfs(samples: np.ndarray, frequency: float, sample_rate: int = 8000) -> float:
    """Peak level of the sinusoid at exactly ``frequency`` (Hann-windowed projection), in dBFS."""
    x = samples.astype(np.float64)
    if len(x) < sample_rate // 10:
        return -200.0
    n = np.arange(len(x))
    window = np.hanning(len(x))
    projection = np.sum(window * x * np.exp(-2j * np.pi * frequency * n / sample_rate))
    amplitude = 2 * abs(projection) / np.sum(window)
    return float(20 * np.log10(max(amplitude, 1e-9) / 32767.0))


def rms_dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return float(20 * np.log10(max(rms, 1e-9) / 32767.0))


def segment(wav: Wav, start_s: float, end_s: float) -> np.ndarray:
    return wav.samples[max(0, int(start_s * wav.sample_rate)) : max(0, int(end_s * wav.sample_rate))]


@pytest.fixture(scope="session")
def pcap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pcaps")


@pytest.fixture(scope="session")
def pcaps(pcap_dir: Path) -> dict[str, Path]:
    """The captures the scenarios play, made once per session."""
    return {
        "basic_5s": make_pcap(pcap_dir / "basic_5s.pcap", 5.0),
        "pcmu_2s": make_pcap(pcap_dir / "pcmu_2s.pcap", 2.0),
        "pcmu_2s_b": make_pcap(pcap_dir / "pcmu_2s_b.pcap", 2.0, seed=2),
        "pcma_2s": make_pcap(pcap_dir / "pcma_2s.pcap", 2.0, codec="pcma", seed=3),
        "load_1s": make_pcap(pcap_dir / "load_1s.pcap", 1.0),
    }


# ---------------------------------------------------------------------------------------------
# the stand-in recorder (checks the clients themselves, without the daemon)


@dataclass
class StubSrs:
    process: subprocess.Popen[bytes]
    sip_port: int
    rtp_base: int

    @property
    def sip_target(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=10)
        assert self.process.returncode == 0, err.decode(errors="replace")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result


@pytest.fixture
def start_stub() -> Iterator[Callable[..., StubSrs]]:
    started: list[StubSrs] = []

    def start(answer_delay_ms: int = 0) -> StubSrs:
        sip_port = free_port()
        rtp_base, _ = free_port_range(100)
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("peer") / "stub_srs.py"),
                "--sip",
                f"{LOOPBACK}:{sip_port}",
                "--rtp-base",
                str(rtp_base),
                "--answer-delay-ms",
                str(answer_delay_ms),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stub = StubSrs(process, sip_port, rtp_base)
        started.append(stub)
        deadline = time.monotonic() + 10
        while not sip_options_ok(sip_port):
            assert time.monotonic() < deadline and process.poll() is None, "stub recorder did not start"
            time.sleep(0.05)
        return stub

    yield start
    for stub in started:
        if stub.process.poll() is None:
            stub.process.kill()
            stub.process.wait(5)
