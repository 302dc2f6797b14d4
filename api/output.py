"""``GET /api/agents/<name>/output.log``: the raw bytes an agent's runs wrote, as a download.

Everything kept is sent, oldest first: the rotated files (``output.log.3`` ... ``.1``), then
``output.log`` (see :mod:`supervisor.outputlog`). The files are opened when the request comes
and their sizes taken then (``Content-Length``): a rotation or new output meanwhile changes
nothing in the answer. They are read in :data:`CHUNK` pieces in gevent's thread pool, so a
cold disk never stops the hub, and each piece is written before the next is read: a slow client
holds one piece in memory, and its own greenlet, nothing more.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint, Response
from gevent import get_hub

from .errors import ApiError
from .ext import current

bp = Blueprint("output", __name__, url_prefix="/api/agents")

#: Bytes read and written at a time.
CHUNK = 1 << 16


@bp.get("/<name>/output.log")
def download(name: str) -> Response:
    ext = current()
    ext.registry.get(name)  # 404 for an unknown agent
    opened: list[tuple[int, int]] = []
    try:
        for path in ext.registry.store.output_files(name):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # rotated away between the listing and now
            opened.append((fd, os.fstat(fd).st_size))
    except OSError as exc:
        _close(opened)
        raise ApiError(500, "output_unreadable", f"the output of {name!r} cannot be read: {exc.strerror or exc}") from None
    if not opened:
        raise ApiError(404, "no_output_log", f"agent {name!r} has no output.log: it has not run yet, or the server"
                                             " keeps nothing on disk")
    total = sum(size for _, size in opened)
    return Response(
        _chunks(opened), status=200, mimetype="application/octet-stream", direct_passthrough=True,
        headers={"Content-Length": str(total), "Cache-Control": "no-store",
                 "Content-Disposition": f'attachment; filename="{name}-output.log"'},
    )


def _chunks(opened: list[tuple[int, int]]) -> Iterator[bytes]:
    """The files' bytes up to the sizes they had, piece by piece; closes them at the end, or
    when the client goes away (the server closes the iterator)."""
    pool = get_hub().threadpool
    try:
        for fd, size in opened:
            offset = 0
            while offset < size:
                data: bytes = pool.apply(os.pread, (fd, min(CHUNK, size - offset), offset))
                if not data:
                    break
                offset += len(data)
                yield data
    finally:
        _close(opened)


def _close(opened: list[tuple[int, int]]) -> None:
    for fd, _ in opened:
        try:
            os.close(fd)
        except OSError:
            pass
