"""storage: the data directory layout and the recording index (SQLite or PostgreSQL)."""

from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import (
    DtmfEvent,
    FinalizedRecording,
    NewRecording,
    Page,
    Participant,
    RecordingFilter,
    State,
    StreamInfo,
)

__all__ = [
    "DataLayout", "DtmfEvent", "FinalizedRecording", "NewRecording", "Page", "Participant", "RecordingFilter",
    "RecordingIndex", "State", "StreamInfo",
]
