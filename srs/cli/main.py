"""The `srs` command: `serve`, `inspect`, `recordings …`, `token …`, `audit …`.

``main(argv) -> int`` is tested directly; the console script only wraps it.
The CLI contract is relied on by operators' scripts, so flags only ever grow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import srs
from srs.cli.common import add_config_flags, config_path, data_dir_override
from srs.config import DEFAULT_DATA_DIR
from srs.errors import ExitCode, SrsError


def _serve(args: argparse.Namespace) -> int:
    from srs.config import load_config, with_overrides
    from srs.daemon.app import run_daemon

    config = with_overrides(
        load_config(config_path(args)),
        sip=args.sip,
        sips=args.sips,
        rtp_ports=args.rtp_ports,
        data_dir=data_dir_override(args),
        http=args.http,
    )
    from srs.storage.errors import IndexUnavailable

    try:
        return run_daemon(config)
    except IndexUnavailable as exc:  # a node cannot start without its index (its service manager retries)
        print(f"srs serve: {exc}", file=sys.stderr)
        return 1


def _inspect(args: argparse.Namespace) -> int:
    from srs.siprec.inspect import inspect_bytes

    try:
        with open(args.file, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        print(f"srs inspect: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        report = inspect_bytes(data)
    except Exception as exc:
        print(f"srs inspect: {args.file}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for key, value in report.items():
            print(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srs", description="SIPREC session recording server")
    parser.add_argument("--version", action="version", version=f"srs {srs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the recording server")
    add_config_flags(serve, data_dir_help="recordings and index (default: $SRS_DATA_DIR, the config "
                     f"file's [storage] data_dir, else {DEFAULT_DATA_DIR})")
    serve.add_argument("--sip", metavar="HOST:PORT", help="SIP listener, UDP and TCP (default 0.0.0.0:5060)")
    serve.add_argument("--sips", metavar="HOST:PORT", help="SIP over TLS listener")
    serve.add_argument("--rtp-ports", metavar="LO-HI", help="RTP port range (default 20000-39999)")
    serve.add_argument("--http", metavar="HOST:PORT", help="admin HTTP API (default 127.0.0.1:8080; 'off')")
    serve.set_defaults(func=_serve)

    inspect = sub.add_parser("inspect", help="explain a SIP message, multipart body or metadata file")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=_inspect)

    from srs.cli.recordings import register

    register(sub)
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
