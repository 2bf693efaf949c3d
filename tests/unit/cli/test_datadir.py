"""How the admin subcommands find their data directory: never created; flag, environment, config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.cli.main import main
from srs.service.recordings import RecordingService


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
