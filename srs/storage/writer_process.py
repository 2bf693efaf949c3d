"""Entry point of the index writer process (``python -m srs.storage.writer_process``).

A module of its own, so that running it does not import it twice: the package imports
:mod:`srs.storage.index_writer` on the way in.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

from srs.storage.db import Database, mark_writer_thread
from srs.storage.index_writer import WriterLoop


def writer_main(argv: list[str]) -> int:
    """``python -m srs.storage.writer_process FD TARGET RUN [RETRY_FOR [LINGER]]``; a TARGET of ``-``
    means the index named by the ``SRS_INDEX_WRITER_TARGET`` environment variable."""
    sock = socket.socket(fileno=int(argv[0]))
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the daemon drains its
    # calls and then closes this writer, which must keep committing until it does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mark_writer_thread()
    target = os.environ.get("SRS_INDEX_WRITER_TARGET", "") if argv[1] == "-" else argv[1]
    db = _open(target)
    retry_for = float(argv[3]) if len(argv) > 3 else 30.0
    linger = float(argv[4]) if len(argv) > 4 else 0.01
    try:
        return WriterLoop(sock, db, argv[2], retry_for=retry_for, linger=linger).run()
    finally:
        db.close()


def _open(target: str) -> Database:
    """The index, waited for while its server cannot be reached (the daemon keeps the writes)."""
    pause = 0.1
    while True:
        try:
            return Database(target)
        except Exception as exc:
            if not _unreachable(target, exc):
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _unreachable(target: str, exc: BaseException) -> bool:
    if not target.startswith(("postgresql://", "postgres://")):
        return False
    from srs.storage.postgres import unreachable

    return unreachable(exc)


if __name__ == "__main__":
    sys.exit(writer_main(sys.argv[1:]))
