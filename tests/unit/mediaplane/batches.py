"""A received batch made by hand: datagrams put into a :class:`BatchReceiver`'s arrays as its
engines lay them out, for tests of what is done with a batch (cutting, journaling, delivery)."""

from __future__ import annotations

from typing import Any

import numpy as np

from srs.mediaplane.batch_receiver import BatchReceiver, PyReceiver, source_key


def fill_batch(batch: BatchReceiver, items: list[tuple[int, bytes, Any, int]]) -> None:
    """``items`` as (slot, bytes, source address, arrival ns), one row each; the pure-Python engine
    also keeps each source's address tuple (``batch.source(i)``)."""
    for i, (slot, data, source, arrival_ns) in enumerate(items):
        batch.rows[i, :] = 0
        batch.rows[i, : len(data)] = np.frombuffer(data, dtype=np.uint8)
        batch.lengths[i] = len(data)
        batch.slots[i] = slot
        batch.arrivals[i] = arrival_ns
        batch.offsets[i] = i * batch.stride
        batch.sources[i] = source_key(source)
        if isinstance(batch.engine, PyReceiver):
            batch.engine._addresses[i] = source
    batch.count = len(items)
