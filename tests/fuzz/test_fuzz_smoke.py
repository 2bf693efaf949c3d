"""A short in-process pass over every fuzz target, so the targets and the runner cannot rot.

Every seed, then generated and mutated inputs per target: the only outcomes allowed are a
parsed result or the project's own ParseError (any other exception fails the test and
hypothesis shrinks it to a minimal input). The long coverage-guided runs are ``make fuzz``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.run import CORPUS, TARGET_NAMES
from tests.fuzz.targets import ALLOWED, MAX_LEN, TARGETS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = {name: sorted((CORPUS / name).iterdir()) for name in TARGET_NAMES}

RUNNER = (sys.executable, "-m", "tests.fuzz.run")
FUZZ_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_target(name: str, data: bytes) -> None:
    with contextlib.suppress(*ALLOWED):
        TARGETS[name](data)


_SPECIALS = [b"\r\n", b"\n", b":", b";", b",", b"<", b"&", b"--", b"\x00"]


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A seed with a few byte-level edits: truncation, overwrite, insertion, deletion, duplication."""
    data = bytearray(draw(st.sampled_from(SEEDS[name])).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["cut", "set", "insert", "delete", "repeat"]))
        if edit == "cut":
            del data[at:]
        elif edit == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.sampled_from(_SPECIALS))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif edit == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
    return bytes(data[: MAX_LEN[name]])


def test_every_target_has_seeds() -> None:
    assert set(TARGETS) == set(TARGET_NAMES)
    for name in TARGET_NAMES:
        assert SEEDS[name], f"no seed corpus for {name}"
    assert sum(p.stat().st_size for paths in SEEDS.values() for p in paths) < 1_000_000


@pytest.mark.parametrize(
    ("name", "seed"), [(name, path) for name in TARGET_NAMES for path in SEEDS[name]], ids=str
)
def test_seed(name: str, seed: Path) -> None:
    run_target(name, seed.read_bytes())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_generated_and_mutated_inputs(name: str) -> None:
    @FUZZ_SETTINGS
    @given(st.one_of(mutated(name), st.binary(max_size=512)))
    def check(data: bytes) -> None:
        run_target(name, data)

    check()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_runner_reports_json_per_target(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    result = subprocess.run(
        [*RUNNER, "--seconds", "5", "--target", "sip_udp", "--work", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["target"] == "sip_udp" and summary["crashes"] == 0
    assert summary["inputs"] > len(SEEDS["sip_udp"])
    assert summary["exec_per_s"] > 0


def test_runner_counts_a_crash() -> None:
    from tests.fuzz.run import _summarize

    output = "=== Uncaught Python exception: ===\nIndexError: x\nTest unit written to var/fuzz/crash-1\n"
    summary = _summarize("rtp", output, 1, 0.5)
    assert summary.crashes == 1 and summary.artifact == "var/fuzz/crash-1"
    assert summary.kind == "exception"
    assert summary.detail is not None and "IndexError" in summary.detail


def test_runner_counts_hangs_and_memory_blowups() -> None:
    from tests.fuzz.run import _summarize

    hang = _summarize("sdp", "==1== ERROR: libFuzzer: timeout after 2 seconds\n", 70, 3.0)
    oom = _summarize("sdp", "==1== ERROR: libFuzzer: out-of-memory (used: 2100Mb)\n", 71, 3.0)
    clean = _summarize(
        "sdp", "#1000\tDONE   cov: 10 ft: 10 exec/s: 500 rss: 60Mb\nDone 1000 runs in 2 second(s)\n", 0, 2.1
    )
    assert (hang.crashes, hang.kind) == (1, "timeout")
    assert (oom.crashes, oom.kind) == (1, "oom")
    assert (clean.crashes, clean.kind, clean.inputs, clean.exec_per_s) == (0, None, 1000, 500)


_SIP_TEXT = st.text(alphabet=st.sampled_from("abcXYZ019 .;,:=<>\"@/\\-_~!%*+`'[]?&\t\r\n\x00é"), max_size=40)


@st.composite
def sip_messages(draw: st.DrawFn) -> bytes:
    """Messages that get past the start line: the mandatory headers with grammar-stressing values."""
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "INFO", "UPDATE", "CANCEL", "X"]))
    start = draw(
        st.sampled_from(
            [f"{method} sip:srs@192.0.2.1 SIP/2.0", "SIP/2.0 200 OK", f"{method} tel:+123 SIP/2.0"]
        )
    )
    headers = [
        f"Via: SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} 192.0.2.10:5060"
        f";branch=z9hG4bK{draw(_SIP_TEXT)}",
        f"From: {draw(_SIP_TEXT)}<sip:a@b>;tag={draw(_SIP_TEXT)}",
        f"To: <sip:{draw(_SIP_TEXT)}@example.com>{draw(_SIP_TEXT)}",
        f"Call-ID: {draw(_SIP_TEXT)}",
        f"CSeq: {draw(st.integers(0, 2**32))} {method}",
    ]
    extra = draw(
        st.lists(st.tuples(st.sampled_from(["v", "m", "l", "c", "Contact", "X-A"]), _SIP_TEXT), max_size=4)
    )
    headers += [f"{name}:{value}" for name, value in extra]
    order = draw(st.permutations(headers))
    body = draw(st.binary(max_size=64))
    return ("\r\n".join([start, *order]) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body


@FUZZ_SETTINGS
@given(sip_messages())
def test_structured_sip_messages(data: bytes) -> None:
    for name in ("sip_udp", "siprec_ua"):
        run_target(name, data)
    run_target("sip_tcp", b"\x00" * 8 + data)
