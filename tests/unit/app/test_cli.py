"""`srs` command line: main(argv) -> int, tested directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.cli import main
from srs.service.recordings import RecordingService

DATA = Path(__file__).resolve().parents[2] / "data"


def test_serve_refuses_a_misspelt_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "srs.toml"
    config.write_text("[limits]\nmax_sesions = 1\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "max_sesions" in capsys.readouterr().err


def test_serve_refuses_a_bad_flag_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--rtp-ports", "1-x"]) == 2
    assert "--rtp-ports" in capsys.readouterr().err


def test_inspect_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(p for p in sorted(DATA.iterdir()) if p.suffix == ".sip")
    assert main(["inspect", str(sample), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] in ("request", "response")
    assert isinstance(report["headers"], list) and report["headers"]


def test_inspect_unreadable_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.sip")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.sip" in err


def test_inspect_garbage_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\xff" * 10)
    assert main(["inspect", str(junk), "--json"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_recordings_on_an_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    RecordingService.open(tmp_path).index.close()  # what `srs serve` leaves behind
    assert main(["recordings", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": []}
    assert (
        main(["recordings", "show", "--call-recording-id", "X", "--data-dir", str(tmp_path), "--json"]) == 1
    )
