"""The `srs` command: `serve`, `inspect`, `recordings …`, `token …`, `audit …`.

``main(argv) -> int`` is tested directly; the console script only wraps it. Each command group is a
module with a ``register(subparsers)``; this one builds the parser from them and dispatches. The CLI
contract is relied on by operators' scripts, so flags only ever grow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import srs
from srs.cli import audit, inspect, recordings, serve, tokens
from srs.cli.datadir import common_parser
from srs.errors import ExitCode, SrsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srs", description="SIPREC session recording server")
    parser.add_argument("--version", action="version", version=f"srs {srs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    inspect.register(sub)
    common = common_parser()  # the admin groups' shared flags: --config, --data-dir, --objects, --index
    recordings.register(sub, common)
    tokens.register(sub, common)
    audit.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; an error an operator can fix is one line on stderr and its exit code
    (:class:`srs.errors.ExitCode`), never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except SrsError as exc:
        print(f"srs {args.command}: {_one_line(exc)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", ExitCode.FAILURE))
    except OSError as exc:  # the disk or the system refused something not foreseen above
        print(f"srs {args.command}: {_one_line(exc)}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    except KeyboardInterrupt:
        return 130
    return result


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return " ".join(text.split())
