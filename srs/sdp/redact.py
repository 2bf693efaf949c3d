"""Keeping SDES keys out of text that is logged, stored or shown.

An ``a=crypto`` line carries the SRTP master key and salt in its ``inline:`` key parameters
(RFC 4568 §9.2). Whoever reads them can decrypt the recorded call and inject packets that
authenticate, so they never go into a warning, a log line or the index, even when the line they
came in is malformed and quoted back to the administrator.
"""

from __future__ import annotations

import re

_INLINE = re.compile(r"(inline:)[^\s;]*", re.IGNORECASE)
REDACTED = "<redacted>"


def redact_keys(text: str) -> str:
    """``text`` with the material after every ``inline:`` replaced (lifetime/MKI included: they
    are short and follow the key inside the same token)."""
    return _INLINE.sub(r"\g<1>" + REDACTED, text)
