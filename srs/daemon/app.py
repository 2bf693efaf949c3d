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
import os
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import srs_codecs

import srs
from srs.config import Config, node_id
from srs.daemon.alerts import MediaAlerts
from srs.daemon.dispatch import Dispatcher
from srs.daemon.finalize import repair_unfinished
from srs.daemon.http_runtime import HttpRuntime, bind_http, start_http_runtime
from srs.daemon.live_info import CallDirectory
from srs.daemon.logs import configure_logging, get_logger
from srs.daemon.metrics import DaemonMetrics
from srs.daemon.overload import BacklogMonitor, LagMonitor
from srs.daemon.publish import Publisher
from srs.daemon.recordings import LiveRecordings, MediaOptions
from srs.daemon.watches import DiskWatch, IndexWatch, OverloadWatch
from srs.errors import ListenError, ParseError, TlsSetupError
from srs.mediaplane.collector import tune_collector
from srs.mediaplane.inprocess import InProcessPlane, RtpReceiver
from srs.mediaplane.ports import PortAllocator
from srs.mediaplane.recordings import JournalPolicy
from srs.mediaplane.worker_plane import WorkerPlane
from srs.net.sip_edge import SipEdge
from srs.net.stream_limits import StreamLimits
from srs.rtp.srtp import make_inline_key
from srs.sdp.model import Codec
from srs.service.audit import Action
from srs.service.live_hub import LiveHub
from srs.service.live_push import LivePusher, parse_target
from srs.service.uploader import Uploader, UploaderOptions
from srs.sip.routing import Address, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import UaEvent
from srs.siprec.settings import UaSettings
from srs.storage.datadir import LOCK_NAME, DataDirLock, prepare_data_dir
from srs.storage.db import Database
from srs.storage.index import RecordingIndex
from srs.storage.layout import PRIVATE_UMASK, DataLayout
from srs.storage.objects import ObjectStore
from srs.storage.s3_store import S3Options, options_from_env
from srs.storage.stores import open_store
from srs.storage.uploads import UploadJob, UploadLedger

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


@dataclass(frozen=True, slots=True)
class Bound:
    """The listening sockets, bound before anything else starts."""

    edge: SipEdge
    http_socket: socket.socket | None

    def close(self) -> None:
        self.edge.close()
        if self.http_socket is not None:
            self.http_socket.close()


@dataclass(frozen=True, slots=True)
class Running:
    """What :meth:`Daemon.run` started, in the order it started them (stopped in reverse)."""

    index: RecordingIndex
    live: LiveRecordings
    http: HttpRuntime
    pusher: LivePusher
    uploader: Uploader | None
    dispatcher: Dispatcher
    publisher: Publisher
    tasks: tuple[asyncio.Task[None], ...]


