"""`srs` command line: main(argv) -> int, tested directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.cli.main import main
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


# ---- the CLI never creates what it reads; --config and the environment -----------------------


def _made_by_serve(path: Path) -> Path:
    RecordingService.open(path).index.close()  # what `srs serve` leaves behind
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["recordings", "list"],
        ["recordings", "show", "--call-recording-id", "X"],
        ["token", "list"],
        ["token", "create", "--scope", "read"],
    ],
)
def test_admin_commands_never_create_a_data_dir(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRS_DATA_DIR", raising=False)
    monkeypatch.delenv("SRS_CONFIG", raising=False)
    assert main(argv) == 3  # default ./var, which does not exist here
    assert main([*argv, "--data-dir", str(tmp_path / "typo")]) == 3
    (tmp_path / "plain").mkdir()
    assert main([*argv, "--data-dir", str(tmp_path / "plain")]) == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert "does not exist" in err[0] and "typo" in err[1] and "not an srs data directory" in err[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
    assert list((tmp_path / "plain").iterdir()) == []


def test_config_file_and_environment_name_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """flag > SRS_DATA_DIR > the config file's [storage] data_dir > ./var; --config > SRS_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRS_DATA_DIR", raising=False)
    monkeypatch.delenv("SRS_CONFIG", raising=False)
    by_file, by_env, by_flag = (_made_by_serve(tmp_path / name) for name in ("file", "env", "flag"))
    config = tmp_path / "srs.toml"
    config.write_text(f'[storage]\ndata_dir = "{by_file}"\n')

    def token_names(*argv: str) -> str:
        assert main(["token", "create", "--scope", "read", "--name", "probe", *argv]) == 0
        capsys.readouterr()
        for data in (by_file, by_env, by_flag):
            assert main(["token", "list", "--json", "--data-dir", str(data)]) == 0
            if json.loads(capsys.readouterr().out)["items"]:
                return data.name
        raise AssertionError("no token anywhere")

    assert token_names("--config", str(config)) == "file"
    _reset(by_file)
    monkeypatch.setenv("SRS_CONFIG", str(config))
    assert token_names() == "file"
    _reset(by_file)
    monkeypatch.setenv("SRS_DATA_DIR", str(by_env))
    assert token_names() == "env"
    _reset(by_env)
    assert token_names("--data-dir", str(by_flag)) == "flag"


def _reset(data: Path) -> None:
    service = RecordingService.open(data)
    try:
        with service.index.db.write() as conn:
            conn.execute("DELETE FROM api_tokens")
    finally:
        service.index.close()


def test_link_validity_limit_comes_from_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _made_by_serve(tmp_path / "var")
    config = tmp_path / "srs.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n[http]\nlink_max_validity_min = 10\n')
    from tests.unit.storage.factory import add_recording

    service = RecordingService.open(data)
    try:
        rid = add_recording(service.index, service.layout)
    finally:
        service.index.close()
    assert main(["recordings", "link", rid, "--validity", "11", "--config", str(config)]) == 1
    assert "at most 600 seconds" in capsys.readouterr().err
    assert main(["recordings", "link", rid, "--validity", "10", "--config", str(config)]) == 0


def test_a_bad_config_file_is_one_line_for_admin_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "srs.toml"
    config.write_text('[log]\nlevel = "verbose"\n')
    assert main(["recordings", "list", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[log] level" in err


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
