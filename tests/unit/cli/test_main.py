"""`srs` command line: main(argv) -> int, tested directly (the parser built from the command groups)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.cli.main import main
from srs.service.recordings import RecordingService
from tests.unit.cli.test_datadir import _made_by_serve


def test_recordings_on_an_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    RecordingService.open(tmp_path).index.close()  # what `srs serve` leaves behind
    assert main(["recordings", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": []}
    assert (
        main(["recordings", "show", "--call-recording-id", "X", "--data-dir", str(tmp_path), "--json"]) == 1
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import srs

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"srs {srs.__version__}"


def test_show_by_call_recording_id_says_when_there_are_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.storage.factory import T0, add_recording

    data = _made_by_serve(tmp_path / "var")
    service = RecordingService.open(data)
    try:
        add_recording(service.index, service.layout, call_recording_id="dup", started_at=T0)
        newest = add_recording(service.index, service.layout, call_recording_id="dup", started_at=T0 + 60)
        single = add_recording(service.index, service.layout, call_recording_id="one", started_at=T0)
    finally:
        service.index.close()
    assert main(["recordings", "show", "--call-recording-id", "dup", "--data-dir", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["id"] == newest
    assert "2 recordings have call-recording-id 'dup'; showing the newest" in captured.err
    assert main(["recordings", "show", "--call-recording-id", "one", "--data-dir", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["id"] == single and captured.err == ""


def test_counts_are_pluralised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.storage.factory import add_recording

    data = _made_by_serve(tmp_path / "var")
    service = RecordingService.open(data)
    try:
        rid = add_recording(service.index, service.layout)
    finally:
        service.index.close()
    out = tmp_path / "one.tar.gz"
    assert main(["recordings", "export", "--id", rid, "-o", str(out), "--data-dir", str(data)]) == 0
    assert "(1 recording, " in capsys.readouterr().err
    assert main(["recordings", "list", "--max", "5", "--data-dir", str(data)]) == 0
    assert "1 recording in all" in capsys.readouterr().err
