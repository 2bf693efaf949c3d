"""What every admin subcommand prints the same way: one error line and its exit status, plurals."""

from __future__ import annotations

import argparse
import errno

import pytest

from srs.cli.output import actor, errors_as_exit_status, plural, print_json
from srs.errors import ConfigError, DataDirError, ExitCode
from srs.service.errors import NotFound


def _failing(exc: BaseException) -> argparse.Namespace:
    return argparse.Namespace(exc=exc)


@errors_as_exit_status
def _raise(args: argparse.Namespace) -> int:
    raise args.exc


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (DataDirError("/d is not an srs data directory"), ExitCode.DATA_DIR, "not an srs data directory"),
        (ConfigError("[log] level: not one of debug, info"), ExitCode.USAGE, "[log] level"),
        (NotFound("no recording with id 'X'"), ExitCode.FAILURE, "no recording with id 'X'"),
        (OSError(errno.ENOSPC, "No space left on device"), ExitCode.FAILURE, "No space left"),
    ],
)
def test_an_expected_failure_is_one_line_and_its_exit_status(
    exc: BaseException, code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _raise(_failing(exc)) == int(code)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("srs: error: ") and captured.err.count("\n") == 1 and text in captured.err


def test_an_unexpected_failure_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        _raise(_failing(ZeroDivisionError("bug")))


def test_plural_json_and_actor(capsys: pytest.CaptureFixture[str]) -> None:
    assert plural(1, "recording") == "1 recording"
    assert [plural(0, "byte"), plural(2, "byte")] == ["0 bytes", "2 bytes"]
    print_json({"name": "Zoë", "n": 1})
    assert capsys.readouterr().out == '{\n  "name": "Zoë",\n  "n": 1\n}\n'
    assert actor() == "cli" or actor().startswith("cli:")
