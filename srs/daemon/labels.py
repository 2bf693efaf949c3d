"""The name a stream goes by in files, logs, warnings and the index."""

from __future__ import annotations

from srs.sdp.answer import NegotiatedStream


def stream_label(stream: NegotiatedStream) -> str:
    """The SIPREC ``a=label`` of the m-line, else its 1-based position (as an administrator reads
    the SDP): every place that names a stream must agree, or its statistics would not meet."""
    return stream.label if stream.label is not None else str(stream.index + 1)
