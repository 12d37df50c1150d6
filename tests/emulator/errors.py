"""Google-style API errors.

Every failure the emulator reports uses the envelope the real service uses
(``{"error": {"code", "message", "status", "details"}}``) with the matching HTTP
status, so client error mapping is tested against the real shape, not a
simplified one.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

STATUS_BY_CODE: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ApiError(Exception):
    """An error that becomes a Google error envelope; raised anywhere in request handling."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, "UNKNOWN")
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status,
                "details": self.details,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.code)


def invalid(message: str) -> ApiError:
    """The common 400 INVALID_ARGUMENT (never retryable)."""
    return ApiError(400, message, "INVALID_ARGUMENT")
