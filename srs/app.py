"""The composition root: builds srs from its configuration and runs it.

Everything is wired here and only here: modules below receive plain values.
The daemon runs one event loop (uvloop when available) holding the SIP edge,
the RTP receive path, the recorders' flush timer and the HTTP API.  The clock
of every protocol decision is ``loop.time()`` (monotonic); wall-clock time only
goes into the index.

Shutdown (SIGTERM/SIGINT): new INVITEs get 503 with Retry-After, running calls
get ``drain_seconds`` to end by themselves, then srs sends BYE, finalizes each
recording up to that BYE and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import srs_codecs

import srs
from srs.collector import tune_collector
from srs.config import Config
from srs.errors import ParseError
from srs.http_runtime import HttpRuntime, start_http_runtime
from srs.live import Finished, LiveRecordings, MediaOptions, file_sha256
from srs.log import configure_logging, get_logger
from srs.media.wavfile import repair_wav
from srs.mediaplane.contract import MediaPlane
from srs.mediaplane.inprocess import RtpReceiver
from srs.mediaplane.ports import PortAllocator
from srs.mediaplane.worker_plane import WorkerPlane
from srs.metrics import DaemonMetrics
from srs.net.sip_edge import SipEdge
from srs.overload import BacklogMonitor, LagMonitor
from srs.rtp.srtp import make_inline_key
from srs.sdp.model import Codec
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.events import (
    MessageDropped,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
    UaEvent,
)
from srs.siprec.session import SiprecUserAgent, UaSettings
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import FinalizedRecording, State

_SRTP_KEY_BYTES = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30, "AEAD_AES_128_GCM": 28}


def _can_decode(codec: Codec) -> bool:
    return bool(srs_codecs.is_supported(codec.encoding, codec.clock_rate, codec.channels))


def _srtp_key(suite: str) -> str:
    return make_inline_key(suite, os.urandom(_SRTP_KEY_BYTES.get(suite, 30)))


def warm_up_codecs() -> list[str]:
    """Load every decoder library once at start, so the first call with G.722/Opus/AMR/G.729
    does not stall the event loop (and stamp its first packets late) while FFmpeg loads."""
    loaded = []
    for encoding, clock_rate in srs_codecs.supported_codecs():
        with contextlib.suppress(Exception):
            srs_codecs.get_decoder(encoding, clock_rate)
            loaded.append(f"{encoding}/{clock_rate}")
    return loaded


class _TokenSource:
    """Tags and ids from the kernel's CSPRNG (RFC 3261 §19.3 wants tags cryptographically random),
    read 4 KiB at a time: four tokens a call, one system call per 512 tokens."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        if self._at + 8 > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        token = self._pool[self._at : self._at + 8].hex()
        self._at += 8
        return token


