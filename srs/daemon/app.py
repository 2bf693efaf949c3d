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
import resource
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import srs_codecs

import srs
from srs.config import Config, node_id
from srs.daemon.http_runtime import HttpRuntime, bind_http, start_http_runtime
from srs.daemon.live_info import call_info, find_session
from srs.daemon.logs import configure_logging, get_logger
from srs.daemon.metrics import DaemonMetrics
from srs.daemon.overload import BacklogMonitor, LagMonitor
from srs.daemon.recordings import Finished, LiveRecordings, LiveSession, MediaOptions, file_sha256
from srs.errors import ListenError, ParseError, SrsError, TlsSetupError
from srs.media.wavfile import repair_wav
from srs.mediaplane.collector import tune_collector
from srs.mediaplane.contract import MediaPlane
from srs.mediaplane.inprocess import InProcessPlane, RtpReceiver
from srs.mediaplane.ports import PortAllocator
from srs.mediaplane.recordings import JournalPolicy
from srs.mediaplane.recovery import recover_recording
from srs.mediaplane.watch import NoMedia, SourceChanged, WatchEvent
from srs.mediaplane.worker_plane import WorkerPlane
from srs.net.sip_edge import SipEdge
from srs.net.stream_limits import StreamLimits
from srs.rtp.srtp import make_inline_key
from srs.sdp.model import Codec
from srs.service.audit import Action
from srs.service.live_formats import CallInfo
from srs.service.live_hub import LiveHub
from srs.service.live_push import LivePusher, parse_target
from srs.service.uploader import Uploader, UploaderOptions
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.agent import SDES_IN_CLEAR, SiprecUserAgent, UaSettings
from srs.siprec.events import (
    LimitReached,
    MessageDropped,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
    UaEvent,
)
from srs.storage.datadir import LOCK_NAME, DataDirLock, prepare_data_dir
from srs.storage.db import Database
from srs.storage.errors import InvalidStateTransition
from srs.storage.index import RecordingIndex
from srs.storage.layout import PRIVATE_UMASK, DataLayout
from srs.storage.objects import ObjectStore
from srs.storage.records import FinalizedRecording, State
from srs.storage.s3_store import S3Options, options_from_env
from srs.storage.stores import open_store
from srs.storage.uploads import UploadJob, UploadLedger, object_key

