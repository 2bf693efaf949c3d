"""A real HTTP relay in front of the S3 server that flips one byte of the next N uploaded bodies,
or holds uploads until released.

Not a mock: boto3 talks HTTP to it, it talks HTTP to rclone, and rclone's own checks (Content-MD5,
the signed payload hash) are what notice the damage, as they would on a flaky network path.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field

import httpx

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


@dataclass
class CorruptingRelay:
    upstream: str
    corrupt_next: int = 0
    corrupted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold_puts: bool = False
    put_arrived: threading.Event = field(default_factory=threading.Event)
    release_puts: threading.Event = field(default_factory=threading.Event)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _damage(self, body: bytes) -> bytes:
        with self.lock:
            if not body or self.corrupt_next <= 0:
                return body
            self.corrupt_next -= 1
            self.corrupted += 1
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]

    def start(self) -> None:
        relay = self
        client = httpx.Client(base_url=self.upstream, timeout=30)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "PUT":
                    body = relay._damage(body)
                    if relay.hold_puts:
                        relay.put_arrived.set()
                        relay.release_puts.wait(30)
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
                answer = client.request(self.command, self.path, headers=headers, content=body)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                length = answer.headers.get("content-length", "0") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(answer.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
