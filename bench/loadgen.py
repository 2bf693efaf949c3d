"""A SIPREC load generator: N concurrent two-stream G.711 calls against srs, then a check of every WAV.

Call ``i`` starts at ``i / rate`` and lasts ``calls / rate + hold`` seconds, so all calls are up
together for ``hold`` seconds and they end as staggered as they began.  SIP (UDP) runs in this
process; RTP comes from ``senders`` child processes, each a tight loop over precomputed packets
(one ``sendto`` per packet, only the 12 header octets rewritten) so the generator is not what
limits the test.  Every stream carries its own tone (stream 1 of call i: 400 + 50·(i mod 12) Hz,
stream 2: 1200 + 50·(i mod 16) Hz; 20 ms is a whole number of periods, so one payload serves
every packet).

Afterwards every recording is checked in the index (available; per stream packets received equal
packets sent, none lost) and in its WAV (length equals the 200 OK → BYE span; no run of silence
inside; both tones present at the level sent).  Loopback only; bounded in time and count.

    python -m bench.loadgen --sip 127.0.0.1:5060 --data-dir ./var --calls 500 --rate 100 --hold 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import select
import socket
import sqlite3
import statistics
import struct
import sys
import threading
import time
import uuid
import wave
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

PTIME = 0.02
SAMPLES = 160
LEVEL = 8231  # -12 dBFS peak
T1 = 0.5
_M_LINE = re.compile(rb"^m=audio (\d+)", re.MULTILINE)
_HDR = struct.Struct("!BBHII")
_TICK = 0.001
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def tones(index: int) -> tuple[int, int]:
    return 400 + 50 * (index % 12), 1200 + 50 * (index % 16)


def _ulaw(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8))


def tone_payload(freq: int) -> bytes:
    t = np.arange(SAMPLES) / 8000.0
    return _ulaw(np.round(LEVEL * np.sin(2 * np.pi * freq * t)))


# --------------------------------------------------------------------------------------- RTP senders


def sender_main(conn: Connection, host: str) -> None:
    """One RTP sender process: ``("start", sid, port, ssrc, freq, t0)``, ``("stop", sid)``, ``("done",)``.

    Streams sit in 20 buckets of 1 ms by phase; each millisecond tick sends one packet for every
    stream of its bucket, so the loop never looks at a stream that is not due.  Replies
    ``("sent", sid, packets)`` to each stop, and ``("errors", send errors, worst lag s)`` at the end.
    """
    # On loopback a datagram's memory is charged to the sending socket until the receiver reads
    # it, so a send buffer of net.core.wmem_max (often 208 KiB) throttles the sender to the
    # receiver's backlog; take a large one where permitted.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 256 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 20)
    sock.bind((host, 0))
    slots = round(PTIME / _TICK)
    buckets: list[dict[int, list[Any]]] = [{} for _ in range(slots)]
    where: dict[int, int] = {}
    payloads: dict[int, bytes] = {}
    pack_into = _HDR.pack_into
    sendto = sock.sendto
    errors = 0
    worst_lag = 0.0
    running = True
    clock = time.monotonic
    tick0 = clock()
    done = 0
    while running:
        now_tick = int((clock() - tick0) / _TICK)
        if now_tick - done > 1:
            worst_lag = max(worst_lag, (now_tick - done) * _TICK)
        while done < now_tick:
            done += 1
            for st in buckets[done % slots].values():
                buf = st[0]
                pack_into(buf, 0, 0x80, 0, st[2] & 0xFFFF, st[3] & 0xFFFFFFFF, st[4])
                try:
                    sendto(buf, st[1])
                except OSError:
                    errors += 1
                    continue
                st[2] += 1
                st[3] += SAMPLES
                st[5] += 1
        while conn.poll():
            msg = conn.recv()
            if msg[0] == "start":
                _, sid, port, ssrc, freq, t0 = msg
                payload = payloads.get(freq)
                if payload is None:
                    payload = payloads[freq] = tone_payload(freq)
                first = max(done + 1, int((t0 - tick0) / _TICK))
                bucket = first % slots
                buckets[bucket][sid] = [
                    bytearray(12) + payload,
                    (host, port),
                    (ssrc >> 8) & 0xFFFF,
                    ssrc * 7 & 0xFFFFFFFF,
                    ssrc,
                    0,
                ]
                where[sid] = bucket
            elif msg[0] == "stop":
                bucket = where.pop(msg[1], -1)
                stopped = buckets[bucket].pop(msg[1], None) if bucket >= 0 else None
                conn.send(("sent", msg[1], stopped[5] if stopped is not None else 0))
            elif msg[0] == "done":
                running = False
                for sid, bucket in where.items():
                    conn.send(("sent", sid, buckets[bucket][sid][5]))
        wait = tick0 + (done + 1) * _TICK - clock()
        if wait > 0 and running:
            conn.poll(wait)
    conn.send(("errors", errors, worst_lag))


# --------------------------------------------------------------------------------------- SIP client


@dataclass
class Call:
    index: int
    call_id: str
    tag: str
    crid: str
    start_at: float
    end_at: float
    state: str = "new"  # new, inviting, up, byeing, done, failed
    sent_at: float = 0.0
    retries: int = 0
    ok_at: float = 0.0
    bye_at: float = 0.0
    done_at: float = 0.0
    to_header: bytes = b""
    ports: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=lambda: [0, 0])
    failure: str | None = None
    available_at: float = 0.0
    stopped: int = 0


def _invite(call: Call, target: str, local: str, media_port: int) -> bytes:
    host = target.split(":")[0]
    session = f"s{call.index}"
    sdp = (
        "v=0\r\n"
        f"o=SBC {call.index} 1 IN IP4 {host}\r\ns=SIPREC\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=ptime:20\r\na=sendonly\r\na=label:1\r\n"
        f"m=audio {media_port + 2} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=ptime:20\r\na=sendonly\r\na=label:2\r\n"
    )
    metadata = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>'
        f'<session session_id="{session}"><sipSessionID>{call.call_id}</sipSessionID>'
        '<extensiondata xmlns:ac="http://AudioCodes">'
        f"<ac:call-recording-id>{call.crid}</ac:call-recording-id></extensiondata></session>"
        '<participant participant_id="pa"><nameID aor="sip:alice@example.com"><name>Alice</name></nameID>'
        '</participant><participant participant_id="pb"><nameID aor="sip:bob@example.net"><name>Bob</name>'
        "</nameID></participant>"
        f'<stream stream_id="st1" session_id="{session}"><label>1</label></stream>'
        f'<stream stream_id="st2" session_id="{session}"><label>2</label></stream>'
        '<participantstreamassoc participant_id="pa"><send>st1</send><recv>st2</recv>'
        "</participantstreamassoc>"
        '<participantstreamassoc participant_id="pb"><send>st2</send><recv>st1</recv>'
        "</participantstreamassoc>"
        "</recording>\r\n"
    )
    body = (
        "--bnd7866\r\nContent-Type: application/sdp\r\n\r\n"
        + sdp
        + "\r\n--bnd7866\r\nContent-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n\r\n" + metadata + "--bnd7866--\r\n"
    ).encode()
    head = (
        f"INVITE sip:srs@{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{call.tag}i\r\n"
        f'From: "SBC" <sip:sbc@{local}>;tag={call.tag}\r\nTo: <sip:srs@{target}>\r\n'
        f"Call-ID: {call.call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc@{local}>;+sip.src\r\n"
        "Max-Forwards: 70\r\nRequire: siprec\r\nContent-Type: multipart/mixed;boundary=bnd7866\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def _in_dialog(call: Call, method: str, cseq: int, target: str, local: str, branch: str) -> bytes:
    return (
        f"{method} sip:srs@{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{call.tag}{branch}\r\n"
        f'From: "SBC" <sip:sbc@{local}>;tag={call.tag}\r\n'
        + call.to_header.decode()
        + f"\r\nCall-ID: {call.call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


@dataclass
class LoadResult:
    calls: int
    failed_setup: int
    failures: list[str]
    setup_times: list[float]
    bye_to_available: list[float]
    calls_ok: list[Call]
    sender_errors: int
    concurrent_peak: int


class AvailabilityWatcher(threading.Thread):
    """Polls the index for recordings whose BYE was sent until each is ``available`` (or ``failed``)."""

    def __init__(self, index_path: Path) -> None:
        super().__init__(daemon=True)
        self.index_path = index_path
        self.pending: dict[str, Call] = {}
        self.lock = threading.Lock()
        self.stop = False

    def add(self, call: Call) -> None:
        with self.lock:
            self.pending[call.crid] = call

    def run(self) -> None:
        db = sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True, timeout=5)
        while not self.stop or self.pending:
            with self.lock:
                crids = list(self.pending)[:500]
            if crids:
                marks = ",".join("?" * len(crids))
                try:
                    rows = db.execute(
                        "SELECT call_recording_id, state FROM recordings"
                        f" WHERE call_recording_id IN ({marks})",
                        crids,
                    ).fetchall()
                except sqlite3.OperationalError:
                    rows = []
                now = time.monotonic()
                with self.lock:
                    for crid, state in rows:
                        if state in ("available", "failed") and crid in self.pending:
                            self.pending.pop(crid).available_at = now
            if self.stop and not crids:
                break
            time.sleep(0.005)
        db.close()


def run_load(
    target: str,
    data_dir: Path,
    *,
    calls: int,
    rate: float,
    hold: float,
    senders: int = 1,
    prefix: str | None = None,
    bind: str = "127.0.0.1",
    timeout: float = 600.0,
) -> LoadResult:
    prefix = prefix or f"LOAD-{uuid.uuid4().hex[:8]}"
    duration = calls / rate + hold
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((bind, 0))
    sock.setblocking(False)
    local = f"{bind}:{sock.getsockname()[1]}"
    host, port = target.rsplit(":", 1)
    dest = (host, int(port))
    ctx = mp.get_context("fork")
    pipes: list[Connection] = []
    procs = []
    for _ in range(max(1, senders)):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=sender_main, args=(theirs, bind), daemon=True)
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    watcher = AvailabilityWatcher(data_dir / "index.sqlite3")
    t0 = time.monotonic() + 0.2
    table = [
        Call(
            i,
            f"{prefix}-{i}@bench",
            uuid.uuid4().hex[:10],
            f"{prefix}-{i}",
            t0 + i / rate,
            t0 + i / rate + duration,
        )
        for i in range(calls)
    ]
    by_id = {c.call_id.encode(): c for c in table}
    waiting = list(table)  # not yet started, in start order
    active: dict[str, Call] = {}
    next_start = 0
    live = 0
    peak = 0
    deadline = t0 + duration + timeout
    media_port = 40000
    watcher_started = False

    def send(data: bytes) -> None:
        try:
            sock.sendto(data, dest)
        except BlockingIOError:
            select.select([], [sock], [], 0.05)
            sock.sendto(data, dest)

    while (next_start < len(waiting) or active) and time.monotonic() < deadline:
        now = time.monotonic()
        while next_start < len(waiting) and waiting[next_start].start_at <= now:
            call = waiting[next_start]
            next_start += 1
            call.state = "inviting"
            call.sent_at = now
            active[call.call_id] = call
            send(_invite(call, target, local, media_port))
        for call in list(active.values()):
            if call.state == "inviting" and now - call.sent_at > T1 * (2**call.retries):
                call.retries += 1
                if call.retries > 5:
                    call.state, call.failure = "failed", "INVITE timed out"
                    active.pop(call.call_id)
                else:
                    send(_invite(call, target, local, media_port))
            elif call.state == "up" and now >= call.end_at:
                # the BYE goes out once both senders confirm their last packet is sent
                for s in range(2):
                    pipes[(2 * call.index + s) % len(pipes)].send(("stop", 2 * call.index + s))
                call.state = "stopping"
                live -= 1
            elif call.state == "byeing" and now - call.sent_at > T1 * (2**call.retries):
                call.retries += 1
                call.sent_at = now
                if call.retries > 5:
                    call.state, call.failure = "failed", "BYE timed out"
                    active.pop(call.call_id)
                else:  # a retransmission is the same request, same branch (RFC 3261 §17.1.2)
                    send(_in_dialog(call, "BYE", 2, target, local, "b0"))
        for pipe in pipes:
            while pipe.poll():
                msg = pipe.recv()
                if msg[0] != "sent":
                    continue
                call = table[msg[1] // 2]
                call.sent[msg[1] % 2] = msg[2]
                call.stopped += 1
                if call.stopped == 2 and call.state == "stopping":
                    call.state = "byeing"
                    call.bye_at = call.sent_at = time.monotonic()
                    call.retries = 0
                    send(_in_dialog(call, "BYE", 2, target, local, "b0"))
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                break
            head, _, body = data.partition(b"\r\n\r\n")
            if not head.startswith(b"SIP/2.0 "):
                continue
            status = int(head[8:11])
            answered = by_id.get(_header(head, b"call-id") or _header(head, b"i"))
            if answered is None:
                continue
            call = answered
            method = _header(head, b"cseq").split(b" ")[-1]
            now = time.monotonic()
            if method == b"INVITE":
                if status < 200:
                    continue
                if status >= 300:
                    # the ACK of a non-2xx answer belongs to the INVITE's transaction (§17.1.1.3)
                    to_line = next(
                        (ln for ln in head.split(b"\r\n") if ln.lower().startswith((b"to:", b"t:"))), b""
                    )
                    call.to_header = b"To: " + to_line.partition(b":")[2].strip()
                    send(_in_dialog(call, "ACK", 1, target, local, "i"))
                    if call.state == "inviting":
                        call.state, call.failure = "failed", f"INVITE answered {status}"
                        active.pop(call.call_id, None)
                    continue
                to_line = next(
                    (ln for ln in head.split(b"\r\n") if ln.lower().startswith((b"to:", b"t:"))), b""
                )
                call.to_header = b"To: " + to_line.partition(b":")[2].strip()
                send(_in_dialog(call, "ACK", 1, target, local, "ack"))
                if call.state != "inviting":
                    continue
                call.ok_at = now
                call.state = "up"
                call.ports = [int(p) for p in _M_LINE.findall(body)]
                live += 1
                peak = max(peak, live)
                f1, f2 = tones(call.index)
                for s, freq in enumerate((f1, f2)):
                    sid = 2 * call.index + s
                    if s < len(call.ports) and call.ports[s]:
                        pipes[sid % len(pipes)].send(
                            ("start", sid, call.ports[s], 0x10000 + sid, freq, now + 0.01)
                        )
                    else:
                        call.stopped += 1
            elif method == b"BYE" and call.state == "byeing" and status >= 200:
                call.done_at = now
                call.state = "done" if status < 300 else "failed"
                if status >= 300:
                    call.failure = f"BYE answered {status}"
                active.pop(call.call_id, None)
                if status < 300:
                    if not watcher_started:
                        watcher.start()
                        watcher_started = True
                    watcher.add(call)
        timeout_s = 0.002
        if next_start < len(waiting):
            timeout_s = max(0.0, min(timeout_s, waiting[next_start].start_at - time.monotonic()))
        select.select([sock], [], [], timeout_s)
    # collect packet counts
    for p in pipes:
        p.send(("done",))
    sender_errors = 0
    for p in pipes:
        while True:
            msg = p.recv()
            if msg[0] == "sent":
                sid = msg[1]
                table[sid // 2].sent[sid % 2] = msg[2]
            elif msg[0] == "errors":
                sender_errors += msg[1]
                break
    for proc in procs:
        proc.join(5)
    watcher.stop = True
    if watcher_started:
        watcher.join(60)
    failures = [f"{c.crid}: {c.failure or c.state}" for c in table if c.state != "done"]
    ok = [c for c in table if c.state == "done"]
    return LoadResult(
        calls=calls,
        failed_setup=len(failures),
        failures=failures,
        setup_times=[c.ok_at - c.start_at for c in ok],
        bye_to_available=[c.available_at - c.bye_at for c in ok if c.available_at],
        calls_ok=ok,
        sender_errors=sender_errors,
        concurrent_peak=peak,
    )


# --------------------------------------------------------------------------------------- checking


def check_recording(call: Call, row: dict[str, Any]) -> list[str]:
    """Everything that is wrong with one call's recording (empty when it is complete and right)."""
    problems: list[str] = []
    if row.get("state") != "available":
        return [f"state {row.get('state')}"]
    completeness = json.loads(row.get("completeness") or "{}")
    streams = completeness.get("streams", {})
    for s, label in enumerate(("1", "2")):
        st = streams.get(label)
        if st is None:
            problems.append(f"stream {label} missing")
            continue
        if st.get("packets_received") != call.sent[s]:
            problems.append(f"stream {label}: received {st.get('packets_received')} of {call.sent[s]} sent")
        if st.get("packets_lost"):
            problems.append(f"stream {label}: {st['packets_lost']} lost")
    path = row.get("file_path")
    if not path or not os.path.exists(path):
        return [*problems, "no file"]
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            return [*problems, "not 8 kHz mono 16-bit"]
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    span = call.bye_at - call.ok_at
    if abs(len(pcm) / 8000 - span) > 0.25:
        problems.append(f"length {len(pcm) / 8000:.2f} s, call {span:.2f} s")
    inner = pcm[int(0.3 * 8000) : len(pcm) - int(0.3 * 8000)]
    if len(inner) >= 8000:
        silent = np.flatnonzero(np.diff(np.flatnonzero(inner != 0)) > 80)
        if len(silent):
            problems.append(f"{len(silent)} gaps of silence inside the call")
        mid = len(pcm) // 2 - 4000
        spectrum = np.abs(np.fft.rfft(pcm[mid : mid + 8000].astype(np.float64))) * 2 / 8000
        for freq in tones(call.index):
            level = spectrum[freq]
            if not 0.8 * LEVEL < level < 1.2 * LEVEL:
                problems.append(f"tone {freq} Hz at {level:.0f}, sent {LEVEL}")
    return problems


