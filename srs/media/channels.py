"""Which streams go to the left and which to the right channel of a stereo recording.

RFC 7865 metadata says which participant sends which stream (``<send>`` names
a stream whose label matches an SDP ``a=label``). The first participant is
usually the one the SRC records for (the customer or the agent, depending on
the SBC), so its streams go left and everybody else's right. Without usable
metadata the SDP order is the convention SIPREC clients follow: the first
m-line left, the second right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Sender(Protocol):
    """What the split needs of a metadata participant: the labels of the streams it sends."""

    @property
    def send(self) -> tuple[str, ...]: ...


def stereo_groups(
    labels: Sequence[str], participants: Sequence[Sender] | None = None
) -> tuple[list[int], list[int]]:
    """Track indexes for (left, right), given each track's label in m-line order.

    A stream no participant claims goes to neither list, which the recorder mixes into both
    channels, unless the others claim nothing: then every stream the first participant does
    not send goes right. Metadata that claims none of the first participant's streams is
    treated as missing.
    """
    if participants:
        index = {label: i for i, label in reversed(list(enumerate(labels))) if label}
        left = sorted({index[label] for label in participants[0].send if label in index})
        right = sorted(
            {index[label] for p in participants[1:] for label in p.send if label in index} - set(left)
        )
        if left:
            return left, right or [i for i in range(len(labels)) if i not in left]
    left = [0] if labels else []
    right = [1] if len(labels) > 1 else []
    return left, right
