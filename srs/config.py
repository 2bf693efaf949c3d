"""Configuration: a TOML file plus command-line overrides, frozen once loaded.

Only the composition root (:mod:`srs.daemon.app`) reads this; every other module gets
plain values.  Unknown or misspelt keys are refused at start with the key named,
because a silently ignored ``max_sesions = 10`` is an outage waiting to happen.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srs.errors import ConfigError

_SQLITE_URL = re.compile(r"sqlite:///.+")
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def node_id(config: Config) -> str:
    """``[node] id``, or the host name (its first label, cut to a valid id) when unset."""
    if config.node.id:
        return config.node.id
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0])[:64]
    return host or "srs"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, what: str) -> HostPort:
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
            if not sep:
                raise ConfigError(f"{what}: unbalanced '[' in {text!r}")
        else:
            host, _, port_text = text.rpartition(":")
        if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SipSettings:
    listen: tuple[HostPort, ...] = (HostPort("0.0.0.0", 5060),)
    tls_listen: tuple[HostPort, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_verify_peer: bool = True
    tls_ca_file: str = ""
    advertised_host: str = ""
    answer_delay_ms: int = 0
    reject_status: int = 488
    reject_reason: str = "Not a SIPREC session"
    max_message_size: int = 65535
    t1_ms: int = 500
    t2_ms: int = 4000
    min_se: int = 90
    user_agent: str = "srs"
    allowed_networks: tuple[str, ...] = ()
    rate_limit_per_source: float = 0.0
    rate_limit_burst: float = 20.0


@dataclass(frozen=True)
class MediaSettings:
    rtp_port_min: int = 20000
    rtp_port_max: int = 39999
    bind_host: str = "0.0.0.0"
    reorder_window_ms: int = 500
    flush_interval_ms: int = 2000
    pause: str = "silence"
    codec_preference: tuple[str, ...] = ()
    output: str = "mono"
    format: str = "wav"
    relatch_silence_ms: int = 1000
    workers: int = 1
    rtp_source: str = "sdp-address"
    sdes_over_plain_sip: str = "warn"
    """"warn" (accept, warn loudly), "allow" (TOML true) or "refuse" (TOML false)."""
    no_media_warning_s: int = 5
    rtp_timeout_s: int = 60
    journal: bool = True
    journal_fsync: str = "none"
    journal_fsync_interval_ms: int = 1000


@dataclass(frozen=True)
class LimitSettings:
    max_sessions: int = 5000
    max_duration_s: int = 86400
    drain_seconds: int = 30
    max_loop_lag_ms: int = 250
    max_sip_backlog_kb: int = 1024
    max_streams_per_call: int = 8
    max_sessions_per_source: int = 1000
    max_streams_per_source: int = 2000
    max_metadata_versions: int = 100
    max_metadata_bytes: int = 1048576
    max_sip_connections: int = 1000
    max_sip_connections_per_source: int = 64
    sip_header_timeout_s: float = 10.0
    sip_idle_timeout_s: float = 900.0


@dataclass(frozen=True)
class HttpSettings:
    listen: HostPort | None = HostPort("127.0.0.1", 8080)
    link_max_validity_min: int = 1440
    webhook_urls: tuple[str, ...] = ()
    max_body_kb: int = 1024
    export_ttl_hours: float = 24.0
    webhook_queue_size: int = 1000
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 5


DEFAULT_DATA_DIR = "./var"
"""Where recordings and the index go when neither the configuration nor ``--data-dir`` says."""


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = DEFAULT_DATA_DIR
    index: str = ""
    """Empty: ``sqlite:///<data_dir>/index.sqlite3``; else ``sqlite:///PATH`` or ``postgresql://…``."""
    retention_days: int = 0
    retention_overrides: Mapping[str, int] = field(default_factory=dict)
    retention_interval_s: float = 3600.0
    min_free_mb: int = 100
    warn_free_mb: int = 1000
    objects: str = ""
    """Where finished recordings are kept: "" (they stay under data_dir), file:///DIR or s3://BUCKET/PREFIX."""
    objects_endpoint: str = ""
    objects_region: str = ""
    objects_access_key: str = ""
    objects_secret_key: str = ""
    upload_concurrency: int = 4
    upload_retry_max_s: float = 30.0
    upload_multipart_mb: int = 16


