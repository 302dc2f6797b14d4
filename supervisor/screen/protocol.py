"""The frames between the server and a screen worker (:mod:`supervisor.screen.worker`), both ways.

A frame is a kind byte, a 4-byte big-endian length and the payload. To the worker:

- ``d``: output bytes to feed; ``q``: the same, and answer the terminal queries in them (a
  full-screen program's output: the screen knows where its cursor is);
- ``r``: a resize, ``cols``, ``rows`` (2 bytes each) and the resize generation (4 bytes);
- ``s``: a sync token (4 bytes): answered with ``k`` once everything before it is on the screen
  and its changes were sent.

From the worker:

- ``u``: an update (JSON): ``{gen, cols, rows, cursor, alternate, modes, changed: [[row, text,
  ansi, wrapped], ...]}``, the rows changed since the last update;
- ``a``: the replies to terminal queries, to be written to the PTY as they are;
- ``k``: a sync token's answer.

Pure: no I/O, no gevent; both sides use :class:`FrameReader` on what they read.
"""
from __future__ import annotations

import struct

__all__ = ["DATA", "HEADER", "QUERIES", "REPLY", "RESIZE", "RESIZE_BODY", "SYNC", "SYNCED", "TOKEN",
           "UPDATE", "FrameReader", "frame"]

HEADER = struct.Struct(">cI")
RESIZE_BODY = struct.Struct(">HHI")
TOKEN = struct.Struct(">I")
DATA, QUERIES, RESIZE, SYNC = b"d", b"q", b"r", b"s"
UPDATE, REPLY, SYNCED = b"u", b"a", b"k"
#: Longest payload a reader accepts: a larger length is a broken stream, not a frame.
MAX_PAYLOAD = 64 << 20


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into ``(kind, payload)`` frames, whatever the reads' sizes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[bytes, bytes]] = []
        at = 0
        size = HEADER.size
        while len(buf) - at >= size:
            kind, length = HEADER.unpack_from(buf, at)
            if length > MAX_PAYLOAD:
                raise ValueError(f"a frame of {length} bytes: the stream is broken")
            end = at + size + length
            if end > len(buf):
                break
            out.append((kind, bytes(buf[at + size:end])))
            at = end
        if at:
            del buf[:at]
        return out
