"""What every admin subcommand prints the same way: errors as one line with their exit status,
JSON, plurals, and who the audit trail says acted (``cli:<user>``)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from srs.errors import ExitCode, SrsError

Handler = Callable[[argparse.Namespace], int]


def errors_as_exit_status(handler: Handler) -> Handler:
    """Turn expected failures into one line on stderr and their exit status (1 unless the error
    names another, e.g. 3 for a data directory that is not one)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except SrsError as exc:
            print(f"srs: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
            return int(getattr(exc, "exit_code", ExitCode.FAILURE))
        except OSError as exc:
            print(f"srs: error: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)

    return run


def plural(count: int, noun: str) -> str:
    """``1 recording``, ``2 recordings``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False))