def verify(result: LoadResult, data_dir: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    bad: dict[str, list[str]] = {}
    lost = 0
    received = 0
    for call in result.calls_ok:
        row = db.execute(
            "SELECT * FROM recordings WHERE call_recording_id = ? ORDER BY started_at DESC LIMIT 1",
            (call.crid,),
        ).fetchone()
        if row is None:
            bad[call.crid] = ["not in the index"]
            continue
        record = dict(row)
        problems = check_recording(call, record)
        streams = json.loads(record.get("completeness") or "{}").get("streams", {})
        for s, label in enumerate(("1", "2")):
            got = int(streams.get(label, {}).get("packets_received") or 0)
            received += got
            lost += max(0, call.sent[s] - got)
        if problems:
            bad[call.crid] = problems
    db.close()
    return {
        "recordings_checked": len(result.calls_ok),
        "recordings_bad": len(bad),
        "packets_sent": sum(sum(c.sent) for c in result.calls_ok),
        "packets_received": received,
        "packets_lost": lost,
        "examples": dict(list(bad.items())[:5]),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(result: LoadResult, checked: dict[str, Any]) -> dict[str, Any]:
    ms = 1000.0
    b2a = result.bye_to_available
    return {
        "calls": result.calls,
        "concurrent_peak": result.concurrent_peak,
        "failed_calls": result.failed_setup,
        "failures": result.failures[:5],
        "setup_ms_p50": round((statistics.median(result.setup_times) if result.setup_times else 0) * ms, 2),
        "bye_to_available_ms_p50": round((percentile(b2a, 50) or 0) * ms, 1),
        "bye_to_available_ms_p99": round((percentile(b2a, 99) or 0) * ms, 1),
        "sender_errors": result.sender_errors,
        **checked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--sip", default="127.0.0.1:5060", help="srs SIP address (UDP)")
    parser.add_argument("--data-dir", required=True, type=Path, help="srs data directory (index and WAVs)")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds all calls are up together")
    parser.add_argument("--senders", type=int, default=1, help="RTP sender processes")
    args = parser.parse_args(argv)
    if args.calls > 20000 or args.rate <= 0:
        parser.error("--calls at most 20000, --rate > 0")
    result = run_load(
        args.sip, args.data_dir, calls=args.calls, rate=args.rate, hold=args.hold, senders=args.senders
    )
    time.sleep(0.5)
    print(json.dumps(summary(result, verify(result, args.data_dir)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
