"""Where a recording's audio is: only an available recording's file, never outside the data directory."""

from __future__ import annotations

import pytest

from srs.service.errors import NotAvailable
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import State
from tests.unit.storage.factory import add_recording


@pytest.mark.parametrize("state", [State.STARTING, State.RECORDING, State.STOPPING, State.FAILED])
def test_file_path_only_when_available(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, state: State
) -> None:
    rid = add_recording(index, layout, state=state)
    with pytest.raises(NotAvailable) as caught:
        service.file_path(rid)
    assert caught.value.details == {"state": state.value}
    assert service.show(rid)["links"].get("file") is None


def test_file_path_outside_data_dir_is_never_served(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    rid = add_recording(index, layout)
    with index.db.write() as conn:
        conn.execute("UPDATE recordings SET file_path = '/etc/passwd' WHERE id = ?", (rid,))
    with pytest.raises(NotAvailable):
        service.file_path(rid)
