"""A minimal SIPREC client (an SBC stand-in) over raw UDP, and RTP senders bound to chosen addresses.

SIPp plays RTP from its own media socket only; the source-policy tests need RTP from several
loopback hosts (127.0.0.1 the SBC, 127.0.0.2 a stranger, 127.0.0.3 the SBC after a failover) at
times the test controls, and a peer that stays silent to let srs time out. Everything is sent to
127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import re
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field

from bench.loadgen import tone_payload

LOOPBACK = "127.0.0.1"
BOUNDARY = "srs-peer-7866"


def _metadata(crid: str, call_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">\r\n'
        "<datamode>complete</datamode>\r\n"
        '<session session_id="c2Vzc2lvbi0x">\r\n'
        f"<sipSessionID>{call_id}</sipSessionID>\r\n"
        '<extensiondata xmlns:ac="http://AudioCodes">'
        f"<ac:call-recording-id>{crid}</ac:call-recording-id></extensiondata>\r\n"
        "</session>\r\n"
        "</recording>\r\n"
    )


def sdp(media_host: str, ports: list[int], direction: str = "sendonly", version: int = 1) -> str:
    lines = [
        "v=0",
        f"o=SBC 1000 {version} IN IP4 {media_host}",
        "s=SIPREC",
        f"c=IN IP4 {media_host}",
        "t=0 0",
    ]
    for i, port in enumerate(ports):
        lines += [
            f"m=audio {port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=ptime:20",
            f"a={direction}",
            f"a=label:{i + 1}",
        ]
    return "\r\n".join(lines) + "\r\n"


@dataclass
class Answer:
    host: str
    ports: list[int]
    text: str


@dataclass
class SiprecPeer:
    """One SIPREC session from 127.0.0.1 to srs; requests are retransmitted until answered."""

    target: tuple[str, int]
    crid: str
    sock: socket.socket = field(init=False)
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    cseq: int = 0
    remote_tag: str = ""
    remote_target: str = ""
    received: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))

    @property
    def local(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def close(self) -> None:
        self.sock.close()

    def _request(self, method: str, body: str = "", content_type: str = "", cseq: int | None = None) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        uri = self.remote_target or f"sip:srs@{self.target[0]}:{self.target[1]}"
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        headers = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
            f'From: "SBC" <sip:sbc@{self.local}>;tag={self.tag}',
            f"To: <sip:srs@{self.target[0]}:{self.target[1]}>{to_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {'ACK' if method == 'ACK' else method}",
            f"Contact: <sip:sbc@{self.local}>",
            "Max-Forwards: 70",
        ]
        if method == "INVITE":
            headers.append("Require: siprec")
        if body:
            headers.append(f"Content-Type: {content_type}")
        headers.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(headers) + "\r\n\r\n" + body

    def _transact(self, message: str, cseq: int, method: str, within: float = 5.0) -> str:
        """Send (retransmitting every 0.5 s) until a final response for (cseq, method) arrives."""
        deadline = time.monotonic() + within
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                self.sock.sendto(message.encode(), self.target)
                next_send = time.monotonic() + 0.5
            self.sock.settimeout(0.1)
            try:
                data, _addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            self.received.append(text)
            if text.startswith("SIP/2.0 ") and re.search(rf"(?im)^CSeq:\s*{cseq}\s+{method}\s*$", text):
                status = int(text.split()[1])
                if status >= 200:
                    return text
            elif not text.startswith("SIP/2.0 "):
                self._answer_request(text)
        raise AssertionError(f"no final response to {method} {cseq}: {self.received[-3:]}")

    def _answer_request(self, text: str) -> None:
        """200 to whatever srs asks (BYE, refresh), echoing the dialog headers."""
        keep = [
            line
            for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
            if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        response = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n"
        self.sock.sendto(response.encode(), self.target)

    def _offer(self, media_host: str, ports: list[int], direction: str, version: int) -> str:
        return (
            f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n"
            f"{sdp(media_host, ports, direction, version)}"
            f"--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
            f"Content-Disposition: recording-session\r\n\r\n{_metadata(self.crid, self.call_id)}"
            f"--{BOUNDARY}--\r\n"
        )

    def invite(
        self, media_host: str, ports: list[int], direction: str = "sendonly", version: int = 1
    ) -> Answer:
        """(Re-)INVITE with an SDP naming ``media_host``; ACKs the 200 and returns srs's answer."""
        body = self._offer(media_host, ports, direction, version)
        message = self._request("INVITE", body, f"multipart/mixed;boundary={BOUNDARY}")
        cseq = self.cseq
        response = self._transact(message, cseq, "INVITE")
        assert response.startswith("SIP/2.0 200"), response
        to = re.search(r"(?im)^To:.*;tag=([^;\s]+)", response)
        contact = re.search(r"(?im)^Contact:\s*<([^>]+)>", response)
        assert to is not None and contact is not None, response
        self.remote_tag, self.remote_target = to.group(1), contact.group(1)
        self.sock.sendto(self._request("ACK", cseq=cseq).encode(), self.target)
        answer_sdp = response.split("\r\n\r\n", 1)[1]
        host = re.search(r"(?m)^c=IN IP4 (\S+)", answer_sdp)
        found = [int(p) for p in re.findall(r"(?m)^m=audio (\d+)", answer_sdp)]
        return Answer(host.group(1) if host else LOOPBACK, found, answer_sdp)

    def bye(self) -> str:
        message = self._request("BYE")
        return self._transact(message, self.cseq, "BYE")

    def wait_for_bye(self, within: float) -> str | None:
        """Answer srs's requests until it sends BYE (returned) or ``within`` seconds pass."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.sock.settimeout(0.1)
            try:
                data, _addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            self.received.append(text)
            if not text.startswith("SIP/2.0 "):
                self._answer_request(text)
                if text.startswith("BYE "):
                    return text
        return None


class RtpStream:
    """One RTP stream from ``host`` (a loopback address) to srs: a PCMU tone, 20 ms packets."""

    def __init__(self, host: str, destination: tuple[str, int], freq: int, ssrc: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.destination = destination
        self.payload = tone_payload(freq)
        self.ssrc = ssrc
        self.seq = 1000
        self.ts = 16000
        self.sent = 0
        self.last_at: float | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def close(self) -> None:
        self.sock.close()

    def send_one(self, now: float) -> None:
        if self.last_at is not None:  # 160 a packet; a pause advances by the whole frames it lasted
            gap = now - self.last_at
            self.ts += 160 if gap < 0.1 else round(gap / 0.02) * 160
        header = struct.pack("!BBHII", 0x80, 0, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, self.ssrc)
        self.sock.sendto(header + self.payload, self.destination)
        self.seq += 1
        self.sent += 1
        self.last_at = now


def play(schedule: list[tuple[RtpStream, float, int]]) -> None:
    """Send each (stream, start offset s, packets) in real time, 20 ms apart, all interleaved."""
    due = sorted(
        (offset + n * 0.02, i) for i, (_stream, offset, count) in enumerate(schedule) for n in range(count)
    )
    start = time.monotonic()
    for at, i in due:
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        schedule[i][0].send_one(time.monotonic())
