"""`srs inspect FILE`: one report, or one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.cli.main import main

DATA = Path(__file__).resolve().parents[2] / "data"


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
