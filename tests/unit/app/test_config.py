"""Configuration: the example file is the documentation, unknown keys are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.config import Config, HostPort, build_config, load_config, with_overrides
from srs.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "srs.example.toml"


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
    ],
)
def test_inconsistent_values_are_refused(data: dict[str, dict[str, object]], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_config(data)


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