_MEDIA_WATCH_PERIOD_S = 1.0
"""How often per-stream activity is collected (bounds how late a no-media warning or RTP timeout fires)."""
_COUNTERS_EVERY_S = 5.0
"""How often live calls' packet counters are written to the index."""
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
        self._index: RecordingIndex | None = None
        self.node = node_id(config)
        self.index_target = config.storage.index or str(self.layout.index_path)
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
                max_streams_per_call=config.limits.max_streams_per_call,
                max_sessions_per_source=config.limits.max_sessions_per_source,
                max_streams_per_source=config.limits.max_streams_per_source,
                max_metadata_versions=config.limits.max_metadata_versions,
                max_metadata_bytes=config.limits.max_metadata_bytes,
                sdes_over_plain_sip=config.media.sdes_over_plain_sip,
            )
        )
        self.allocator = PortAllocator(
            config.media.rtp_port_min, config.media.rtp_port_max, config.media.bind_host
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.live: LiveRecordings | None = None
        self.live_hub: LiveHub | None = None
        self.live_pusher: LivePusher | None = None
        self._live_sources: dict[str, str] = {}
        """SBC address of each session (for [live] targets filters), until it ends."""
        self.edge: SipEdge | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stop = asyncio.Event()
        self._publishing: set[asyncio.Task[None]] = set()
        self.metrics = DaemonMetrics()
        self.metrics.node = self.node
        self.http: HttpRuntime | None = None
        self.disk_low = False
        self.lag = LagMonitor(config.limits.max_loop_lag_ms / 1000) if config.limits.max_loop_lag_ms else None
        limits = config.limits
        self.backlog = BacklogMonitor(limits.max_sip_backlog_kb * 1024) if limits.max_sip_backlog_kb else None
        self._disk_warned = False
        self._http_socket: socket.socket | None = None
        self.objects = open_objects(config)
        self.uploader: Uploader | None = None

    # ----------------------------------------------------------- startup
    def repair_unfinished(self) -> int:
        """Recordings a crash left in starting/recording/stopping become available, marked incomplete.

        Only this node's: on a shared index the other nodes' running calls are theirs."""
        repaired = 0
        for recording_id in self.index.unfinished(node=self.node):
            row = self.index.get(recording_id) or {}
            path = self.layout.recording_path(recording_id, float(row.get("started_at") or time.time()))
            final: FinalizedRecording
            reason = "srs stopped while recording; file repaired at restart"
            if path.exists():
                try:
                    recovered = recover_recording(path, srs_codecs.get_decoder)
                except (OSError, ValueError, SrsError) as exc:  # the file is repaired as it is
                    self.log.warning("journal_replay_failed", recording=recording_id, error=str(exc))
                    recovered = None
                if recovered is not None:
                    reason += f"; {recovered.recovered_ms} ms replayed from the crash journal"
                    self.log.info(
                        "journal_replayed",
                        recording=recording_id,
                        packets=recovered.replayed,
                        recovered_ms=recovered.recovered_ms,
                        torn=recovered.torn,
                    )
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
                        incomplete_reason=reason,
                        warnings=["recording interrupted by a restart"],
                    )
            else:
                final = self._failed("srs stopped before any audio was written")
            try:
                self.index.finalize(recording_id, final)
            except InvalidStateTransition as exc:
                # finished meanwhile by the index writer of the daemon that died (it commits what it
                # was sent before it exits): that outcome is the true one, keep it
                self.log.info("repair_skipped", recording=recording_id, reason=str(exc))
                continue
            repaired += 1
        return repaired

    def _journal_policy(self) -> JournalPolicy | None:
        media = self.config.media
        if not media.journal:
            return None
        interval = media.journal_fsync_interval_ms / 1000 if media.journal_fsync == "interval" else None
        return JournalPolicy(interval)

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

    @property
    def index(self) -> RecordingIndex:
        """The index, opened on first use: after :meth:`bind`, so a daemon that cannot listen
        leaves no index behind in a directory it has just made."""
        if self._index is None:
            self.layout.ensure()
            self._index = RecordingIndex(
                self.index_target, layout=self.layout, node=self.node,
                spool_dir=self.layout.data_dir / "index-spool",
            )
        return self._index

    def bind(self) -> None:
        """Bind SIP and HTTP before anything else starts, so a taken port costs nothing but one line.

        Raises :class:`srs.errors.ListenError` (what is bound so far is closed again).
        """
        sip = self.config.sip
        self.edge = SipEdge(
            self._on_sip,
            max_message_size=sip.max_message_size,
            advertised_host=sip.advertised_host,
            on_stream_error=self._on_stream_error,
            allows=self.ua.acl.allows,
            stream_limits=self._stream_limits(),
            on_limit=self._on_edge_limit,
            client_ssl=self._client_ssl(),
        )
        self.edge.bind(sip.listen, sip.tls_listen)
        try:
            _probe_rtp_host(self.config.media.bind_host, self.config.media.rtp_port_min)
        except BaseException:
            self.edge.close()
            raise
        listen = self.config.http.listen
        if listen is not None:
            try:
                self._http_socket = bind_http(listen.host, listen.port)
            except BaseException:
                self.edge.close()
                raise

    def close_unstarted(self) -> None:
        """Undo :meth:`__init__` and :meth:`bind` when the daemon does not get to :meth:`run`."""
        if self.edge is not None:
            self.edge.close()
        if self._http_socket is not None:
            self._http_socket.close()
        if self._index is not None:
            self._index.close()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        if self.edge is None:
            self.bind()
        assert self.edge is not None
        codecs = warm_up_codecs()
        spooled = self.index.replay_spool(
            lambda what, exc: self.log.error("index_write_failed", write=what, error=str(exc))
        )
        if spooled:
            self.log.warning("index_spool_replayed", files=spooled)
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
                journal=self._journal_policy(),
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
                rtp_source=media.rtp_source,
                no_media_warning=float(media.no_media_warning_s),
                rtp_timeout=float(media.rtp_timeout_s),
            ),
            log=self.log,
            plane=plane,
            soon=loop.call_soon,
        )
        self.live_hub = LiveHub(
            describe=self._describe_live, subscribe=self.live.plane.live_subscribe,
            registry=self.metrics.registry,
        )
        self.live_hub.queue_frames = self.config.live.queue_frames
        live_plane = self.live.plane
        if isinstance(live_plane, WorkerPlane | InProcessPlane):
            live_plane.on_live = self.live_hub.deliver
        self.live_pusher = LivePusher(
            [parse_target(t) for t in self.config.live.targets], self.live_hub,
            queue_frames=self.config.live.queue_frames, reconnect_max_s=self.config.live.reconnect_max_s,
            log=self.log,
        )
        self.live_pusher.audit = self._audit_push
        sip = self.config.sip
        server_ssl = self._server_ssl() if sip.tls_listen else None
        await self.edge.start(sip.listen, sip.tls_listen, server_ssl)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.metrics.set_live_source(self._live_metrics)
        self.http = await self._start_http()
        if self.objects is not None:
            await self._start_uploader(self.objects)
        self.http.events.live_source = self.live.snapshot  # the console's live view reads it
        flusher = loop.create_task(self._flush_loop())
        disk_watch = loop.create_task(self._disk_watch())
        media_watch = loop.create_task(self._media_watch())
        watching = self.lag is not None or self.backlog is not None
        lag_watch = loop.create_task(self._lag_watch()) if watching else None
        index_watch = loop.create_task(self._index_watch())
        self.log.info(
            "listening",
            sip=[f"{t.value.lower()}:{a}" for t, a in self.edge.bound],
            rtp_ports=f"{media.rtp_port_min}-{media.rtp_port_max}",
            data_dir=str(self.layout.data_dir)
            if hasattr(self.layout, "data_dir")
            else self.config.storage.data_dir,
            http=str(self.config.http.listen) if self.config.http.listen else None,
            codecs=codecs,
            node=self.node,
            index=self.index.db.url.shown,
        )
        await self._stop.wait()
        await self._drain()
        if self.live_pusher is not None:
            await self.live_pusher.stop()
        flusher.cancel()
        disk_watch.cancel()
        media_watch.cancel()
        index_watch.cancel()
        if lag_watch is not None:
            lag_watch.cancel()
        await self.http.stop()
        if self.uploader is not None:
            # In-flight uploads get a moment; the rest stay pending in the index for the next start.
            await asyncio.to_thread(self.uploader.stop, 5.0)
        if self.objects is not None:
            self.objects.close()
        self.edge.close()
        self.live.plane.stop()
        self.index.close()
        self.log.info("stopped")
        return 0

    def _stream_limits(self) -> StreamLimits:
        """[limits] for TCP/TLS; the total is kept under half the descriptor limit, so that RTP
        sockets, the index and the API still get descriptors when the connection cap is reached."""
        limits = self.config.limits
        total = limits.max_sip_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (total == 0 or total > soft // 2):
            self.log.warning("sip_connections_capped", configured=total, capped=soft // 2, nofile=soft)
            total = max(1, soft // 2)
        return StreamLimits(
            max_connections=total,
            max_connections_per_source=limits.max_sip_connections_per_source,
            header_timeout=limits.sip_header_timeout_s,
            idle_timeout=limits.sip_idle_timeout_s,
        )

    def _client_ssl(self) -> ssl.SSLContext:
        """TLS for connections srs opens (in-dialog requests after the peer's connection closed).

        The peer's chain is verified against ``tls_ca_file`` (or the system store) unless
        ``tls_verify_peer = false``. Its name is not checked: srs connects to the address the
        dialog's requests came from, not to a name, so the CA file is what decides who is
        trusted; present srs's own certificate too when it has one (SBCs that want mutual TLS).
        """
        sip = self.config.sip
        context = ssl.create_default_context(cafile=sip.tls_ca_file or None)
        context.check_hostname = False
        if not sip.tls_verify_peer:
            context.verify_mode = ssl.CERT_NONE
        if sip.tls_cert and sip.tls_key:
            context.load_cert_chain(sip.tls_cert, sip.tls_key)
        return context

    def _on_edge_limit(self, limit: str, peer: Address) -> None:
        self.metrics.limit_reached(limit)
        self.log.info("sip_connection_limited", limit=limit, source=str(peer))

    def _server_ssl(self) -> ssl.SSLContext:
        sip = self.config.sip
        return server_ssl_context(sip.tls_cert, sip.tls_key, sip.tls_client_ca)

    async def _start_http(self) -> HttpRuntime:
        """The API (when [http] listen is set), webhooks, retention and /metrics, on this loop."""
        http, storage = self.config.http, self.config.storage
        return await start_http_runtime(
            data_dir=self.layout.data_dir,
            listen_host=http.listen.host if http.listen is not None else None,
            listen_port=http.listen.port if http.listen is not None else 0,
            link_max_validity_min=http.link_max_validity_min,
            webhook_urls=http.webhook_urls,
            webhook_queue_size=http.webhook_queue_size,
            webhook_timeout_s=http.webhook_timeout_s,
            webhook_max_attempts=http.webhook_max_attempts,
            max_body_bytes=http.max_body_kb * 1024,
            export_ttl_s=http.export_ttl_hours * 3600,
            retention_days=storage.retention_days,
            retention_overrides=storage.retention_overrides,
            retention_interval_s=storage.retention_interval_s,
            metrics=self.metrics,
            listen_socket=self._http_socket,
            objects=self.objects,
            live=self.live_hub,
            index_url=self.index_target,
            node=self.node,
        )

    async def _start_uploader(self, store: ObjectStore) -> None:
        """Threads that upload finished recordings; what a previous run left pending goes first."""
        storage = self.config.storage
        # The index this node records into (a fleet's shared one, not the data dir's own file): API
        # readers on every node learn from it where the file is.
        ledger = UploadLedger(await asyncio.to_thread(Database, self.index_target), node=self.node)
        metrics = self.metrics

        def heard(event: str, recording_id: str, job: UploadJob, reason: str | None) -> None:
            metrics.upload_event(event, job.size)
            if event == "done":
                self.log.info("recording_uploaded", recording=recording_id, key=job.key, size=job.size)
            elif event == "failed":
                self.log.error("upload_failed", recording=recording_id, reason=reason)

        self.uploader = Uploader(
            ledger, store, self.layout.data_dir,
            UploaderOptions(
                concurrency=storage.upload_concurrency, backoff_max_s=storage.upload_retry_max_s
            ),
            listener=heard,
        )
        self.uploader.start()
        self.metrics.set_upload_source(self.uploader.backlog)
        resumed = await asyncio.to_thread(self.uploader.resume)
        self.log.info("uploader_started", store=store.url, resumed=resumed)

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
                    if session is not None and self.live_pusher is not None:
                        self.live_pusher.consider(self._call_info(session))
            elif isinstance(event, MetadataReceived):
                if self._guarded(event.session_id, self.live.metadata, event, pending):
                    self._live_metadata(event.session_id)
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
            elif isinstance(event, LimitReached):
                self.metrics.limit_reached(event.limit)
                self.log.info(  # info: one line per refused packet must not flood the warnings
                    "sip_limit_reached",
                    limit=event.limit,
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
        except Exception as exc:  # disk, index (either engine), ports: this call only
            self.log.error("offer_failed", session=event.session_id, error=str(exc))
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if ports is None:
            self.log.warning("rtp_ports_exhausted", session=event.session_id)
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if SDES_IN_CLEAR in event.warnings:
            self.log.warning(
                "sdes_over_plain_sip",
                session=event.session_id,
                call_id=event.call_id,
                source=str(event.source),
                transport=event.transport.value,
                detail=SDES_IN_CLEAR,
            )
        if event.initial:
            self._live_sources[event.session_id] = str(event.source)
            self.log.info(
                "session_offered",
                session=event.session_id,
                call_id=event.call_id,
                source=str(event.source),
                streams=event.ports_needed,
                warnings=list(event.warnings),
            )
        return self.ua.accept(event.session_id, ports, now)

    def _describe_live(self, wanted: str) -> CallInfo | None:
        session = find_session(self.live.sessions.values(), wanted) if self.live is not None else None
        return self._call_info(session) if session is not None else None

    async def _audit_push(self, recording_id: str, detail: dict[str, Any]) -> None:
        """A push target's connection ended: a ``live_listen`` row, as for a listener of the API."""
        if self.http is not None:
            await asyncio.to_thread(
                self.http.service.audit.record, "live-target", Action.LIVE_LISTEN, recording_id=recording_id,
                detail=detail,
            )

    def _call_info(self, session: LiveSession) -> CallInfo:
        return call_info(session, self._live_sources.get(session.session_id, ""))

    def _live_metadata(self, session_id: str) -> None:
        """Tell live listeners and push targets about the call's (new) metadata."""
        session = self.live.sessions.get(session_id) if self.live is not None else None
        if session is None or not session.opened:
            return
        info = self._call_info(session)
        if self.live_hub is not None:
            self.live_hub.metadata_changed(session_id, info)
        if self.live_pusher is not None:
            self.live_pusher.consider(info)

    def _ended(self, event: SessionEnded) -> None:
        assert self.live is not None and self.loop is not None
        session = self.live.sessions.get(event.session_id)
        self._live_sources.pop(event.session_id, None)
        if self.live_pusher is not None:
            self.live_pusher.ended(event.session_id)
        if self.live_hub is not None:
            dropped = self.live_hub.ended(event.session_id)
            if dropped and session is not None:
                session.warnings.append(f"live audio: {dropped} frames dropped for slow listeners")
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
        for change in finished.source_changes:
            self._source_changed(change, finished.recording_id)
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
        final = finished.final
        if self.uploader is not None and final is not None and final.file_path and final.sha256:
            try:
                key = object_key(self.layout.data_dir, final.file_path)
            except ValueError:
                self.log.error("upload_skipped", recording=finished.recording_id, reason="outside data dir")
            else:
                self.uploader.submit(
                    UploadJob(finished.recording_id, final.file_path, key, final.sha256, final.file_size or 0)
                )
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
        counters_due = self.loop.time() + _COUNTERS_EVERY_S
        while True:
            await asyncio.sleep(interval)
            if self.loop.time() >= counters_due:
                counters_due = self.loop.time() + _COUNTERS_EVERY_S
                self.live.refresh_counters()
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
            self.ua.low_disk = f"low on disk: {free // (1024 * 1024)} MB free" if low else None
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

    async def _media_watch(self) -> None:
        """Once a second: ask the plane for per-stream activity and act on what the watch says
        (the worker plane answers asynchronously, so each check uses the previous answer)."""
        assert self.loop is not None and self.live is not None
        while True:
            await asyncio.sleep(_MEDIA_WATCH_PERIOD_S)
            if not self.live.sessions:
                continue
            self.live.plane.poll_activity()
            self._on_media_events(self.live.check_media())

    def _on_media_events(self, events: list[WatchEvent]) -> None:
        assert self.loop is not None and self.live is not None
        for event in events:
            session = self.live.sessions.get(event.key)
            if session is None:
                continue
            recording = session.recording_id
            if isinstance(event, NoMedia):
                self.metrics.no_media()
                refused = [{"address": a, "packets": n} for a, n in event.refused]
                self.log.warning(
                    "recording_no_media",
                    session=event.key,
                    recording=recording,
                    stream=event.label,
                    listen=event.listen,
                    refused=refused,
                    detail=event.message(),
                )
                details: dict[str, Any] = {"stream": event.label, "listen": event.listen, "refused": refused}
                if self.http is not None:
                    self.http.recording_event("recording_no_media", recording, details)
            elif isinstance(event, SourceChanged):
                self._source_changed(event, recording)
            else:
                self.metrics.rtp_timeout()
                self.log.warning(
                    "rtp_timeout", session=event.key, recording=recording, idle_s=round(event.idle)
                )
                self._handle(self.ua.hangup(event.key, self.loop.time(), event.reason()))

    def _source_changed(self, event: SourceChanged, recording: str) -> None:
        self.metrics.source_changed()
        self.log.warning(
            "recording_source_changed",
            session=event.key,
            recording=recording,
            stream=event.label,
            previous=event.previous,
            current=event.current,
            changes=event.changes,
        )
        details = {
            "stream": event.label,
            "previous": event.previous,
            "current": event.current,
            "changes": event.changes,
        }
        if self.http is not None:
            self.http.recording_event("recording_source_changed", recording, details)

    async def _index_watch(self) -> None:
        """Every 250 ms: while the index writer cannot reach the index (or is far behind), new
        INVITEs and OPTIONS pings get 503 + Retry-After; running calls keep recording and their
        writes wait in the queue, to be committed when the database answers again."""
        was: str | None = None
        while True:
            health = self.index.health()
            reason = health.refuse_calls
            self.ua.unavailable = reason
            if (reason is None) != (was is None):
                if reason is not None:
                    self.log.error("index_unavailable", reason=reason, queued_writes=health.backlog)
                else:
                    self.log.warning("index_available", queued_writes=health.backlog)
            was = reason
            await asyncio.sleep(0.25)

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


def _probe_rtp_host(host: str, low: int) -> None:
    """``[media] bind_host`` must be an address of this host: otherwise every port of every call
    would be skipped as unbindable and each INVITE answered 503, with nothing said at start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise ListenError("RTP ([media] bind_host)", f"{host} (ports from {low})", exc) from None


def open_objects(config: Config) -> ObjectStore | None:
    """The object store of ``[storage] objects`` (None: recordings stay under the data dir)."""
    storage = config.storage
    if not storage.objects:
        return None
    options = options_from_env(
        S3Options(
            endpoint=storage.objects_endpoint or None,
            region=storage.objects_region or None,
            access_key=storage.objects_access_key or None,
            secret_key=storage.objects_secret_key or None,
            multipart_threshold=storage.upload_multipart_mb * 1024 * 1024,
        ),
        os.environ,
    )
    return open_store(storage.objects, options)


def server_ssl_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """The SIP TLS server context; a file that cannot be loaded is a :class:`TlsSetupError` naming it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(
            f"[sip] tls_cert {cert} / tls_key {key}: cannot load: {_ssl_reason(exc)}"
        ) from None
    if client_ca:
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(f"[sip] tls_client_ca {client_ca}: cannot load: {_ssl_reason(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _ssl_reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    name = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{name}"


def run_daemon(config: Config) -> int:
    """Check, lock and bind everything an operator can get wrong, then run until SIGTERM/SIGINT.

    The order matters: the data directory's lock comes before the index is opened (a second daemon
    must not repair the first one's live calls), and the ports are bound before start-up repair.
    Every failure here is a :class:`srs.errors.StartupError` or :class:`ConfigError`: one line.
    """
    # before any file exists: the index, its -wal/-shm, WAVs, exports, the media workers' and the
    # index writer's files are all 0640 at most, directories 0750 (children inherit the umask)
    os.umask(PRIVATE_UMASK)
    configure_logging(config.log.level)
    if config.sip.tls_listen:
        server_ssl_context(config.sip.tls_cert, config.sip.tls_key, config.sip.tls_client_ca)
    existed = Path(config.storage.data_dir).exists()
    data_dir = prepare_data_dir(config.storage.data_dir)
    with DataDirLock(data_dir) as lock:
        daemon = Daemon(config)
        try:
            daemon.bind()
        except BaseException:
            daemon.close_unstarted()
            if not existed:
                lock.release()
                with contextlib.suppress(OSError):  # made a moment ago and still empty but the lock
                    (data_dir / LOCK_NAME).unlink()
                    data_dir.rmdir()
            raise
        runner: Any = asyncio.run
        with contextlib.suppress(ImportError):  # uvloop is a dependency on Linux
            import uvloop

            runner = uvloop.run
        result: int = runner(daemon.run())
        return result
