"""``srs serve`` for benchmarks: the stock daemon with its media plane size given on the command line.

``--media-workers N`` sets ``[media] workers`` (0 keeps the media on the daemon's loop); everything
else comes from the embedded defaults or ``--config``, as in production.

    python -m bench.serve --media-workers 1 --sip 127.0.0.1:5060 --rtp-ports 20000-29999 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from srs.config import load_config, with_overrides
from srs.daemon.app import run_daemon


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("--config")
    parser.add_argument("--sip")
    parser.add_argument("--rtp-ports")
    parser.add_argument("--data-dir")
    parser.add_argument("--http")
    parser.add_argument("--media-workers", type=int, default=1)
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    config = with_overrides(
        load_config(args.config),
        sip=args.sip,
        sips=None,
        rtp_ports=args.rtp_ports,
        data_dir=args.data_dir,
        http=args.http,
    )
    config = dataclasses.replace(config, media=dataclasses.replace(config.media, workers=args.media_workers))
    if args.log_level:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, level=args.log_level))
    return run_daemon(config)


if __name__ == "__main__":
    sys.exit(main())
