"""Where every `srs` subcommand gets its configuration: flag, then environment, then file, then default.

``--config FILE`` (else ``SRS_CONFIG``) names the same TOML file `srs serve` reads, so the admin
commands find the daemon's data directory and settings without ``--data-dir`` on every call.
``--data-dir`` (else ``SRS_DATA_DIR``) wins over the file's ``[storage] data_dir``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from srs.config import Config, load_config, with_overrides

ENV_CONFIG = "SRS_CONFIG"
ENV_DATA_DIR = "SRS_DATA_DIR"


def add_config_flags(parser: argparse.ArgumentParser, *, data_dir_help: str) -> None:
    parser.add_argument(
        "--config", metavar="FILE",
        help=f"TOML configuration file (default: ${ENV_CONFIG}; see config/srs.example.toml)",
    )
    parser.add_argument("--data-dir", metavar="DIR", help=data_dir_help)


def config_path(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    flag: str | None = getattr(args, "config", None)
    return flag if flag else (env.get(ENV_CONFIG) or None)


def data_dir_override(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    flag: str | None = getattr(args, "data_dir", None)
    return flag if flag else (env.get(ENV_DATA_DIR) or None)


def cli_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """The configuration an admin subcommand works with (raises :class:`srs.errors.ConfigError`)."""
    config = load_config(config_path(args, env))
    return with_overrides(config, data_dir=data_dir_override(args, env))
