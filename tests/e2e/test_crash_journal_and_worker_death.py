"""The crash journal and surviving a media worker's death, end to end (real daemon, real RTP).

A SIPREC call is placed from this process (SIP over UDP, two PCMU tone streams sent every 20 ms
from two sockets), so the test knows exactly which packets left before a kill:

- kill -9 of the whole process group (daemon, media worker, index writer) right after a flush of
  the WAV, between two and just before the next one, then a restart on the same data dir: the
  repaired file misses at most 100 ms of the audio that was sent, and is ``incomplete`` with the
  reason;
- SIGKILL of the media worker alone mid-call: the call stays up (srs sends no BYE), a new worker
  continues the same file, which is whole except at most 100 ms, and the recording's completeness
  report names the interruption. The index showed real packet counters while the call was live.

Loss is measured from the file: the two tones fill every sample from the first packet's place to
the last one's, so the recorded span plus the holes in it against the packets sent is the loss.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.loadgen import Call, _in_dialog, _invite, tone_payload
from tests.e2e.conftest import (
    LOOPBACK,
    Ports,
    Wav,
    free_port,
    read_wav,
    recordings_show,
    segment,
    sip_options_ok,
    srs_command,
    tone_level_dbfs,
    wait_recording,
)
from tests.e2e.recording_checks import LEVEL_DBFS

pytestmark = pytest.mark.e2e

MAX_LOSS_MS = 100.0
_M_LINE = re.compile(r"^m=audio (\d+)", re.MULTILINE)


def _launch(ports: Ports, data_dir: Path, log: Path, config: str | None = None) -> subprocess.Popen[bytes]:
    """``srs serve`` as the leader of its own process group (so the group can be killed whole)."""
    cmd = [*srs_command(), "serve"]
    if config is not None:
        path = log.with_suffix(".toml")
        path.write_text(config)
        cmd += ["--config", str(path)]
    cmd += [
        "--sip", f"{LOOPBACK}:{ports.sip}",
        "--rtp-ports", f"{ports.rtp_low}-{ports.rtp_high}",
        "--data-dir", str(data_dir),
        "--http", "off",
    ]  # fmt: skip
    with log.open("ab") as err:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if sip_options_ok(ports.sip):
            return process
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"srs not ready:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
            return -9999
    return int(process.returncode)


def _media_worker_pid(daemon_pid: int) -> int:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == daemon_pid and b"srs.mediaplane.worker_loop" in cmdline:
            return int(name)
    raise AssertionError("no media worker found")


class SiprecCall:
    """One two-stream call from this process: INVITE/ACK/BYE over UDP, RTP paced at 20 ms."""

    def __init__(self, target_port: int, crid: str) -> None:
        self.target = f"{LOOPBACK}:{target_port}"
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((LOOPBACK, 0))
        self.local = f"{LOOPBACK}:{self.sip.getsockname()[1]}"
        self.media, self.rtp = self._media_sockets()
        now = time.monotonic()
        self.call = Call(0, f"{uuid.uuid4().hex}@e2e", uuid.uuid4().hex[:10], crid, now, now + 60)
        self.payloads = (tone_payload(400), tone_payload(1200))
        self.lock = threading.Lock()
        self.sent = 0
        self.stopped = False
        self.byes_from_srs: list[bytes] = []
        self.bye_answered = threading.Event()
        self.srs_ports: list[int] = []
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _media_sockets() -> tuple[int, list[socket.socket]]:
        """Two sockets on P and P+2 (the offer's m-lines), P even; others may take ports meanwhile."""
        for _ in range(50):
            media = free_port((socket.SOCK_DGRAM,), even=True)
            bound: list[socket.socket] = []
            try:
                for port in (media, media + 2):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    bound.append(sock)
                    sock.bind((LOOPBACK, port))
            except OSError:
                for sock in bound:
                    sock.close()
                continue
            return media, bound
        raise AssertionError("no two free media ports")

    def invite(self) -> None:
        message = _invite(self.call, self.target, self.local, self.media)
        host, port = self.target.split(":")
        self.sip.settimeout(0.5)
        deadline = time.monotonic() + 10
        self.sip.sendto(message, (host, int(port)))
        while True:
            assert time.monotonic() < deadline, "no 200 OK to the INVITE"
            try:
                data, _ = self.sip.recvfrom(65535)
            except TimeoutError:
                self.sip.sendto(message, (host, int(port)))
                continue
            if data.startswith(b"SIP/2.0 200"):
                break
            assert not data.startswith((b"SIP/2.0 4", b"SIP/2.0 5", b"SIP/2.0 6")), data[:200]
        head, _, body = data.partition(b"\r\n\r\n")
        to = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"to:"))
        self.call.to_header = to
        self.srs_ports = [int(p) for p in _M_LINE.findall(body.decode())]
        assert len(self.srs_ports) == 2, body
        self.sip.sendto(_in_dialog(self.call, "ACK", 1, self.target, self.local, "a"), (host, int(port)))
        for target in (self._listen, self._send_rtp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _listen(self) -> None:
        """Answers a BYE from srs (and remembers it) and notes the 200 OK to ours."""
        self.sip.settimeout(0.2)
        while not self.bye_answered.is_set():
            try:
                data, addr = self.sip.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.startswith(b"BYE "):
                self.byes_from_srs.append(data)
                head = data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
                names = (b"via", b"from", b"to", b"call-id", b"cseq")
                keep = [h for h in head if h.lower().split(b":")[0].strip() in names]
                ok = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"
                self.sip.sendto(ok, addr)
            elif data.startswith(b"SIP/2.0 200") and b" BYE" in data:
                self.bye_answered.set()

    def _send_rtp(self) -> None:
        t0 = time.monotonic()
        i = 0
        while True:
            with self.lock:
                if self.stopped:
                    return
                for k, sock in enumerate(self.rtp):
                    header = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 160 * i, k + 1)
                    sock.sendto(header + self.payloads[k], (LOOPBACK, self.srs_ports[k]))
                self.sent = i + 1
            i += 1
            delay = t0 + i * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop_rtp(self) -> int:
        """Stops sending; returns the packets sent per stream."""
        with self.lock:
            self.stopped = True
            return self.sent

    def bye(self) -> None:
        host, port = self.target.split(":")
        message = _in_dialog(self.call, "BYE", 2, self.target, self.local, "b")
        for _ in range(10):
            self.sip.sendto(message, (host, int(port)))
            if self.bye_answered.wait(0.5):
                return
        raise AssertionError("no 200 OK to the BYE")

    def close(self) -> None:
        self.stop_rtp()
        self.bye_answered.set()
        for thread in self._threads:
            thread.join(2)
        for sock in (self.sip, *self.rtp):
            sock.close()


