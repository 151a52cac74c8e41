"""The JSON API under /api/: bearer tokens, OpenAPI 3.1 at /api/openapi.json, problem+json errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

bp = Blueprint("api", __name__, url_prefix="/api")


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra})
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response
