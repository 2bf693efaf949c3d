"""Configuration: the example file is the documentation, unknown keys are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.config import CHOICES, RANGES, Config, HostPort, build_config, load_config, with_overrides
from srs.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "srs.example.toml"


def test_example_file_is_exactly_the_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_no_file_means_embedded_defaults() -> None:
    config = load_config(None)
    assert config.sip.listen == (HostPort("0.0.0.0", 5060),)
    assert (config.media.rtp_port_min, config.media.rtp_port_max) == (20000, 39999)
    assert config.storage.data_dir == "./var"
    assert config.http.listen == HostPort("127.0.0.1", 8080)
    assert config.limits.drain_seconds == 30
    assert config.limits.max_sessions == 5000


def test_misspelt_key_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"\[limits\] max_sesions"):
        build_config({"limits": {"max_sesions": 10}})


def test_unknown_section_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"\[recording\]"):
        build_config({"recording": {}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("limits", "max_sessions", "10"),
        ("limits", "drain_seconds", True),
        ("sip", "reject_reason", 5),
        ("media", "codec_preference", "PCMU"),
        ("media", "journal", "yes"),
        ("sip", "listen", "localhost"),
    ],
)
def test_wrong_types_are_refused(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        build_config({section: {key: value}})


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"media": {"rtp_port_min": 30000, "rtp_port_max": 20000}}, "rtp_port"),
        ({"media": {"pause": "skip"}}, "pause"),
        ({"media": {"output": "surround"}}, "output"),
        ({"limits": {"drain_seconds": -1}}, "drain_seconds"),
        ({"sip": {"reject_status": 200}}, "reject_status"),
        ({"sip": {"tls_listen": ["0.0.0.0:5061"]}}, "tls_cert"),
        ({"http": {"max_body_kb": 0}}, "max_body_kb"),
        ({"http": {"export_ttl_hours": 0}}, "export_ttl_hours"),
        ({"http": {"webhook_queue_size": 0}}, "webhook_queue_size"),
        ({"http": {"webhook_timeout_s": 0}}, "webhook_timeout_s"),
        ({"http": {"webhook_max_attempts": 0}}, "webhook_max_attempts"),
        ({"media": {"rtp_source": "latch"}}, "rtp_source"),
        ({"media": {"sdes_over_plain_sip": "yes"}}, "sdes_over_plain_sip"),
        ({"media": {"rtp_timeout_s": -1}}, "rtp_timeout_s"),
        ({"media": {"no_media_warning_s": -5}}, "no_media_warning_s"),
        ({"media": {"journal_fsync": "always"}}, "journal_fsync"),
        ({"media": {"journal_fsync_interval_ms": 0}}, "journal_fsync_interval_ms"),
    ],
)
def test_inconsistent_values_are_refused(data: dict[str, dict[str, object]], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_config(data)


def test_media_source_and_sdes_settings() -> None:
    media = load_config(None).media
    assert (media.rtp_source, media.sdes_over_plain_sip) == ("sdp-address", "warn")
    assert (media.no_media_warning_s, media.rtp_timeout_s) == (5, 60)
    assert build_config({"media": {"sdes_over_plain_sip": True}}).media.sdes_over_plain_sip == "allow"
    assert build_config({"media": {"sdes_over_plain_sip": False}}).media.sdes_over_plain_sip == "refuse"
    assert build_config({"media": {"rtp_source": "any", "rtp_timeout_s": 0}}).media.rtp_timeout_s == 0


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "srs.toml"
    path.write_text('[sip]\nlisten = ["0.0.0.0:5080"]\n[storage]\ndata_dir = "/srv/rec"\n')
    config = with_overrides(
        load_config(path), sip="127.0.0.1:5090", rtp_ports="40000-40100", data_dir="/tmp/x", http="off"
    )
    assert config.sip.listen == (HostPort("127.0.0.1", 5090),)
    assert (config.media.rtp_port_min, config.media.rtp_port_max) == (40000, 40100)
    assert config.storage.data_dir == "/tmp/x"
    assert config.http.listen is None


def test_file_values_stay_without_flags(tmp_path: Path) -> None:
    path = tmp_path / "srs.toml"
    path.write_text('[sip]\nlisten = ["0.0.0.0:5080", "[::1]:5080"]\n')
    config = with_overrides(load_config(path))
    assert config.sip.listen == (HostPort("0.0.0.0", 5080), HostPort("::1", 5080))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:5060", HostPort("127.0.0.1", 5060)), ("[::1]:5062", HostPort("::1", 5062))],
)
def test_host_port(text: str, expected: HostPort) -> None:
    assert HostPort.parse(text, what="x") == expected
    assert HostPort.parse(str(expected), what="x") == expected


@pytest.mark.parametrize("text", ["5060", "host:", "host:99999", "[::1:5060", ":5060"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ConfigError):
        HostPort.parse(text, what="--sip")


@pytest.mark.parametrize("text", ["20000", "a-b", "20000-"])
def test_bad_rtp_range_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="--rtp-ports"):
        with_overrides(Config(), rtp_ports=text)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("log", "level", "verbose"), ("log", "level", "INFO"), ("media", "pause", "skip"),
     ("media", "output", "surround"), ("media", "format", "aac")],
)
def test_enumerated_values_are_refused_unless_listed(section: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[{section}\] {key}: expected one of .*{value!r}"):
        build_config({section: {key: value}})


def test_every_choice_listed_is_accepted() -> None:
    for (section, key), choices in CHOICES.items():
        for choice in choices:
            assert getattr(getattr(build_config({section: {key: choice}}), section), key) == choice


@pytest.mark.parametrize(("section", "key"), sorted(RANGES))
def test_every_number_is_checked_against_its_range(section: str, key: str) -> None:
    low, high = RANGES[(section, key)]
    integer = isinstance(getattr(getattr(Config(), section), key), int)
    below, above = (int(low) - 1, int(high) + 1) if integer else (low - 1.0, high + 1.0)
    for bad in (below, above):
        with pytest.raises(ConfigError, match=rf"\[{section}\] {key}: expected"):
            build_config(_with_consistent_ports({section: {key: bad}}))


def _with_consistent_ports(data: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Out-of-range port values are tested alone: the other end is moved out of the way."""
    media = data.get("media", {})
    if "rtp_port_min" in media:
        media.setdefault("rtp_port_max", 65535)
    if "rtp_port_max" in media:
        media.setdefault("rtp_port_min", 1024)
    return data