def _wav_path(data_dir: Path, within: float = 10.0) -> Path:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [p for p in data_dir.rglob("*.wav")]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no WAV appeared")


def _wait_flush(path: Path, within: float = 5.0) -> None:
    """Returns right after the WAV grew (a flush just wrote a block)."""
    size = path.stat().st_size
    deadline = time.monotonic() + within
    while path.stat().st_size == size:
        assert time.monotonic() < deadline, "the WAV did not grow"
        time.sleep(0.002)


def _loss_ms(samples: np.ndarray, sent: int) -> tuple[float, float, float]:
    """(audio sent but not in the file, holes inside it) in ms, and where the audio starts (s): the
    tones leave no sample at zero for long, so the span from the first audible sample to the last,
    less its holes, is what arrived in the file (audio written twice would make it longer than
    what was sent, audio written over other audio shorter)."""
    audible = np.flatnonzero(samples != 0)
    assert len(audible), "the file holds no audio"
    first, last = int(audible[0]), int(audible[-1])
    steps = np.diff(audible)
    holes = int(np.sum(steps[steps > 16] - 1))  # runs of more than 2 ms of exact zeros
    recorded = (last - first + 1 - holes) / 8000
    return (sent * 0.02 - recorded) * 1000, holes / 8, first / 8000


def _check_tones(wav: Wav, start_s: float, end_s: float, what: str) -> None:
    """Both tones at the level sent (the two streams mixed) over [start_s, end_s]."""
    part = segment(wav, start_s, end_s)
    assert len(part) >= 0.3 * wav.sample_rate, (what, start_s, end_s)
    for frequency in (400.0, 1200.0):
        level = tone_level_dbfs(part, frequency)
        assert abs(level - LEVEL_DBFS) <= 3.0, f"{what}: {frequency} Hz at {level:.1f} dBFS"


@pytest.mark.parametrize("moment", [0.02, 0.93, 1.9, None])
def test_kill_9_of_the_process_group_loses_at_most_100_ms(
    ports: Ports, data_dir: Path, tmp_path: Path, crid: str, moment: float | None
) -> None:
    """Killed ``moment`` s after a flush of the WAV (the flush interval is 2 s), or (None) 0.6 s into
    the call, when at most a first block of it was written."""
    log = tmp_path / "srs.log"
    first = _launch(ports, data_dir, log)
    call = SiprecCall(ports.sip, crid)
    try:
        call.invite()
        wav_path = _wav_path(data_dir)
        if moment is None:
            time.sleep(0.6)
        else:
            time.sleep(2.0)
            _wait_flush(wav_path)
            time.sleep(moment)
        with call.lock:
            os.killpg(first.pid, signal.SIGKILL)
            sent = call.sent
            call.stopped = True
        first.wait(5)
    finally:
        call.close()
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(5)
    second = _launch(ports, data_dir, log)
    try:
        rec = wait_recording(crid, data_dir, "available", within=10.0)
        assert rec["incomplete"] is True, rec
        assert "crash journal" in rec["incomplete_reason"], rec["incomplete_reason"]
        wav = read_wav(rec["file"]["path"])
        assert (wav.sample_rate, wav.channels, wav.sample_width) == (8000, 1, 2)
        lost, holes, first = _loss_ms(wav.samples, sent)
        when = "0.6 s into the call" if moment is None else f"{moment:.2f} s after a flush"
        print(f"kill -9 of the group {when}, {sent * 0.02:.2f} s sent: "
              f"{lost:.1f} ms missing ({holes:.1f} ms in holes)")  # fmt: skip
        assert abs(lost) <= MAX_LOSS_MS, (lost, holes, sent)
        assert holes <= MAX_LOSS_MS, (lost, holes, sent)
        _check_tones(wav, first + 0.05, first + sent * 0.02 - 0.05, "the whole call")
        if sent * 0.02 > 1.0:
            _check_tones(wav, first + sent * 0.02 - 0.6, first + sent * 0.02 - 0.05, "its last half second")
        assert not list(data_dir.rglob("*.journal")), "the journal was not removed after its replay"
    finally:
        assert _stop(second) == 0, log.read_text()


