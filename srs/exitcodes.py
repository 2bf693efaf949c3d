"""Exit codes of the `srs` command, one per kind of failure an operator can cause and fix.

Scripts and service managers tell these apart (a port in use is worth a retry, a bad config file
is not), so a code never changes meaning; new kinds get new numbers. README.md lists them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    """The command ran and failed (not found, a refused change, an I/O error mid-way)."""
    USAGE = 2
    """Bad flags, an unreadable or invalid config file, a config value out of range."""
    DATA_DIR = 3
    """The data directory is missing, not a directory, not writable, or not an srs data directory."""
    DATA_DIR_IN_USE = 4
    """Another `srs serve` holds the data directory's lock."""
    ADDRESS_IN_USE = 5
    """A SIP or HTTP listen address is already taken."""
    ADDRESS_NOT_PERMITTED = 6
    """A SIP or HTTP listen address cannot be bound (privileged port, address not on this host)."""
    TLS = 7
    """The TLS certificate, key or client CA cannot be loaded."""
