"""The `recordings` subcommands, run through the parser `srs` main builds, as it runs them."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from srs.cli.main import build_parser
from srs.service.recordings import RecordingService
from srs.storage.records import State
from tests.unit.storage.factory import T0, add_recording, wav_bytes


def run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_list_json_prints_every_match(
    svc: RecordingService, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [add_recording(svc.index, svc.layout, started_at=T0 + i, seed=i) for i in range(3)]
    assert run("recordings", "list", "--data-dir", str(data), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["items"]
    assert [item["id"] for item in out["items"]] == list(reversed(ids))
    assert run("recordings", "list", "--data-dir", str(data), "--json", "--max", "2", "--page", "2") == 0
    paged = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in paged["items"]] == [ids[0]]
    assert paged["pagination"] == {"pages": 2, "total": 3, "current": 2, "max": 2}


def test_list_filters_and_plain_output(
    svc: RecordingService, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = add_recording(svc.index, svc.layout, call_recording_id="A", extensions={"queue": "sales"})
    add_recording(svc.index, svc.layout, call_recording_id="B", duration_ms=90_000)
    assert run("recordings", "list", "--data-dir", str(data), "--ext", "queue=sales", "--json") == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)["items"]] == [wanted]
    assert (
        run("recordings", "list", "--data-dir", str(data), "--max-duration", "60", "--state", "available")
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(wanted)
    assert run("recordings", "list", "--data-dir", str(data), "--start", "yesterday") == 1
    assert "not a time" in capsys.readouterr().err


def test_show(svc: RecordingService, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rid = add_recording(svc.index, svc.layout)
    assert run("recordings", "show", rid, "--data-dir", str(data), "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == rid
    assert run("recordings", "show", "--call-recording-id", "crid-1", "--data-dir", str(data)) == 0
    assert rid in capsys.readouterr().out


@pytest.mark.parametrize("wanted", ["01HZX3Y5Q8K2M4N6P8R0S2T4V6", "../../etc/passwd"])
def test_show_unknown_id_is_one_line_on_stderr(
    svc: RecordingService, data: Path, capsys: pytest.CaptureFixture[str], wanted: str
) -> None:
    assert run("recordings", "show", wanted, "--data-dir", str(data)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("srs: error: no recording")


def test_download_link_hold_delete(
    svc: RecordingService, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = add_recording(svc.index, svc.layout)
    target = tmp_path / "out.wav"
    assert run("recordings", "download", rid, "-o", str(target), "--data-dir", str(data)) == 0
    assert target.read_bytes() == wav_bytes()
    assert run("recordings", "link", rid, "--validity", "10", "--data-dir", str(data), "--json") == 0
    link = json.loads(capsys.readouterr().out)
    _, query = link["link"].split("?")
    params = dict(part.split("=") for part in query.split("&"))
    svc.verify_link(rid, params["exp"], params["sig"], params["lid"])
    assert run("recordings", "hold", rid, "--data-dir", str(data)) == 0
    assert run("recordings", "delete", rid, "--data-dir", str(data)) == 1
    assert "legal hold" in capsys.readouterr().err
    assert run("recordings", "hold", rid, "--off", "--data-dir", str(data)) == 0
    assert run("recordings", "delete", rid, "--data-dir", str(data)) == 0
    assert svc.index.get(rid) is None


def test_download_of_unfinished_recording_fails(
    svc: RecordingService, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = add_recording(svc.index, svc.layout, state=State.RECORDING)
    assert run("recordings", "download", rid, "-o", str(tmp_path / "x.wav"), "--data-dir", str(data)) == 1
    assert "recording" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_export(svc: RecordingService, data: Path, tmp_path: Path) -> None:
    first = add_recording(svc.index, svc.layout, call_recording_id="A")
    add_recording(svc.index, svc.layout, call_recording_id="B", seed=3)
    target = tmp_path / "export.tar.gz"
    assert (
        run("recordings", "export", "--call-recording-id", "A", "-o", str(target), "--data-dir", str(data))
        == 0
    )
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["index.json", f"recordings/{first}.wav"]
    zipped = tmp_path / "by-id.zip"
    assert run("recordings", "export", "--id", first, "-o", str(zipped), "--data-dir", str(data)) == 0
    assert zipped.read_bytes()[:2] == b"PK"


def test_every_subcommand_takes_data_dir() -> None:
    parser = build_parser()
    for argv in (
        ["recordings", "list"],
        ["recordings", "show", "X"],
        ["recordings", "download", "X", "-o", "f"],
        ["recordings", "link", "X"],
        ["recordings", "export", "-o", "f"],
        ["recordings", "delete", "X"],
        ["recordings", "hold", "X"],
        ["token", "create", "--scope", "read"],
        ["token", "list"],
        ["token", "revoke", "X"],
        ["audit", "list"],
    ):
        assert parser.parse_args(argv).data_dir is None  # flag > SRS_DATA_DIR > config file > ./var
        assert parser.parse_args([*argv, "--data-dir", "/d"]).data_dir == "/d"
        assert parser.parse_args([*argv, "--config", "/c.toml"]).config == "/c.toml"
