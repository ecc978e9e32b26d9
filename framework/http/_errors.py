"""The API's error answers: ``{"error": "...", "detail": ...}`` with the status that says
what kind of problem it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse


class ApiError(Exception):
    """An answer other than success: raised by an endpoint, turned into JSON by the app."""

    def __init__(
        self, status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response."""
        return error_response(self.status, self.error, self.detail, self.headers)


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": error, "detail": detail}`` with ``status``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def invalid_body(exc: ValidationError) -> ApiError:
    """422 naming each field that does not validate and why."""
    problems = [
        {
            "field": ".".join(str(part) for part in problem["loc"]) or "(body)",
            "reason": problem["msg"],
        }
        for problem in exc.errors(include_url=False, include_input=False)
    ]
    first = problems[0]
    return ApiError(422, f"invalid body: {first['field']}: {first['reason']}", problems)
