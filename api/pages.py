"""The pages the server serves itself: the dashboard at ``/`` and the SSE test page.

Where they are depends on how the server was installed: a wheel carries them inside this
package (``api/web`` is the repository's ``static/``, ``api/page`` holds ``test_sse.html``: see
``package_dir`` in setup.cfg); a checkout or an editable install serves them from the
repository itself.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

HERE = Path(__file__).resolve().parent


def _locations() -> tuple[Path, Path]:
    """(the dashboard's folder, the test page's folder): the installed copies, else the repository's."""
    if (HERE / "web" / "index.html").is_file():
        return HERE / "web", HERE / "page"
    root = HERE.parent
    return root / "static", root


STATIC_DIR, PAGE_DIR = _locations()

bp = Blueprint("pages", __name__)


@bp.get("/")
def dashboard() -> Response:
    return send_from_directory(STATIC_DIR, "index.html", max_age=0)


@bp.get("/test_sse.html")
def test_page() -> Response:
    return send_from_directory(PAGE_DIR, "test_sse.html", max_age=0)
