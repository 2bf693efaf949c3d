"""Errors the storage layer raises on purpose; the service layer maps them to API error codes."""

from __future__ import annotations

from srs.errors import SrsError


class StorageError(SrsError):
    """Base for storage failures that callers are expected to handle."""


class IndexUnavailable(StorageError):
    """The index database cannot be reached now (server down, network, no free connection)."""


class InvalidId(StorageError):
    """An id that does not match the strict id pattern (never turned into a path)."""


class UnsafePath(StorageError):
    """A path that would leave the data directory."""


class RecordingNotFound(StorageError):
    def __init__(self, recording_id: str) -> None:
        super().__init__(f"no recording with id {recording_id!r}")
        self.recording_id = recording_id


class InvalidStateTransition(StorageError):
    """A state change that would move a recording backwards or out of a final state."""

    def __init__(self, recording_id: str, current: str, requested: str) -> None:
        super().__init__(f"recording {recording_id}: cannot move from {current!r} to {requested!r}")
        self.recording_id = recording_id
        self.current = current
        self.requested = requested
