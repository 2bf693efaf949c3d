"""`srs inspect FILE`: explain a SIP message, a multipart body or a metadata file, offline."""

from __future__ import annotations

import argparse
import json
import sys


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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inspect = subparsers.add_parser("inspect", help="explain a SIP message, multipart body or metadata file")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=_inspect)