def _not_started(events: list[UaEvent]) -> None:
    """The edge delivers nothing before :meth:`Daemon.run` starts it; were it to, nothing is done."""


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = get_logger("srs")
        self.layout = DataLayout(Path(config.storage.data_dir).resolve())
        self.node = node_id(config)
        self.index_target = config.storage.index or str(self.layout.index_path)
        self.ua = SiprecUserAgent(_ua_settings(config))
        media, limits = config.media, config.limits
        self.allocator = PortAllocator(media.rtp_port_min, media.rtp_port_max, media.bind_host)
        self.metrics = DaemonMetrics()
        self.metrics.node = self.node
        self.objects = open_objects(config)
        self.disk = DiskWatch(
            self.layout.recordings_dir, min_free_mb=config.storage.min_free_mb,
            warn_free_mb=config.storage.warn_free_mb, refuse=self._refuse_low_disk, log=self.log,
        )
        self.lag = LagMonitor(limits.max_loop_lag_ms / 1000) if limits.max_loop_lag_ms else None
        self.backlog = BacklogMonitor(limits.max_sip_backlog_kb * 1024) if limits.max_sip_backlog_kb else None
        self.bound: Bound | None = None
        self._handle: Callable[[list[UaEvent]], None] = _not_started
        """The dispatcher's, once :meth:`run` has built it."""
        self._stop = asyncio.Event()

    def _refuse_low_disk(self, reason: str | None) -> None:
        self.ua.low_disk = reason

    # ----------------------------------------------------------- startup
    def bind(self) -> Bound:
        """Bind SIP and HTTP before anything else starts, so a taken port costs nothing but one line.

        Raises :class:`srs.errors.ListenError` (what is bound so far is closed again).
        """
        sip, media, listen = self.config.sip, self.config.media, self.config.http.listen
        edge = SipEdge(
            self._on_sip, max_message_size=sip.max_message_size, advertised_host=sip.advertised_host,
            on_stream_error=self._on_stream_error, allows=self.ua.acl.allows,
            stream_limits=_stream_limits(self.config, self.log), on_limit=self._on_edge_limit,
            client_ssl=self._client_ssl(),
        )
        edge.bind(sip.listen, sip.tls_listen)
        try:
            _probe_rtp_host(media.bind_host, media.rtp_port_min)
            http_socket = bind_http(listen.host, listen.port) if listen is not None else None
        except BaseException:
            edge.close()
            raise
        self.bound = Bound(edge, http_socket)
        return self.bound

    def close_unstarted(self) -> None:
        """Undo :meth:`bind` when the daemon does not get to :meth:`run`."""
        if self.bound is not None:
            self.bound.close()

    def open_index(self) -> RecordingIndex:
        """The index, opened after :meth:`bind` (so a daemon that cannot listen leaves no index
        behind in a directory it has just made), its spool replayed and crashed recordings repaired."""
        self.layout.ensure()
        index = RecordingIndex(
            self.index_target, layout=self.layout, node=self.node,
            spool_dir=self.layout.data_dir / "index-spool",
        )
        spooled = index.replay_spool(
            lambda what, exc: self.log.error("index_write_failed", write=what, error=str(exc))
        )
        if spooled:
            self.log.warning("index_spool_replayed", files=spooled)
        repaired = repair_unfinished(index, self.layout, self.node, self.log, srs_codecs.get_decoder)
        if repaired:
            self.log.warning("recordings_repaired", count=repaired)
        return index

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        bound = self.bound or self.bind()
        codecs = warm_up_codecs()
        running = await self._start(loop, bound, self.open_index())
        media = self.config.media
        self.log.info(
            "listening",
            sip=[f"{t.value.lower()}:{a}" for t, a in bound.edge.bound],
            rtp_ports=f"{media.rtp_port_min}-{media.rtp_port_max}",
            data_dir=str(self.layout.data_dir),
            http=str(self.config.http.listen) if self.config.http.listen else None,
            codecs=codecs,
            node=self.node,
            index=running.index.db.url.shown,
        )
        await self._stop.wait()
        await self._drain(loop, running)
        await self._shut_down(running, bound)
        self.log.info("stopped")
        return 0

    async def _start(self, loop: asyncio.AbstractEventLoop, bound: Bound, index: RecordingIndex) -> Running:
        """Build the recording path, the live feeds, the API and the dispatcher, then open SIP."""
        tune_collector()
        config = self.config
        plane = _media_plane(config, loop, self.log)
        live = LiveRecordings(
            index=index, layout=self.layout, allocator=self.allocator, receiver=plane.receiver,
            decoder_factory=srs_codecs.get_decoder, options=_media_options(config), log=self.log,
            plane=plane.plane, soon=loop.call_soon,
        )
        calls = CallDirectory(live.sessions)
        hub = LiveHub(
            describe=calls.describe, subscribe=plane.plane.live_subscribe, registry=self.metrics.registry
        )
        hub.queue_frames = config.live.queue_frames
        plane.plane.on_live = hub.deliver
        http = await _start_http(
            config, self.layout, self.metrics, bound.http_socket, self.objects, hub, self.node
        )
        pusher = LivePusher(
            [parse_target(t) for t in config.live.targets], hub, queue_frames=config.live.queue_frames,
            reconnect_max_s=config.live.reconnect_max_s, log=self.log,
        )
        pusher.audit = _push_auditor(http)
        uploader = await self._start_uploader(self.objects) if self.objects is not None else None
        http.events.live_source = live.snapshot  # the console's live view reads it
        alerts = MediaAlerts(self.metrics, self.log, http.recording_event)
        publisher = Publisher(
            live=live, metrics=self.metrics, log=self.log, alerts=alerts, announce=http.recording_event,
            uploader=uploader, data_dir=self.layout.data_dir,
        )
        dispatcher = Dispatcher(
            loop=loop, ua=self.ua, edge=bound.edge, live=live, metrics=self.metrics, log=self.log,
            disk_low=lambda: self.disk.low, announce=http.recording_event, alerts=alerts,
            publisher=publisher, calls=calls, hub=hub, pusher=pusher,
        )
        self._handle = dispatcher.handle
        self.metrics.set_live_source(lambda: _live_figures(self.ua, live))
        sip = config.sip
        await bound.edge.start(sip.listen, sip.tls_listen, self._server_ssl() if sip.tls_listen else None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        tasks = self._start_watches(loop, bound.edge, index, dispatcher)
        return Running(index, live, http, pusher, uploader, dispatcher, publisher, tasks)

    def _start_watches(
        self, loop: asyncio.AbstractEventLoop, edge: SipEdge, index: RecordingIndex, dispatcher: Dispatcher
    ) -> tuple[asyncio.Task[None], ...]:
        overload = OverloadWatch(
            lag=self.lag, backlog=self.backlog, read_backlog=edge.udp_backlog, refuse=self._shed, log=self.log
        )
        index_watch = IndexWatch(index.health, refuse=self._refuse_index, log=self.log)
        coroutines = [
            dispatcher.flush_loop(self.config.media.flush_interval_ms / 1000),
            self.disk.run(),
            dispatcher.media_loop(),
            index_watch.run(),
        ]
        if overload.enabled:
            coroutines.append(overload.run(loop.time))
        return tuple(loop.create_task(c) for c in coroutines)

    def _shed(self, reason: str | None) -> None:
        self.ua.shedding = reason

    def _refuse_index(self, reason: str | None) -> None:
        self.ua.unavailable = reason

    # ----------------------------------------------------------- shutdown
    async def _drain(self, loop: asyncio.AbstractEventLoop, running: Running) -> None:
        """Running calls get ``drain_seconds`` to end by themselves, then srs sends BYE."""
        self.ua.start_draining()
        drain = self.config.limits.drain_seconds
        self.log.info("draining", active=self.ua.active_sessions, drain_seconds=drain)
        deadline = loop.time() + drain
        while self.ua.active_sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.ua.active_sessions:
            running.dispatcher.handle(self.ua.hangup_all(loop.time(), "srs shutting down"))
        wait_until = loop.time() + 2.0
        while self.ua.has_pending_requests() and loop.time() < wait_until:
            await asyncio.sleep(0.05)
        await running.publisher.drain()

    async def _shut_down(self, running: Running, bound: Bound) -> None:
        await running.pusher.stop()
        for task in running.tasks:
            task.cancel()
        await running.http.stop()
        if running.uploader is not None:
            # In-flight uploads get a moment; the rest stay pending in the index for the next start.
            await asyncio.to_thread(running.uploader.stop, 5.0)
        if self.objects is not None:
            self.objects.close()
        bound.edge.close()
        running.live.plane.stop()
        running.index.close()

    # ----------------------------------------------------------- SIP edge callbacks
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
        self.log.warning("sip_stream_closed", peer=str(peer), transport=kind.value, error=str(exc))
        now = asyncio.get_running_loop().time()
        self._handle(self.ua.answer_unframeable(head, exc, peer, kind, local, now))

    def _on_edge_limit(self, limit: str, peer: Address) -> None:
        self.metrics.limit_reached(limit)
        self.log.info("sip_connection_limited", limit=limit, source=str(peer))

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

    def _server_ssl(self) -> ssl.SSLContext:
        sip = self.config.sip
        return server_ssl_context(sip.tls_cert, sip.tls_key, sip.tls_client_ca)

    async def _start_uploader(self, store: ObjectStore) -> Uploader:
        """Threads that upload finished recordings; what a previous run left pending goes first."""
        storage = self.config.storage
        # The index this node records into (a fleet's shared one, not the data dir's own file): API
        # readers on every node learn from it where the file is.
        ledger = UploadLedger(await asyncio.to_thread(Database, self.index_target), node=self.node)
        metrics, log = self.metrics, self.log

        def heard(event: str, recording_id: str, job: UploadJob, reason: str | None) -> None:
            metrics.upload_event(event, job.size)
            if event == "done":
                log.info("recording_uploaded", recording=recording_id, key=job.key, size=job.size)
            elif event == "failed":
                log.error("upload_failed", recording=recording_id, reason=reason)

        uploader = Uploader(
            ledger, store, self.layout.data_dir,
            UploaderOptions(concurrency=storage.upload_concurrency, backoff_max_s=storage.upload_retry_max_s),
            listener=heard,
        )
        uploader.start()
        metrics.set_upload_source(uploader.backlog)
        resumed = await asyncio.to_thread(uploader.resume)
        log.info("uploader_started", store=store.url, resumed=resumed)
        return uploader


# ----------------------------------------------------------- reading the configuration
def _ua_settings(config: Config) -> UaSettings:
    sip, limits = config.sip, config.limits
    return UaSettings(
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
        max_duration=float(limits.max_duration_s),
        max_sessions=limits.max_sessions,
        allowed_networks=sip.allowed_networks,
        rate_limit_per_source=sip.rate_limit_per_source,
        rate_limit_burst=sip.rate_limit_burst,
        max_streams_per_call=limits.max_streams_per_call,
        max_sessions_per_source=limits.max_sessions_per_source,
        max_streams_per_source=limits.max_streams_per_source,
        max_metadata_versions=limits.max_metadata_versions,
        max_metadata_bytes=limits.max_metadata_bytes,
        sdes_over_plain_sip=config.media.sdes_over_plain_sip,
    )


def _media_options(config: Config) -> MediaOptions:
    media = config.media
    return MediaOptions(
        reorder_window=media.reorder_window_ms / 1000,
        pause_mode=media.pause,
        relatch_after=media.relatch_silence_ms / 1000,
        output=media.output,
        file_format=media.format,
        rtp_source=media.rtp_source,
        no_media_warning=float(media.no_media_warning_s),
        rtp_timeout=float(media.rtp_timeout_s),
    )


def _journal_policy(config: Config) -> JournalPolicy | None:
    media = config.media
    if not media.journal:
        return None
    interval = media.journal_fsync_interval_ms / 1000 if media.journal_fsync == "interval" else None
    return JournalPolicy(interval)


@dataclass(frozen=True, slots=True)
class _Plane:
    plane: WorkerPlane | InProcessPlane
    receiver: RtpReceiver


def _media_plane(config: Config, loop: asyncio.AbstractEventLoop, log: Any) -> _Plane:
    """Media worker processes (``[media] workers``), else the daemon's own loop receives RTP."""
    receiver = RtpReceiver(loop)  # monotonic, as the wire clock maps kernel stamps
    media = config.media
    if media.workers <= 0:
        return _Plane(InProcessPlane(receiver, srs_codecs.get_decoder), receiver)
    plane = WorkerPlane(
        media.workers, flush_interval=media.flush_interval_ms / 1000, log=log, journal=_journal_policy(config)
    )
    plane.start(loop)
    return _Plane(plane, receiver)


def _stream_limits(config: Config, log: Any) -> StreamLimits:
    """[limits] for TCP/TLS; the total is kept under half the descriptor limit, so that RTP
    sockets, the index and the API still get descriptors when the connection cap is reached."""
    limits = config.limits
    total = limits.max_sip_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (total == 0 or total > soft // 2):
        log.warning("sip_connections_capped", configured=total, capped=soft // 2, nofile=soft)
        total = max(1, soft // 2)
    return StreamLimits(
        max_connections=total,
        max_connections_per_source=limits.max_sip_connections_per_source,
        header_timeout=limits.sip_header_timeout_s,
        idle_timeout=limits.sip_idle_timeout_s,
    )


async def _start_http(
    config: Config, layout: DataLayout, metrics: DaemonMetrics, listen_socket: socket.socket | None,
    objects: ObjectStore | None, live: LiveHub, node: str,
) -> HttpRuntime:
    """The API (when [http] listen is set), webhooks, retention and /metrics, on this loop."""
    http, storage = config.http, config.storage
    return await start_http_runtime(
        data_dir=layout.data_dir,
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
        metrics=metrics,
        listen_socket=listen_socket,
        objects=objects,
        live=live,
        index_url=storage.index or str(layout.index_path),
        node=node,
    )


def _push_auditor(http: HttpRuntime) -> Callable[[str, dict[str, Any]], Any]:
    async def audit(recording_id: str, detail: dict[str, Any]) -> None:
        """A push target's connection ended: a ``live_listen`` row, as for a listener of the API."""
        await asyncio.to_thread(
            http.service.audit.record, "live-target", Action.LIVE_LISTEN, recording_id=recording_id,
            detail=detail,
        )

    return audit


def _live_figures(ua: SiprecUserAgent, live: LiveRecordings) -> dict[str, float]:
    streams = sum(len(s.slots) for s in live.sessions.values())
    return {"active_sessions": ua.active_sessions, "active_streams": streams}


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