@dataclass(frozen=True)
class LiveSettings:
    targets: tuple[str, ...] = ()
    """ws:// or wss:// URLs srs streams matching calls to (options as srs.* query parameters)."""
    queue_frames: int = 250
    """Messages (20 ms each) kept per live listener before new ones are dropped and counted."""
    reconnect_max_s: float = 10.0


@dataclass(frozen=True)
class NodeSettings:
    id: str = ""
    """This srs's name in a fleet sharing one index; empty: the host name."""


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"


@dataclass(frozen=True)
class Config:
    sip: SipSettings = field(default_factory=SipSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    log: LogSettings = field(default_factory=LogSettings)
    live: LiveSettings = field(default_factory=LiveSettings)


_SECTIONS: dict[str, type[Any]] = {
    "sip": SipSettings,
    "media": MediaSettings,
    "limits": LimitSettings,
    "http": HttpSettings,
    "storage": StorageSettings,
    "node": NodeSettings,
    "log": LogSettings,
    "live": LiveSettings,
}


def _convert(section: str, key: str, current: Any, value: Any) -> Any:
    where = f"[{section}] {key}"
    if (section, key) == ("media", "sdes_over_plain_sip"):
        if value is True:
            return "allow"
        if value is False:
            return "refuse"
        if value != "warn":
            raise ConfigError(f'{where}: expected true, false or "warn", got {value!r}')
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if key in ("listen", "tls_listen"):
        if value in ("", None, False) and section == "http":
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f'{where}: expected "HOST:PORT" or a list of them')
        parsed = tuple(HostPort.parse(i, what=where) for i in items)
        return parsed[0] if section == "http" else parsed
    if isinstance(current, dict):
        if not isinstance(value, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value.values()
        ):
            raise ConfigError(f"{where}: expected a table of SOURCE = DAYS")
        return dict(value)
    if isinstance(current, tuple):
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    return value


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("log", "level"): ("debug", "info", "warning", "error"),
    ("media", "pause"): ("silence", "cut"),
    ("media", "output"): ("mono", "stereo", "per-stream"),
    ("media", "format"): ("wav", "flac", "ogg-opus", "mp3"),
    ("media", "rtp_source"): ("sdp-address", "sip-peer", "any"),
    ("media", "journal_fsync"): ("none", "interval"),
}
"""Keys whose value is one of a few words: anything else is refused, never read as the default."""

_DAY = 86_400
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("sip", "answer_delay_ms"): (0, 60_000),
    ("sip", "reject_status"): (300, 699),
    ("sip", "max_message_size"): (1024, 16 * 1024 * 1024),
    ("sip", "t1_ms"): (1, 60_000),
    ("sip", "t2_ms"): (1, 600_000),
    ("sip", "min_se"): (90, _DAY),
    ("sip", "rate_limit_per_source"): (0, 1_000_000),
    ("sip", "rate_limit_burst"): (1, 1_000_000),
    ("media", "rtp_port_min"): (1024, 65535),
    ("media", "rtp_port_max"): (1024, 65535),
    ("media", "reorder_window_ms"): (0, 2000),
    ("media", "flush_interval_ms"): (10, 60_000),
    ("media", "relatch_silence_ms"): (0, 3_600_000),
    ("media", "workers"): (0, 64),
    ("media", "no_media_warning_s"): (0, 3600),
    ("media", "rtp_timeout_s"): (0, _DAY),
    ("media", "journal_fsync_interval_ms"): (10, 3_600_000),
    ("limits", "max_sessions"): (1, 1_000_000),
    ("limits", "max_duration_s"): (1, 31 * _DAY),
    ("limits", "drain_seconds"): (0, _DAY),
    ("limits", "max_loop_lag_ms"): (0, 60_000),
    ("limits", "max_sip_backlog_kb"): (0, 1024 * 1024),
    # per-source and per-call bounds: 0 switches one off
    ("limits", "max_streams_per_call"): (0, 1000),
    ("limits", "max_sessions_per_source"): (0, 1_000_000),
    ("limits", "max_streams_per_source"): (0, 1_000_000),
    ("limits", "max_metadata_versions"): (0, 1_000_000),
    ("limits", "max_metadata_bytes"): (0, 1 << 30),
    ("limits", "max_sip_connections"): (0, 1_000_000),
    ("limits", "max_sip_connections_per_source"): (0, 1_000_000),
    ("limits", "sip_header_timeout_s"): (0, _DAY),
    ("limits", "sip_idle_timeout_s"): (0, 31 * _DAY),
    ("http", "link_max_validity_min"): (1, 366 * 24 * 60),
    ("storage", "retention_days"): (0, 100 * 366),
    ("storage", "retention_interval_s"): (0.01, 366 * _DAY),
    ("storage", "min_free_mb"): (0, 1 << 30),
    ("storage", "warn_free_mb"): (0, 1 << 30),
    ("live", "queue_frames"): (10, 100_000),
    ("live", "reconnect_max_s"): (0.2, 3600),
}
"""Every number's accepted range (inclusive): a typo of a few digits is refused at start with the
key and the range named, instead of a daemon that times out every call or never flushes."""