@pytest.mark.parametrize(("low", "high"), [(30000, 30002), (30001, 30003), (30000, 30001)])
def test_a_port_range_too_small_for_one_call_is_refused(low: int, high: int) -> None:
    with pytest.raises(ConfigError, match="too small for one two-stream call"):
        build_config({"media": {"rtp_port_min": low, "rtp_port_max": high}})
    with pytest.raises(ConfigError, match="too small"):
        with_overrides(Config(), rtp_ports=f"{low}-{high}")


def test_the_smallest_port_range_that_fits_a_call() -> None:
    assert build_config({"media": {"rtp_port_min": 30001, "rtp_port_max": 30005}}).media.rtp_port_max == 30005


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"sip": {"user_agent": " "}}, r"\[sip\] user_agent: must not be empty"),
        ({"storage": {"data_dir": ""}}, r"\[storage\] data_dir"),
        ({"sip": {"t1_ms": 5000, "t2_ms": 4000}}, "t2_ms"),
        ({"http": {"webhook_urls": ["ftp://x"]}}, "webhook_urls"),
        ({"storage": {"retention_overrides": {"10.0.0.1:5060": -1}}}, "retention_overrides"),
        ({"media": {"codec_preference": ["PCMA", "PCMUU"]}}, "'PCMUU' is not a codec"),
    ],
)
def test_other_values_that_cannot_work_are_refused(data: dict[str, dict[str, object]], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_config(data)


def test_codec_preference_takes_the_names_srs_decodes_in_any_case() -> None:
    config = build_config({"media": {"codec_preference": ["pcma", "PCMU", "G722", "opus"]}})
    assert config.media.codec_preference == ("pcma", "PCMU", "G722", "opus")


def test_sip_hardening_defaults_and_validation(tmp_path: Path) -> None:
    config = build_config({})
    assert config.sip.tls_verify_peer is True and config.sip.tls_ca_file == ""
    limits = config.limits
    assert (limits.max_streams_per_call, limits.max_sip_connections_per_source) == (8, 64)
    assert limits.sip_header_timeout_s == 10.0 and limits.max_metadata_versions == 100
    with pytest.raises(ConfigError, match="max_streams_per_source"):
        build_config({"limits": {"max_streams_per_source": -1}})
    with pytest.raises(ConfigError, match="sip_idle_timeout_s"):
        build_config({"limits": {"sip_idle_timeout_s": -0.5}})
    with pytest.raises(ConfigError, match="tls_ca_file"):
        build_config({"sip": {"tls_ca_file": str(tmp_path / "missing.pem")}})
    with pytest.raises(ConfigError, match="tls_verify_peer"):
        build_config({"sip": {"tls_verify_peer": "no"}})
    off = build_config({"limits": {"max_sessions_per_source": 0, "sip_header_timeout_s": 3}})
    assert off.limits.max_sessions_per_source == 0 and off.limits.sip_header_timeout_s == 3.0


def test_outgoing_tls_context_verifies_unless_opted_out(tmp_path: Path) -> None:
    """The context the daemon hands the SIP edge for the TLS connections srs opens."""
    import ssl
    from types import SimpleNamespace

    from srs.daemon.app import Daemon

    verifying = Daemon._client_ssl(SimpleNamespace(config=build_config({})))  # type: ignore[arg-type]
    assert verifying.verify_mode is ssl.CERT_REQUIRED
    lab = Daemon._client_ssl(SimpleNamespace(config=build_config({"sip": {"tls_verify_peer": False}})))  # type: ignore[arg-type]
    assert lab.verify_mode is ssl.CERT_NONE


def test_journal_settings() -> None:
    media = build_config({"media": {"journal_fsync": "interval", "journal_fsync_interval_ms": 250}}).media
    assert (media.journal, media.journal_fsync, media.journal_fsync_interval_ms) == (True, "interval", 250)
    assert build_config({"media": {"journal": False}}).media.journal is False


def test_index_url_and_node_id_are_validated() -> None:
    config = build_config(
        {"storage": {"index": "postgresql://srs:pw@db.example.net/srs"}, "node": {"id": "rec-01.dc1"}}
    )
    assert config.storage.index.startswith("postgresql://") and config.node.id == "rec-01.dc1"
    assert build_config({"storage": {"index": "sqlite:///var/lib/srs/index.sqlite3"}}).storage.index
    with pytest.raises(ConfigError, match=r"\[storage\] index") as refused:
        build_config({"storage": {"index": "mysql://srs:hunter2@db/srs"}})
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"\[node\] id"):
        build_config({"node": {"id": "has space"}})


def test_node_id_defaults_to_the_host_name() -> None:
    import socket

    from srs.config import node_id

    assert node_id(build_config({"node": {"id": "n1"}})) == "n1"
    import re

    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0])[:64]
    assert node_id(Config()) == (host or "srs")
