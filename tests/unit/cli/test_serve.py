"""`srs serve`: its configuration file and flags, refused before anything starts when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.cli.main import main


def test_serve_refuses_a_misspelt_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "srs.toml"
    config.write_text("[limits]\nmax_sesions = 1\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "max_sesions" in capsys.readouterr().err


def test_serve_refuses_a_bad_flag_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--rtp-ports", "1-x"]) == 2
    assert "--rtp-ports" in capsys.readouterr().err


def test_serve_reads_srs_config_and_the_flag_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env = tmp_path / "env.toml"
    from_env.write_text("[limits]\nmax_sesions = 1\n")
    from_flag = tmp_path / "flag.toml"
    from_flag.write_text('[log]\nlevel = "loud"\n')
    monkeypatch.setenv("SRS_CONFIG", str(from_env))
    assert main(["serve"]) == 2
    assert "max_sesions" in capsys.readouterr().err
    assert main(["serve", "--config", str(from_flag)]) == 2
    assert "[log] level" in capsys.readouterr().err
