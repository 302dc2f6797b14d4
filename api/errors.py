"""Every failure becomes ``{"error": {"code", "message"}}`` with the right status, never HTML."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from supervisor.exceptions import SupervisorError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error raised by a view: ``status``, machine-readable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _http_code(exc: HTTPException) -> str:
    return {
        404: "not_found",
        405: "method_not_allowed",
        413: "body_too_large",
        415: "unsupported_media_type",
    }.get(exc.code or 500, (exc.name or "http_error").lower().replace(" ", "_"))


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_error(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(SupervisorError)
    def _supervisor_error(exc: SupervisorError) -> Response:
        return json_error(exc.status, exc.code, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"request body too large (the limit is {app.config.get('MAX_CONTENT_LENGTH')} bytes)"
        response = json_error(status, _http_code(exc), message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return json_error(500, "internal_error", f"internal error: {type(exc).__name__}")
