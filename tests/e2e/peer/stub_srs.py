"""A deliberately small stand-in recorder used to check the SIP clients of the end-to-end suite.

It answers like the real recorder's contract (100 then 200 with one recvonly m-line per offered
m-line on consecutive even ports, labels echoed; OPTIONS/BYE/UPDATE 200; CANCEL 200 + 487) and
counts RTP packets per port, so a scenario or the pjsua2 client can be validated without the daemon.
It records nothing.  On SIGTERM it prints one JSON object with what it saw and exits 0.

    python stub_srs.py --sip 127.0.0.1:5060 --rtp-base 30000 [--answer-delay-ms 500]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import signal
import sys
from collections import Counter
from typing import Any

COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
}


def split_message(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    return lines[0], headers, body


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


class RtpCounter(asyncio.DatagramProtocol):
    def __init__(self, stub: Stub, port: int) -> None:
        self.stub = stub
        self.port = port

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stub.rtp_packets[self.port] += 1
        if len(data) > 1:
            pts = self.stub.rtp_payload_types.setdefault(self.port, [])
            if not pts or pts[-1] != data[1] & 0x7F:
                pts.append(data[1] & 0x7F)


class Stub:
    def __init__(self, host: str, sip_port: int, rtp_base: int, answer_delay: float) -> None:
        self.host = host
        self.sip_port = sip_port
        self.rtp_base = rtp_base
        self.next_port = rtp_base
        self.answer_delay = answer_delay
        self.requests: Counter[str] = Counter()
        self.rtp_packets: Counter[int] = Counter()
        self.rtp_payload_types: dict[int, list[int]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.invites: list[dict[str, Any]] = []
        self.rtp_transports: list[asyncio.DatagramTransport] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, data: bytes, send: Any) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(data, send))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def response(
        self, headers: list[tuple[str, str]], status: str, tag: str, body: bytes = b"", ctype: str = ""
    ) -> bytes:
        transport = ";transport=tcp" if "SIP/2.0/TCP" in header(headers, "via").upper() else ""
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {v}" for k, v in headers if k == "via"]
        to = header(headers, "to")
        if tag and ";tag=" not in to:
            to += f";tag={tag}"
        lines += [
            f"From: {header(headers, 'from')}",
            f"To: {to}",
            f"Call-ID: {header(headers, 'call-id')}",
            f"CSeq: {header(headers, 'cseq')}",
            f"Contact: <sip:srs@{self.host}:{self.sip_port}{transport}>;+sip.srs",
            "Server: stub-srs",
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def open_rtp(self, count: int) -> int:
        base = self.next_port
        self.next_port += 2 * count + 2
        loop = asyncio.get_running_loop()
        for i in range(count):
            port = base + 2 * i
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(RtpCounter, self, port), local_addr=(self.host, port)
            )
            self.rtp_transports.append(transport)
        return base

    def answer_sdp(self, offer: bytes, base: int) -> bytes:
        text = offer.decode("utf-8", "replace")
        sections = re.split(r"(?m)^(?=m=)", text)[1:]
        out = ["v=0", "o=stub 1 1 IN IP4 " + self.host, "s=-", f"c=IN IP4 {self.host}", "t=0 0"]
        for i, section in enumerate(sections):
            pts = section.split("\r\n")[0].split()[3:]
            out.append(f"m=audio {base + 2 * i} RTP/AVP {' '.join(pts)}")
            out += [line for line in section.split("\r\n") if line.startswith("a=rtpmap:")]
            label = re.search(r"(?m)^a=label:(\S+)", section)
            if label:
                out.append(f"a=label:{label.group(1)}")
            out.append("a=recvonly")
        return ("\r\n".join(out) + "\r\n").encode()

    async def handle(self, data: bytes, send: Any) -> None:
        start, headers, body = split_message(data)
        if start.startswith("SIP/2.0"):
            return
        method = start.split(" ", 1)[0]
        if "<sip:probe@" not in header(headers, "from"):  # the harness's readiness probe
            self.requests[method] += 1
        call_id = header(headers, "call-id")
        call = self.calls.setdefault(call_id, {"tag": f"stub{len(self.calls) + 1}", "cancelled": False})
        tag = call["tag"]
        if method == "INVITE":
            to_has_tag = ";tag=" in header(headers, "to")
            self.invites.append(
                {
                    "call_id": call_id,
                    "reinvite": to_has_tag,
                    "content_type": header(headers, "content-type"),
                    "require": header(headers, "require"),
                    "contact": header(headers, "contact"),
                    "body": body.decode("utf-8", "replace"),
                }
            )
            if not to_has_tag:
                send(self.response(headers, "100 Trying", ""))
                await asyncio.sleep(self.answer_delay)
                if call["cancelled"]:
                    send(self.response(headers, "487 Request Terminated", tag))
                    return
                call["base"] = await self.open_rtp(body.count(b"m=audio"))
            sdp = self.answer_sdp(body, call["base"])
            send(self.response(headers, "200 OK", tag, sdp, "application/sdp"))
        elif method == "CANCEL":
            call["cancelled"] = True
            send(self.response(headers, "200 OK", tag))
        elif method in ("BYE", "OPTIONS", "UPDATE", "INFO"):
            send(self.response(headers, "200 OK", tag))

    def summary(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "rtp_packets": {str(k - self.rtp_base): v for k, v in sorted(self.rtp_packets.items())},
            "rtp_payload_types": {str(k - self.rtp_base): v for k, v in self.rtp_payload_types.items()},
            "invites": self.invites,
        }


async def serve(args: argparse.Namespace) -> None:
    host, port = args.sip.rsplit(":", 1)
    stub = Stub(host, int(port), args.rtp_base, args.answer_delay_ms / 1000)
    loop = asyncio.get_running_loop()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            stub.spawn(data, lambda out: self.transport.sendto(out, addr))

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                length = int(match.group(1)) if match else 0
                if len(rest) < length:
                    break
                message, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
                stub.spawn(message, writer.write)

    await loop.create_datagram_endpoint(Udp, local_addr=(host, int(port)))
    server = await asyncio.start_server(tcp_client, host, int(port))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(json.dumps({"event": "listening"}), file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    print(json.dumps(stub.summary()), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sip", required=True)
    parser.add_argument("--rtp-base", type=int, required=True)
    parser.add_argument("--answer-delay-ms", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
