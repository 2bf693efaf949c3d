"""Who is asking: a bearer token, a signed link made by one, or nobody (public endpoints).

The API decides this once per request, before it reads the body, and every audit row names it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    TOKEN = "token"
    LINK = "link"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    kind: Kind
    scope: str | None = None
    token_id: str | None = None
    token_name: str | None = None
    link_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        token = f"token {self.token_id}" + (f" ({self.token_name})" if self.token_name else "")
        if self.kind is Kind.TOKEN:
            return token
        if self.kind is Kind.LINK:
            issuer = token if self.token_id else "the CLI"
            return f"signed link {self.link_id} of {issuer}"
        return "anonymous"


ANONYMOUS = Principal(Kind.ANONYMOUS)