NON_EMPTY = {("sip", "reject_reason"), ("sip", "user_agent"), ("storage", "data_dir")}
MIN_RTP_PORTS_PER_CALL = 4
"""A two-stream SIPREC call takes two even RTP ports and the odd RTCP port after each."""


def _check_values(config: Config) -> None:
    for (section, key), choices in CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in choices:
            raise ConfigError(f"[{section}] {key}: expected one of {', '.join(choices)}, got {value!r}")
    for (section, key), (low, high) in RANGES.items():
        value = getattr(getattr(config, section), key)
        if not low <= value <= high:
            raise ConfigError(f"[{section}] {key}: expected {low:g}..{high:g}, got {value!r}")
    for section, key in NON_EMPTY:
        if not str(getattr(getattr(config, section), key)).strip():
            raise ConfigError(f"[{section}] {key}: must not be empty")
    for source, days in config.storage.retention_overrides.items():
        if not 0 <= days <= 100 * 366:
            raise ConfigError(f"[storage.retention_overrides] {source}: expected 0..36600 days, got {days}")
    if config.media.codec_preference:
        import srs_codecs  # the decoders srs has; a misspelt name would be ignored silently

        known = {str(encoding).upper() for encoding, _ in srs_codecs.supported_codecs()}
        for name in config.media.codec_preference:
            if name.upper() not in known:
                raise ConfigError(
                    f"[media] codec_preference: {name!r} is not a codec srs decodes "
                    f"({', '.join(sorted(known))})"
                )
    for target in config.live.targets:
        _check_live_target(target)
    for url in config.http.webhook_urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"[http] webhook_urls: {url!r} is not an http:// or https:// URL")


_LIVE_OPTIONS = {
    "srs.format": ("jambonz", "twilio"), "srs.mix": ("mono", "mixed", "stereo", "streams"),
    "srs.rate": ("8000", "16000"), "srs.source": (), "srs.participant": (), "srs.extension": (),
}


def _check_live_target(target: str) -> None:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(target)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"[live] targets: {target!r} is not a ws:// or wss:// URL")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if not key.startswith("srs."):
            continue
        if key not in _LIVE_OPTIONS:
            raise ConfigError(f"[live] targets: {target!r}: unknown option {key}")
        choices = _LIVE_OPTIONS[key]
        if choices and value not in choices:
            raise ConfigError(f"[live] targets: {key}={value!r}: expected one of {', '.join(choices)}")


