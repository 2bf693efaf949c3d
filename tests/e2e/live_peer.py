"""A Python SIPREC client for the live-audio tests: INVITE, ACK, RTP with a known send time per
packet, BYE. Everything goes to 127.0.0.1 only; a call is a few hundred packets at most.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from srs.service.live_formats import ulaw_encode
from tests.unit.siprec.sbc import METADATA, audio, crlf, multipart, request, sdp

LOOPBACK = "127.0.0.1"


def tone(freq: float, start_sample: int, count: int = 160, level: float = 8000.0) -> np.ndarray:
    t = (np.arange(count) + start_sample) / 8000.0
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    header = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return header + payload


@dataclass
class Call:
    sip: socket.socket
    target: tuple[str, int]
    call_id: str
    from_tag: str
    to_tag: str
    rtp_ports: list[int]
    rtp: list[socket.socket]
    sent: list[list[tuple[float, bytes]]] = field(default_factory=lambda: [[], []])
    """Per stream: (monotonic send time, µ-law payload) of each audio packet, in order."""
    seq: list[int] = field(default_factory=lambda: [1000, 5000])
    ts: list[int] = field(default_factory=lambda: [160000, 320000])
    ssrc: tuple[int, int] = (0x1111, 0x2222)
    cseq: int = 1

    def send_audio(self, pcm: list[np.ndarray]) -> float:
        """One 20 ms packet per stream, back to back; returns the send time of the last one."""
        sent_at = 0.0
        for i, samples in enumerate(pcm):
            payload = ulaw_encode(samples)
            packet = rtp(0, self.seq[i], self.ts[i], self.ssrc[i], payload)
            sent_at = time.monotonic()
            self.rtp[i].sendto(packet, (LOOPBACK, self.rtp_ports[i]))
            self.sent[i].append((sent_at, payload))
            self.seq[i] += 1
            self.ts[i] += len(samples)
        return sent_at

    def send_raw(self, stream: int, packets: list[tuple[int, int, bytes]]) -> float:
        """Send prepared (seq, ts, payload) packets of one stream in the given order."""
        sent_at = 0.0
        for seq, ts, payload in packets:
            sent_at = time.monotonic()
            packet = rtp(0, seq, ts, self.ssrc[stream], payload)
            self.rtp[stream].sendto(packet, (LOOPBACK, self.rtp_ports[stream]))
        return sent_at

    def send_dtmf(self, stream: int, event: int) -> None:
        ts = self.ts[stream]
        for n, duration in enumerate((160, 320, 480, 480, 480)):
            end = 0x80 if n >= 2 else 0
            payload = struct.pack("!BBH", event, end | 10, duration)
            packet = rtp(101, self.seq[stream], ts, self.ssrc[stream], payload, marker=n == 0)
            self.rtp[stream].sendto(packet, (LOOPBACK, self.rtp_ports[stream]))
            self.seq[stream] += 1
            time.sleep(0.02)
        self.ts[stream] += 480

    def bye(self) -> None:
        self.cseq += 1
        local = self.sip.getsockname()
        message = request(
            "BYE", call_id=self.call_id, from_tag=self.from_tag, to_tag=self.to_tag, cseq=self.cseq,
            branch="z9hG4bK" + secrets.token_hex(6), uri=f"sip:srs@{self.target[0]}:{self.target[1]}",
        )
        self.sip.sendto(_local(message, local), self.target)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = self.sip.recv(65535)
            if data.startswith(b"SIP/2.0 200") and f"CSeq: {self.cseq} BYE".encode() in data:
                break
        self.close()

    def close(self) -> None:
        for sock in (*self.rtp, self.sip):
            sock.close()


def _local(message: bytes, local: tuple[str, int]) -> bytes:
    return message.replace(b"192.0.2.10:5060", f"{local[0]}:{local[1]}".encode())


def place_call(sip_port: int, crid: str | None = None, timeout: float = 10.0) -> Call:
    """INVITE with two labelled PCMU streams and the RFC 7865 metadata of two participants."""
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind((LOOPBACK, 0))
    sip.settimeout(timeout)
    rtp_socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOOPBACK, 0))
        rtp_socks.append(s)
    offer = sdp(
        audio(rtp_socks[0].getsockname()[1], "1"), audio(rtp_socks[1].getsockname()[1], "2"),
        connection=LOOPBACK,
    )
    # RFC 7865 stream associations: Alice sends stream "1", Bob sends stream "2"
    metadata = METADATA.replace(b"</recording>", (
        b'<participantstreamassoc participant_id="srfBElmCRp2QB23b7Mpk0w==">'
        b"<send>UAAMm5GRQKSCMVvLyl4rFw==</send><recv>i1Pz3to5hGk8fuXl+PbwCw==</recv></participantstreamassoc>"
        b'<participantstreamassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==">'
        b"<send>i1Pz3to5hGk8fuXl+PbwCw==</send><recv>UAAMm5GRQKSCMVvLyl4rFw==</recv></participantstreamassoc>"
        b"</recording>"
    ))
    if crid is not None:  # as an AudioCodes SBC sends it
        metadata = metadata.replace(b"</sipSessionID>", (
            '</sipSessionID><extensiondata xmlns:ac="http://AudioCodes">'
            f"<ac:call-recording-id>{crid}</ac:call-recording-id></extensiondata>"
        ).encode())
    body = multipart(("application/sdp", offer), ("application/rs-metadata+xml", metadata))
    call_id = secrets.token_hex(8) + "@sbc.test"
    from_tag = secrets.token_hex(4)
    target = (LOOPBACK, sip_port)
    invite = request(
        "INVITE", call_id=call_id, from_tag=from_tag, extra=[("Require", "siprec")], content=body,
        uri=f"sip:srs@{LOOPBACK}:{sip_port}",
    )
    sip.sendto(_local(invite, sip.getsockname()), target)
    deadline = time.monotonic() + timeout
    answer = b""
    while time.monotonic() < deadline:
        data = sip.recv(65535)
        if data.startswith(b"SIP/2.0 200"):
            answer = data
            break
        if re.match(rb"SIP/2.0 [3-6]", data):
            raise AssertionError(f"INVITE refused: {data[:200]!r}")
    assert answer, "no 200 OK to the INVITE"
    to_tag = re.search(rb"\r\nTo:[^\r]*;tag=([^;\r\s]+)", answer, re.I)
    assert to_tag is not None
    ports = [int(p) for p in re.findall(rb"m=audio (\d+)", answer)]
    assert len(ports) == 2, answer
    ack = request(
        "ACK", call_id=call_id, from_tag=from_tag, to_tag=to_tag.group(1).decode(), cseq=1,
        branch="z9hG4bK" + secrets.token_hex(6), uri=f"sip:srs@{LOOPBACK}:{sip_port}",
    )
    sip.sendto(_local(ack, sip.getsockname()), target)
    return Call(sip, target, call_id, from_tag, to_tag.group(1).decode(), ports, rtp_socks)


__all__ = ["Call", "crlf", "place_call", "tone"]