def test_without_the_journal_the_same_kill_loses_the_unflushed_audio(
    ports: Ports, data_dir: Path, tmp_path: Path, crid: str
) -> None:
    """The defect the journal removes, measured the same way (so the measurement can fail)."""
    log = tmp_path / "srs.log"
    config = "[media]\njournal = false\n"
    first = _launch(ports, data_dir, log, config)
    call = SiprecCall(ports.sip, crid)
    try:
        call.invite()
        wav_path = _wav_path(data_dir)
        time.sleep(2.0)
        _wait_flush(wav_path)
        time.sleep(0.93)
        with call.lock:
            os.killpg(first.pid, signal.SIGKILL)
            sent = call.sent
            call.stopped = True
        first.wait(5)
    finally:
        call.close()
    second = _launch(ports, data_dir, log, config)
    try:
        rec = wait_recording(crid, data_dir, "available", within=10.0)
        assert "crash journal" not in rec["incomplete_reason"], rec["incomplete_reason"]
        lost, _holes, _first = _loss_ms(read_wav(rec["file"]["path"]).samples, sent)
        print(f"without the journal: kill -9 0.93 s after a flush, {sent * 0.02:.2f} s sent: "
              f"{lost:.0f} ms missing")  # fmt: skip
        assert lost >= 1000, lost
    finally:
        assert _stop(second) == 0, log.read_text()


def test_a_killed_media_worker_is_replaced_and_the_call_goes_on(
    ports: Ports, data_dir: Path, tmp_path: Path, crid: str
) -> None:
    log = tmp_path / "srs.log"
    daemon = _launch(ports, data_dir, log)
    call = SiprecCall(ports.sip, crid)
    try:
        call.invite()
        wav_path = _wav_path(data_dir)
        # the live call's packet counters reach the index (written every few seconds)
        deadline = time.monotonic() + 12
        live: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            _, live, _ = recordings_show(crid, data_dir)
            if live and live.get("streams") and all(s["packets_received"] > 0 for s in live["streams"]):
                break
            time.sleep(0.3)
        assert live is not None and live["state"] == "recording", live
        assert all(s["packets_received"] > 0 for s in live["streams"]), live["streams"]
        _wait_flush(wav_path)
        time.sleep(0.6)
        worker = _media_worker_pid(daemon.pid)
        os.kill(worker, signal.SIGKILL)
        killed_after = call.sent * 0.02
        time.sleep(4.0)
        assert _media_worker_pid(daemon.pid) != worker
        sent = call.stop_rtp()
        # the first call after start-up has its first packet read late (the worker warms up), so
        # its stream is placed that much after arrival, up to the 2 s jump threshold, and the file
        # ends at the BYE: leave the last packets time to be inside (this test is about the crash)
        time.sleep(2.2)
        call.bye()
        assert call.byes_from_srs == [], "srs hung up the call"
    finally:
        call.close()
    try:
        rec = wait_recording(crid, data_dir, "available", within=10.0)
        assert rec["incomplete"] is not True, rec
        interruptions = rec["completeness"].get("interruptions")
        assert interruptions, rec["completeness"]
        assert interruptions[0]["reason"] == "media worker exited (signal 9)", interruptions
        gap = interruptions[0]
        assert abs(gap["at_ms"] / 1000 - killed_after) < 1.0, (gap, killed_after)
        assert gap["replayed_packets"] > 0, gap
        assert any("media worker exited" in w for w in rec["warnings"]), rec["warnings"]
        wav = read_wav(rec["file"]["path"])
        lost, holes, first = _loss_ms(wav.samples, sent)
        print(f"media worker killed {killed_after:.2f} s into the call, {sent * 0.02:.2f} s sent: "
              f"{lost:.1f} ms missing ({holes:.1f} ms in holes); {gap}")  # fmt: skip
        assert abs(lost) <= MAX_LOSS_MS, (lost, holes, sent)
        assert holes <= MAX_LOSS_MS, (lost, holes, sent)
        crash = first + killed_after
        _check_tones(wav, first + 0.1, crash - 0.1, "before the worker died")
        _check_tones(wav, crash - 0.5, crash + 0.5, "across the worker's death")
        _check_tones(wav, crash + 0.1, first + sent * 0.02 - 0.1, "after it was replaced")
        for stream in rec["streams"]:
            assert stream["packets_received"] >= sent - 5, (stream, sent)
    finally:
        assert _stop(daemon) == 0, log.read_text()
