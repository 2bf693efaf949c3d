"""The filter syntax shared by the CLI and the API."""

from __future__ import annotations

import pytest

from srs.service.errors import BadRequest
from srs.service.filters import build_filter, filter_from_json, filter_to_json, split_extension
from srs.storage.records import State
from tests.unit.storage.factory import T0


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("queue=sales", ("queue", "sales")),
        ("queue:sales", ("queue", "sales")),
        ("vendor:agent=42", ("vendor:agent", "42")),
        ("k:sip:a@b", ("k", "sip:a@b")),
        ("k=", ("k", "")),
    ],
)
def test_extension_filter_syntax(text: str, pair: tuple[str, str]) -> None:
    assert split_extension(text) == pair


@pytest.mark.parametrize("text", ["", "novalue", "=x", ":x"])
def test_extension_filter_syntax_errors(text: str) -> None:
    with pytest.raises(BadRequest):
        split_extension(text)


def test_filter_from_strings_and_json_round_trip() -> None:
    filt = build_filter(
        {
            "state": "available",
            "start": "2023-11-14T22:13:20Z",
            "end": "1700000060",
            "min_duration": "1.5",
            "participant": "+1555",
        },
        [("queue", "sales")],
    )
    assert (filt.state, filt.start, filt.end, filt.min_duration_ms) == (State.AVAILABLE, T0, T0 + 60, 1500)
    assert filter_from_json(filter_to_json(filt)) == filt
