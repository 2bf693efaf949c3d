"""`srs serve`: run the recording server (the daemon of :mod:`srs.daemon.app`) with the
configuration file and the few flags that override it."""

from __future__ import annotations

import argparse
import sys

from srs.cli.common import add_config_flags, config_path, data_dir_override
from srs.config import DEFAULT_DATA_DIR


def _serve(args: argparse.Namespace) -> int:
    from srs.config import load_config, with_overrides
    from srs.daemon.app import run_daemon
    from srs.storage.errors import IndexUnavailable

    config = with_overrides(
        load_config(config_path(args)),
        sip=args.sip,
        sips=args.sips,
        rtp_ports=args.rtp_ports,
        data_dir=data_dir_override(args),
        http=args.http,
    )
    try:
        return run_daemon(config)
    except IndexUnavailable as exc:  # a node cannot start without its index (its service manager retries)
        print(f"srs serve: {exc}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the recording server")
    add_config_flags(serve, data_dir_help="recordings and index (default: $SRS_DATA_DIR, the config "
                     f"file's [storage] data_dir, else {DEFAULT_DATA_DIR})")
    serve.add_argument("--sip", metavar="HOST:PORT", help="SIP listener, UDP and TCP (default 0.0.0.0:5060)")
    serve.add_argument("--sips", metavar="HOST:PORT", help="SIP over TLS listener")
    serve.add_argument("--rtp-ports", metavar="LO-HI", help="RTP port range (default 20000-39999)")
    serve.add_argument("--http", metavar="HOST:PORT", help="admin HTTP API (default 127.0.0.1:8080; 'off')")
    serve.set_defaults(func=_serve)
