"""Configuration: a TOML file plus command-line overrides, frozen once loaded.

Only the composition root (:mod:`srs.app`) reads this; every other module gets
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
    flush_interval_ms: int = 1000
    pause: str = "silence"
    codec_preference: tuple[str, ...] = ()
    output: str = "mono"
    format: str = "wav"
    relatch_silence_ms: int = 1000
    workers: int = 1


@dataclass(frozen=True)
class LimitSettings:
    max_sessions: int = 5000
    max_duration_s: int = 86400
    drain_seconds: int = 30
    max_loop_lag_ms: int = 250
    max_sip_backlog_kb: int = 1024


@dataclass(frozen=True)
class HttpSettings:
    listen: HostPort | None = HostPort("127.0.0.1", 8080)
    link_max_validity_min: int = 1440
    webhook_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = "./var"
    index: str = ""
    """Empty: ``sqlite:///<data_dir>/index.sqlite3``; else ``sqlite:///PATH`` or ``postgresql://…``."""
    retention_days: int = 0
    retention_overrides: Mapping[str, int] = field(default_factory=dict)
    retention_interval_s: float = 3600.0
    min_free_mb: int = 100
    warn_free_mb: int = 1000


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


_SECTIONS: dict[str, type[Any]] = {
    "sip": SipSettings,
    "media": MediaSettings,
    "limits": LimitSettings,
    "http": HttpSettings,
    "storage": StorageSettings,
    "node": NodeSettings,
    "log": LogSettings,
}


def _convert(section: str, key: str, current: Any, value: Any) -> Any:
    where = f"[{section}] {key}"
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
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}: expected a positive number, got {value!r}")
        return float(value)
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


def _validate(config: Config) -> None:
    media = config.media
    if not 1024 <= media.rtp_port_min < media.rtp_port_max <= 65535:
        raise ConfigError(
            f"[media] rtp_port_min/rtp_port_max: need 1024 <= min < max <= 65535, "
            f"got {media.rtp_port_min}-{media.rtp_port_max}"
        )
    if media.pause not in ("silence", "cut"):
        raise ConfigError(f'[media] pause: expected "silence" or "cut", got {media.pause!r}')
    if media.output not in ("mono", "stereo", "per-stream"):
        raise ConfigError(f"[media] output: expected mono, stereo or per-stream, got {media.output!r}")
    if media.format not in ("wav", "flac", "ogg-opus", "mp3"):
        raise ConfigError(f"[media] format: expected wav, flac, ogg-opus or mp3, got {media.format!r}")
    if not 0 <= media.workers <= 64:
        raise ConfigError(f"[media] workers: expected 0..64, got {media.workers}")
    if not 0 <= media.reorder_window_ms <= 2000:
        raise ConfigError("[media] reorder_window_ms: expected 0..2000")
    if config.limits.drain_seconds < 0:
        raise ConfigError("[limits] drain_seconds: must not be negative")
    if config.limits.max_sip_backlog_kb < 0:
        raise ConfigError("[limits] max_sip_backlog_kb: must not be negative")
    if not 300 <= config.sip.reject_status <= 699:
        raise ConfigError("[sip] reject_status: expected a final status 300..699")
    for network in config.sip.allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ConfigError(f"[sip] allowed_networks: {network!r} is not a network ({exc})") from exc
    if config.sip.rate_limit_per_source < 0 or config.sip.rate_limit_burst < 1:
        raise ConfigError("[sip] rate_limit_per_source must be >= 0 and rate_limit_burst >= 1")
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
