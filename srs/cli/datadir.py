"""How the admin subcommands (`recordings`, `token`, `audit`) open the data directory: directly,
daemon running or not, and only when `srs serve` made it (a missing or mistyped directory is an
error, never a new empty index). Their shared flags are here too."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from srs.cli.common import add_config_flags, cli_config
from srs.config import DEFAULT_DATA_DIR, Config
from srs.service.recordings import RecordingService
from srs.storage.datadir import require_data_dir
from srs.storage.index import RecordingIndex
from srs.storage.layout import PRIVATE_UMASK, DataLayout
from srs.storage.objects import ObjectStore
from srs.storage.s3_store import S3Options, options_from_env
from srs.storage.stores import open_store


def common_parser() -> argparse.ArgumentParser:
    """The flags every admin subcommand takes: where the configuration, data, objects and index are."""
    common = argparse.ArgumentParser(add_help=False)
    add_config_flags(common, data_dir_help=(
        f"data directory made by srs serve (default: $SRS_DATA_DIR, the config file's "
        f"[storage] data_dir, else {DEFAULT_DATA_DIR})"
    ))
    common.add_argument("--objects", metavar="URL", default=None,
                        help="object store of the daemon (default: $SRS_OBJECTS, the config file's"
                             " [storage] objects); S3 credentials from the AWS_* environment variables")
    common.add_argument("--index", default=os.environ.get("SRS_INDEX") or None, metavar="URL",
                        help="index URL, sqlite:///PATH or postgresql://... (default: $SRS_INDEX, the config"
                        " file's [storage] index, else the data directory's index.sqlite3)")
    return common


def _objects(args: argparse.Namespace, config: Config) -> ObjectStore | None:
    """``--objects``/``SRS_OBJECTS``/the config file's ``[storage] objects``."""
    url = getattr(args, "objects", None) or os.environ.get("SRS_OBJECTS", "")
    if url:
        return open_store(url, options_from_env(S3Options(), os.environ))
    if config.storage.objects:
        from srs.daemon.app import open_objects  # the daemon's own reading of [storage] objects

        return open_objects(config)
    return None


@contextmanager
def open_service(args: argparse.Namespace) -> Iterator[RecordingService]:
    """The data directory of ``--data-dir``/``SRS_DATA_DIR``/the config file, with its index (or the
    fleet's shared one) and object store; closed on exit."""
    config = cli_config(args)
    shared = getattr(args, "index", None) or config.storage.index  # a fleet's PostgreSQL index
    data_dir = require_data_dir(config.storage.data_dir, shared_index=bool(shared))
    objects = _objects(args, config)
    previous = os.umask(PRIVATE_UMASK)  # what the CLI creates in the data dir is as private as the daemon's
    try:
        layout = DataLayout(data_dir)
        layout.ensure()
        index = RecordingIndex(shared or layout.index_path, layout=layout)
        try:
            yield RecordingService(
                index, layout, layout.secret(), max_link_validity_s=config.http.link_max_validity_min * 60,
                objects=objects,
            )
        finally:
            index.close()
    finally:
        os.umask(previous)
        if objects is not None:
            objects.close()