def _validate(config: Config) -> None:
    _check_values(config)
    media = config.media
    if not media.rtp_port_min < media.rtp_port_max:
        raise ConfigError(
            f"[media] rtp_port_min/rtp_port_max: need 1024 <= min < max <= 65535, "
            f"got {media.rtp_port_min}-{media.rtp_port_max}"
        )
    first_even = media.rtp_port_min + media.rtp_port_min % 2
    if media.rtp_port_max - first_even + 1 < MIN_RTP_PORTS_PER_CALL:
        raise ConfigError(
            f"[media] rtp_port_min/rtp_port_max: {media.rtp_port_min}-{media.rtp_port_max} is too small "
            f"for one two-stream call (it needs {MIN_RTP_PORTS_PER_CALL} ports from an even one)"
        )
    if config.sip.t2_ms < config.sip.t1_ms:
        sip = config.sip
        raise ConfigError(f"[sip] t2_ms ({sip.t2_ms}) must not be less than t1_ms ({sip.t1_ms})")
    if config.sip.tls_ca_file and not Path(config.sip.tls_ca_file).is_file():
        raise ConfigError(f"[sip] tls_ca_file: {config.sip.tls_ca_file!r} is not a readable file")
    for network in config.sip.allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ConfigError(f"[sip] allowed_networks: {network!r} is not a network ({exc})") from exc
    if config.sip.rate_limit_per_source < 0 or config.sip.rate_limit_burst < 1:
        raise ConfigError("[sip] rate_limit_per_source must be >= 0 and rate_limit_burst >= 1")
    http = config.http
    if not 1 <= http.max_body_kb <= 1024 * 1024:
        raise ConfigError("[http] max_body_kb: expected 1..1048576")
    if not 0 < http.export_ttl_hours <= 24 * 366:
        raise ConfigError("[http] export_ttl_hours: expected a number of hours > 0 and <= 8784")
    if not 1 <= http.webhook_queue_size <= 1_000_000:
        raise ConfigError("[http] webhook_queue_size: expected 1..1000000")
    if not 0 < http.webhook_timeout_s <= 300:
        raise ConfigError("[http] webhook_timeout_s: expected seconds > 0 and <= 300")
    if not 1 <= http.webhook_max_attempts <= 20:
        raise ConfigError("[http] webhook_max_attempts: expected 1..20")
    if config.sip.tls_listen and not (config.sip.tls_cert and config.sip.tls_key):
        raise ConfigError("[sip] tls_listen needs tls_cert and tls_key")
    index = config.storage.index
    if index and not (index.startswith(("postgresql://", "postgres://")) or _SQLITE_URL.fullmatch(index)):
        shown = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", index)
        raise ConfigError(f'[storage] index: expected "sqlite:///PATH" or "postgresql://...", got {shown!r}')
    if config.node.id and not _NODE_ID.fullmatch(config.node.id):
        raise ConfigError(
            f"[node] id: 1 to 64 letters, digits, '.', '_' or '-', got {config.node.id!r}"
        )
    _validate_objects(config.storage)


def _validate_objects(storage: StorageSettings) -> None:
    url = storage.objects
    if url and not ((url.startswith("s3://") and len(url) > 5) or url.startswith("file:///")):
        raise ConfigError(
            f'[storage] objects: expected "", "file:///DIR" or "s3://BUCKET[/PREFIX]", got {url!r}'
        )
    if storage.objects_endpoint and not storage.objects_endpoint.startswith(("http://", "https://")):
        raise ConfigError("[storage] objects_endpoint: expected an http:// or https:// URL")
    if not 1 <= storage.upload_concurrency <= 64:
        raise ConfigError(f"[storage] upload_concurrency: expected 1..64, got {storage.upload_concurrency}")
    if not 0 < storage.upload_retry_max_s <= 3600:
        raise ConfigError("[storage] upload_retry_max_s: expected a number of seconds in (0, 3600]")
    if not 5 <= storage.upload_multipart_mb <= 5120:
        raise ConfigError("[storage] upload_multipart_mb: expected 5..5120 (S3 parts are at least 5 MB)")


def build_config(data: Mapping[str, Any]) -> Config:
    """Builds a Config from parsed TOML, refusing unknown sections and keys by name."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"unknown configuration section [{name}]")
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"unknown configuration key [{name}] {key}")
            values[key] = _convert(name, key, getattr(defaults, key), value)
        sections[name] = cls(**values)
    config = Config(**sections)
    _validate(config)
    return config


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return build_config({})
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    return build_config(data)


def with_overrides(
    config: Config,
    *,
    sip: str | None = None,
    sips: str | None = None,
    rtp_ports: str | None = None,
    data_dir: str | None = None,
    http: str | None = None,
) -> Config:
    """Applies `srs serve` flags on top of the file: flags win."""
    if sip is not None:
        config = dataclasses.replace(
            config, sip=dataclasses.replace(config.sip, listen=(HostPort.parse(sip, what="--sip"),))
        )
    if sips is not None:
        config = dataclasses.replace(
            config, sip=dataclasses.replace(config.sip, tls_listen=(HostPort.parse(sips, what="--sips"),))
        )
    if rtp_ports is not None:
        lo, sep, hi = rtp_ports.partition("-")
        if not sep or not lo.isdigit() or not hi.isdigit():
            raise ConfigError(f"--rtp-ports: expected LO-HI, got {rtp_ports!r}")
        config = dataclasses.replace(
            config, media=dataclasses.replace(config.media, rtp_port_min=int(lo), rtp_port_max=int(hi))
        )
    if data_dir is not None:
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, data_dir=data_dir))
    if http is not None:
        listen = None if http in ("", "off", "none") else HostPort.parse(http, what="--http")
        config = dataclasses.replace(config, http=dataclasses.replace(config.http, listen=listen))
    _validate(config)
    return config
