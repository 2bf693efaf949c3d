"""Errors of the operations shared by the CLI and the HTTP API: a stable code, a message, an HTTP status."""

from __future__ import annotations

from typing import Any

from srs.errors import SrsError


class ServiceError(SrsError):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class NotAvailable(ServiceError):
    """The recording exists but its file cannot be served (yet, or ever)."""

    status = 404
    code = "not_available"


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class BadSignature(ServiceError):
    status = 403
    code = "bad_signature"


class LinkExpired(ServiceError):
    status = 410
    code = "link_expired"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class LinkRevoked(ServiceError):
    """The link was revoked, or the token that made it was."""

    status = 403
    code = "link_revoked"


class Gone(ServiceError):
    """The thing existed and was removed on purpose (an expired or purged export)."""

    status = 410
    code = "gone"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