_token = _TokenSource()


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = get_logger("srs")
        data_dir = Path(config.storage.data_dir).resolve()
        self.layout = DataLayout(data_dir)
        self.layout.ensure()
        self.index = RecordingIndex(self.layout.index_path, layout=self.layout)
        sip = config.sip
        self.ua = SiprecUserAgent(
            UaSettings(
                can_decode=_can_decode,
                new_token=_token,
                srtp_key=_srtp_key,
                codec_preference=config.media.codec_preference,
                user_agent=f"{sip.user_agent}/{srs.__version__}",
                answer_delay=sip.answer_delay_ms / 1000,
                reject_status=sip.reject_status,
                reject_reason=sip.reject_reason,
                t1=sip.t1_ms / 1000,
                t2=sip.t2_ms / 1000,
                min_se=sip.min_se,
                max_duration=float(config.limits.max_duration_s),
                max_sessions=config.limits.max_sessions,
                allowed_networks=sip.allowed_networks,
                rate_limit_per_source=sip.rate_limit_per_source,
                rate_limit_burst=sip.rate_limit_burst,
            )
        )
        self.allocator = PortAllocator(
            config.media.rtp_port_min, config.media.rtp_port_max, config.media.bind_host
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.live: LiveRecordings | None = None
        self.edge: SipEdge | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stop = asyncio.Event()
        self._publishing: set[asyncio.Task[None]] = set()
        self.metrics = DaemonMetrics()
        self.http: HttpRuntime | None = None
        self.disk_low = False
        self.lag = LagMonitor(config.limits.max_loop_lag_ms / 1000) if config.limits.max_loop_lag_ms else None
        limits = config.limits
        self.backlog = BacklogMonitor(limits.max_sip_backlog_kb * 1024) if limits.max_sip_backlog_kb else None
        self._disk_warned = False

    # ----------------------------------------------------------- startup
    def repair_unfinished(self) -> int:
        """Recordings a crash left in starting/recording/stopping become available, marked incomplete."""
        repaired = 0
        for recording_id in self.index.unfinished():
            row = self.index.get(recording_id) or {}
            path = self.layout.recording_path(recording_id, float(row.get("started_at") or time.time()))
            final: FinalizedRecording
            if path.exists():
                try:
                    result = repair_wav(path)
                except (OSError, ValueError) as exc:
                    final = self._failed(f"repair failed after restart: {exc}")
                else:
                    duration_ms = int(result.data_size * 1000 / (2 * 8000))
                    started = float(row.get("started_at") or time.time())
                    final = FinalizedRecording(
                        ended_at=started + duration_ms / 1000,
                        duration_ms=duration_ms,
                        file_path=str(path),
                        file_size=path.stat().st_size,
                        sha256=file_sha256(path),
                        incomplete=True,
                        incomplete_reason="srs stopped while recording; file repaired at restart",
                        warnings=["recording interrupted by a restart"],
                    )
            else:
                final = self._failed("srs stopped before any audio was written")
            self.index.finalize(recording_id, final)
            repaired += 1
        return repaired

    @staticmethod
    def _failed(reason: str) -> FinalizedRecording:
        return FinalizedRecording(
            ended_at=time.time(),
            duration_ms=0,
            file_path=None,
            file_size=None,
            sha256=None,
            incomplete=True,
            incomplete_reason=reason,
            state=State.FAILED,
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        codecs = warm_up_codecs()
        repaired = self.repair_unfinished()
        if repaired:
            self.log.warning("recordings_repaired", count=repaired)
        tune_collector()
        receiver = RtpReceiver(loop)  # monotonic, as the wire clock maps kernel stamps
        plane: MediaPlane | None = None
        if self.config.media.workers > 0:
            worker_plane = WorkerPlane(
                self.config.media.workers,
                flush_interval=self.config.media.flush_interval_ms / 1000,
                log=self.log,
            )
            worker_plane.start(loop)
            plane = worker_plane
        media = self.config.media
        self.live = LiveRecordings(
            index=self.index,
            layout=self.layout,
            allocator=self.allocator,
            receiver=receiver,
            decoder_factory=srs_codecs.get_decoder,
            options=MediaOptions(
                reorder_window=media.reorder_window_ms / 1000,
                pause_mode=media.pause,
                relatch_after=media.relatch_silence_ms / 1000,
                output=media.output,
                file_format=media.format,
            ),
            log=self.log,
            plane=plane,
            soon=loop.call_soon,
        )
        sip = self.config.sip
        self.edge = SipEdge(
            self._on_sip,
            max_message_size=sip.max_message_size,
            advertised_host=sip.advertised_host,
            on_stream_error=self._on_stream_error,
        )
        server_ssl = self._server_ssl() if sip.tls_listen else None
        await self.edge.start(sip.listen, sip.tls_listen, server_ssl)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.metrics.set_live_source(self._live_metrics)
        self.http = await self._start_http()
        flusher = loop.create_task(self._flush_loop())
        disk_watch = loop.create_task(self._disk_watch())
        watching = self.lag is not None or self.backlog is not None
        lag_watch = loop.create_task(self._lag_watch()) if watching else None
        self.log.info(
            "listening",
            sip=[f"{t.value.lower()}:{a}" for t, a in self.edge.bound],
            rtp_ports=f"{media.rtp_port_min}-{media.rtp_port_max}",
            data_dir=str(self.layout.data_dir)
            if hasattr(self.layout, "data_dir")
            else self.config.storage.data_dir,
            http=str(self.config.http.listen) if self.config.http.listen else None,
            codecs=codecs,
        )
        await self._stop.wait()
        await self._drain()
        flusher.cancel()
        disk_watch.cancel()
        if lag_watch is not None:
            lag_watch.cancel()
        await self.http.stop()
        self.edge.close()
        self.live.plane.stop()
        self.index.close()
        self.log.info("stopped")
        return 0

    def _server_ssl(self) -> ssl.SSLContext:
        sip = self.config.sip
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sip.tls_cert, sip.tls_key)
        if sip.tls_client_ca:
            context.load_verify_locations(sip.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _start_http(self) -> HttpRuntime:
        """The API (when [http] listen is set), webhooks, retention and /metrics, on this loop."""
        http, storage = self.config.http, self.config.storage
        return await start_http_runtime(
            data_dir=self.layout.data_dir,
            listen_host=http.listen.host if http.listen is not None else None,
            listen_port=http.listen.port if http.listen is not None else 0,
            link_max_validity_min=http.link_max_validity_min,
            webhook_urls=http.webhook_urls,
            retention_days=storage.retention_days,
            retention_overrides=storage.retention_overrides,
            retention_interval_s=storage.retention_interval_s,
            metrics=self.metrics,
        )

    def _live_metrics(self) -> dict[str, float]:
        live = self.live
        streams = sum(len(s.slots) for s in live.sessions.values()) if live is not None else 0
        return {"active_sessions": self.ua.active_sessions, "active_streams": streams}

    # ----------------------------------------------------------- SIP
    def _on_sip(
        self, data: bytes, source: Address, transport: Transport, local: Address, arrival: float
    ) -> None:
        """``arrival`` is when the message came off the wire (UDP: the kernel's stamp): a BYE that
        waited in the socket still ends its recording where it arrived, not where it was read."""
        self._handle(self.ua.receive(data, source, transport, local, arrival))

    def _on_stream_error(
        self, head: bytes, peer: Address, kind: Transport, local: Address, exc: ParseError
    ) -> None:
        """A TCP/TLS stream that cannot be framed: answer what can be answered (513/400), then it closes."""
        assert self.loop is not None
        self.log.warning("sip_stream_closed", peer=str(peer), transport=kind.value, error=str(exc))
        self._handle(self.ua.answer_unframeable(head, exc, peer, kind, local, self.loop.time()))

    def _handle(self, events: list[UaEvent]) -> None:
        assert self.loop is not None and self.edge is not None and self.live is not None
        pending = list(events)
        while pending:
            event = pending.pop(0)
            if isinstance(event, Outgoing):
                self.edge.send(event)
            elif isinstance(event, SessionOffered):
                pending.extend(self._offered(event))
            elif isinstance(event, SessionAnswered):
                if self._guarded(event.session_id, self.live.answered, event, pending) and event.initial:
                    self.log.info("recording_started", session=event.session_id, streams=len(event.streams))
                    session = self.live.sessions.get(event.session_id)
                    if session is not None and self.http is not None:
                        self.metrics.session_started()
                        self.http.recording_event("recording_started", session.recording_id)
            elif isinstance(event, MetadataReceived):
                self._guarded(event.session_id, self.live.metadata, event, pending)
            elif isinstance(event, SessionEnded):
                self._guarded(event.session_id, self._ended, event, pending)
            elif isinstance(event, RequestRefused):
                self.metrics.request_refused(event.status)
                if event.status == 503 and event.detail.startswith("overloaded"):
                    self.log.warning("call_refused_overload", call_id=event.call_id, detail=event.detail)
                self.log.info(
                    "request_refused",
                    method=event.method,
                    status=event.status,
                    detail=event.detail,
                    source=str(event.source),
                    call_id=event.call_id,
                )
            elif isinstance(event, MessageDropped):
                self.metrics.message_dropped()
                self.log.info("sip_dropped", detail=event.detail, source=str(event.source))
        self._arm_timer()

    def _guarded(
        self, session_id: str, action: Callable[[Any], None], event: Any, pending: list[UaEvent]
    ) -> bool:
        """A failing disk or index ends that one recording (BYE, failed), never the daemon."""
        assert self.loop is not None and self.live is not None
        try:
            action(event)
        except Exception as exc:
            self.log.exception("recording_error", session=session_id, error=str(exc))
            if isinstance(event, SessionEnded):
                self.live.sessions.pop(session_id, None)
            else:
                pending.extend(self.ua.hangup(session_id, self.loop.time(), f"recording failed: {exc}"))
            return False
        return True

    def _offered(self, event: SessionOffered) -> list[UaEvent]:
        assert self.loop is not None and self.live is not None
        now = self.loop.time()
        if event.initial and self.disk_low:
            self.log.warning("call_refused_disk_low", call_id=event.call_id, source=str(event.source))
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=60)
        try:
            ports = self.live.offered(event, now)
        except (OSError, sqlite3.Error) as exc:
            self.log.error("offer_failed", session=event.session_id, error=str(exc))
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if ports is None:
            self.log.warning("rtp_ports_exhausted", session=event.session_id)
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if event.initial:
            self.log.info(
                "session_offered",
                session=event.session_id,
                call_id=event.call_id,
                source=str(event.source),
                streams=event.ports_needed,
                warnings=list(event.warnings),
            )
        return self.ua.accept(event.session_id, ports, now)

    def _ended(self, event: SessionEnded) -> None:
        assert self.live is not None and self.loop is not None
        session = self.live.sessions.get(event.session_id)
        pending = self.live.end(event)
        if pending is None:
            return
        self.log.info(
            "recording_ended",
            session=event.session_id,
            recording=session.recording_id if session is not None else None,
            reason=event.reason,
        )
        self.metrics.session_ended()
        task = self.loop.create_task(self._publish(pending))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, pending: Awaitable[Finished]) -> None:
        """Wait for the media plane to close the file, hash it off the loop, then mark it available."""
        assert self.live is not None
        finished = await pending
        if finished.final is not None:
            for stats in finished.final.completeness.get("streams", {}).values():
                self.metrics.packets(
                    received=stats["packets_received"],
                    lost=stats["packets_lost"],
                    dropped=stats["packets_late"]
                    + stats["packets_duplicate"]
                    + stats["packets_dropped_source"]
                    + stats["malformed"],
                )
        if self.http is not None:
            self.http.recording_event("recording_finished", finished.recording_id)
        if finished.final is not None and finished.final.file_path:
            digest = await asyncio.to_thread(file_sha256, finished.final.file_path)
            finished = dataclasses.replace(finished, final=dataclasses.replace(finished.final, sha256=digest))
        self.live.publish(finished)
        if finished.final is not None and self.http is not None:
            self.http.recording_event("recording_available", finished.recording_id)
        self.log.info(
            "recording_available" if finished.final else "recording_failed",
            recording=finished.recording_id,
            reason=finished.failure,
        )

    # ----------------------------------------------------------- timers
    def _arm_timer(self) -> None:
        assert self.loop is not None
        deadline = self.ua.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self.loop is not None
        self._timer = None
        self._timer_at = None
        self._handle(self.ua.on_timer(self.loop.time()))

    async def _flush_loop(self) -> None:
        assert self.loop is not None and self.live is not None
        interval = self.config.media.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            for session_id in self.live.flush(self.loop.time()):
                self.log.error("recording_write_failed", session=session_id)
                self._handle(self.ua.hangup(session_id, self.loop.time(), "recording failed"))

    def check_disk(self) -> None:
        """Refuse new calls below ``min_free_mb``; warn once per crossing of ``warn_free_mb``."""
        storage = self.config.storage
        try:
            free = shutil.disk_usage(self.layout.recordings_dir).free
        except OSError:
            free = 0
        low = free < storage.min_free_mb * 1024 * 1024
        warn = free < storage.warn_free_mb * 1024 * 1024
        if low != self.disk_low:
            self.disk_low = low
            if low:
                self.log.error("disk_full", free_bytes=free, min_free_mb=storage.min_free_mb)
            else:
                self.log.info("disk_recovered", free_bytes=free)
        if warn != self._disk_warned:
            self._disk_warned = warn
            if warn:
                self.log.warning("disk_low", free_bytes=free, warn_free_mb=storage.warn_free_mb)

    async def _lag_watch(self) -> None:
        """Every 100 ms: how late this tick ran and how much SIP waits unread; while either monitor
        says overloaded, the user agent refuses new INVITEs (503) before reading their bodies."""
        assert self.loop is not None
        period = 0.1
        was: str | None = None
        while True:
            due = self.loop.time() + period
            await asyncio.sleep(period)
            reason: str | None = None
            if self.lag is not None and self.lag.observe(self.loop.time() - due):
                reason = f"overloaded: event loop {round(self.lag.lag * 1000)} ms behind"
            backlog = self.edge.udp_backlog() if self.backlog is not None and self.edge is not None else None
            if self.backlog is not None and backlog is not None and self.backlog.observe(backlog):
                reason = reason or f"overloaded: {backlog // 1024} KB of SIP queued"
            if self.ua is not None:
                self.ua.shedding = reason
            if (reason is None) != (was is None):
                self.log.warning(
                    "overload" if reason else "overload_cleared",
                    loop_lag_ms=round(self.lag.lag * 1000) if self.lag is not None else None,
                    sip_backlog_kb=backlog // 1024 if backlog is not None else None,
                    reason=reason or was,
                )
            was = reason

    async def _disk_watch(self) -> None:
        while True:
            self.check_disk()
            await asyncio.sleep(2.0)

    # ----------------------------------------------------------- shutdown
    async def _drain(self) -> None:
        assert self.loop is not None
        self.ua.start_draining()
        drain = self.config.limits.drain_seconds
        self.log.info("draining", active=self.ua.active_sessions, drain_seconds=drain)
        deadline = self.loop.time() + drain
        while self.ua.active_sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.ua.active_sessions:
            self._handle(self.ua.hangup_all(self.loop.time(), "srs shutting down"))
        wait_until = self.loop.time() + 2.0
        while self.ua.has_pending_requests() and self.loop.time() < wait_until:
            await asyncio.sleep(0.05)
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)


def run_daemon(config: Config) -> int:
    configure_logging(config.log.level)
    daemon = Daemon(config)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):  # uvloop is a dependency on Linux
        import uvloop

        runner = uvloop.run
    result: int = runner(daemon.run())
    return result
