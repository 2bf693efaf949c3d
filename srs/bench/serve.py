"""``srs serve`` with the media plane in worker processes, for benchmarks.

The daemon's composition root builds an in-process plane; this variant wires a
:class:`~srs.net.media_worker.WorkerPlane` into the same daemon (``--media-workers N``) and
closes recordings asynchronously, which is all the production wiring needs as well.
``--media-workers 0`` runs the stock daemon unchanged.

    python -m srs.bench.serve --media-workers 1 --sip 127.0.0.1:5060 --rtp-ports 20000-29999 ...
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import sys
from collections.abc import Awaitable, Sequence
from typing import Any

import srs.app as app_module
from srs.app import Daemon
from srs.config import Config, load_config, with_overrides
from srs.live import Finished, LiveRecordings, file_sha256
from srs.log import configure_logging
from srs.net.media_worker import WorkerPlane
from srs.siprec.events import SessionEnded


class WorkerDaemon(Daemon):
    """The daemon, with recordings handed to ``workers`` media processes."""

    def __init__(self, config: Config, workers: int) -> None:
        super().__init__(config)
        self.workers = workers
        self.plane: WorkerPlane | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        plane = WorkerPlane(
            self.workers, flush_interval=self.config.media.flush_interval_ms / 1000, log=self.log
        )
        plane.start(loop)
        self.plane = plane
        setattr(app_module, "LiveRecordings", functools.partial(LiveRecordings, plane=plane))  # noqa: B010
        try:
            return await super().run()
        finally:
            setattr(app_module, "LiveRecordings", LiveRecordings)  # noqa: B010
            plane.stop()

    def _ended(self, event: SessionEnded) -> None:
        assert self.live is not None and self.loop is not None
        pending = self.live.end(event)
        if pending is None:
            return
        task = self.loop.create_task(self._publish_when_closed(pending))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish_when_closed(self, pending: Awaitable[Finished]) -> None:
        assert self.live is not None
        finished = await pending
        if finished.final is not None and finished.final.file_path:
            digest = await asyncio.to_thread(file_sha256, finished.final.file_path)
            finished = dataclasses.replace(finished, final=dataclasses.replace(finished.final, sha256=digest))
        self.live.publish(finished)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srs.bench.serve")
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
    if args.log_level:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, level=args.log_level))
    if args.media_workers <= 0:
        return app_module.run_daemon(config)
    configure_logging(config.log.level)
    daemon = WorkerDaemon(config, args.media_workers)
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    result: int = runner(daemon.run())
    return result


if __name__ == "__main__":
    sys.exit(main())
