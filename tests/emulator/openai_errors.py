"""OpenAI-style API errors: ``{"error": {"message", "type", "param", "code"}}``.

Messages follow the real API's wording where it is known (``Unknown parameter: 'x'.``,
``Invalid value: 'x'. Supported values are: ...``, ``Missing required parameter``,
the auth and moderation sentences). The ``code`` of image-file problems
(``invalid_image_file``, ``unsupported_file_mimetype``, ``file_too_large``,
``invalid_mask_image``) is the emulator's best guess: clients should branch on the
status, ``type`` and ``param``, and only rely on the well-known codes
(``invalid_api_key``, ``model_not_found``, ``moderation_blocked``,
``rate_limit_exceeded``, ``unknown_parameter``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse

from .faults import Fault

INVALID_REQUEST = "invalid_request_error"
MODERATION_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your request may contain content "
    "that is not allowed by our safety system."
)


class OpenAIError(Exception):
    """An error that becomes an OpenAI error envelope; raised anywhere in request handling."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """The common 400 ``invalid_request_error`` (never retryable)."""
    return OpenAIError(400, message, param=param, code=code)


def quoted_list(values: Iterable[str]) -> str:
    """``'a', 'b', and 'c'`` as in the real API's messages."""
    items = [f"'{v}'" for v in values]
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def unknown_parameter(name: str) -> OpenAIError:
    return invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def missing_parameter(name: str) -> OpenAIError:
    return invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def invalid_value(name: str, value: object, supported: Iterable[str]) -> OpenAIError:
    return invalid(
        f"Invalid value: '{value}'. Supported values are: {quoted_list(supported)}.", name, "invalid_value"
    )


def invalid_type(name: str, expected: str, got: str) -> OpenAIError:
    return invalid(
        f"Invalid type for '{name}': expected {expected}, but got {got} instead.", name, "invalid_type"
    )


def mask_key(key: str) -> str:
    """How the real API echoes a wrong key: its first 8 and last 4 characters, stars between, so a
    key of 12 characters or fewer comes back whole (401s quoted in continuedev/continue#9634,
    #10250, #10276, 2026: "sk-proj-****…MxYA", "https://****…lETQ", "Toxic")."""
    return key if len(key) <= 12 else f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}"


def missing_key() -> OpenAIError:
    return OpenAIError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
        "you're accessing the API from your browser and are prompted for a username and password. You can "
        "obtain an API key from https://platform.openai.com/account/api-keys.",
    )


def invalid_key(key: str) -> OpenAIError:
    return OpenAIError(
        401,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def unverified_organization(model: str) -> OpenAIError:
    return OpenAIError(
        403,
        f"Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization. "
        "If you just verified, it can take up to 15 minutes for access to propagate.",
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def invalid_url(method: str, path: str, status: int = 404) -> OpenAIError:
    return OpenAIError(status, f"Invalid URL ({method} {path})")


def fault_error(fault: Fault, model: str) -> OpenAIError | None:
    """The error for an HTTP-status fault (see :mod:`.faults`), or None for a 200-shaped fault."""
    if fault.name == "429":
        return OpenAIError(
            429,
            f"Rate limit reached for {model} in organization org-retouch-emulator on images per minute "
            "(IPM): Limit 5, Used 5, Requested 1. Please try again in 2s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": "2",
                "x-ratelimit-limit-requests": "5",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "2s",
            },
        )
    if fault.name == "500":
        return OpenAIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    if fault.name == "503":
        return OpenAIError(503, "The server is overloaded or not ready yet.", "server_error")
    if fault.name == "504":
        return OpenAIError(504, "Gateway timeout: the request took too long to complete.", "server_error")
    if fault.name == "moderation":
        return OpenAIError(400, MODERATION_MESSAGE, "image_generation_user_error", code="moderation_blocked")
    return None
