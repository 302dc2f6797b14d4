"""The pages the server serves itself: the dashboard at ``/`` and the SSE test page."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"

bp = Blueprint("pages", __name__)


@bp.get("/")
def dashboard() -> Response:
    return send_from_directory(STATIC_DIR, "index.html", max_age=0)


@bp.get("/test_sse.html")
def test_page() -> Response:
    return send_from_directory(ROOT, "test_sse.html", max_age=0)
