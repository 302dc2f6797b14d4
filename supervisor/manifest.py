"""What one agent's history should hold: its segments' numbering and the events known lost.

``manifest.json`` beside the segment files::

    {"version": 1,
     "segments": [{"number": 1, "first_seq": 1, "count": 10000, "first_id": 1, "last_id": 10342}, ...],
     "holes": [[first_id, last_id, count], ...]}

- ``segments``: for each file, the agent's number of its first event (``first_seq``) and how
  many lines it held when the manifest was written (``count``, at least that many: the open
  segment grows after). Written when a segment is created (before its first line), when one is
  deleted, when a loss is recorded and when the history is closed (the agent completed, the
  server stopped). At start a segment that holds fewer lines than recorded, or is missing,
  was damaged: the difference is exactly what is lost.
- ``holes``: ranges of events that are gone, with their exact count: deleted by retention,
  dropped during a storage failure before they could be written, found damaged. A resumer
  whose ``Last-Event-ID`` is before a hole is told ``missed`` with these counts.

Before this file existed, ``forgotten.json`` held the retention holes alone (a list of ranges);
it is read when there is no manifest and replaced by it at the first write.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import files

MANIFEST_FILE = "manifest.json"
LEGACY_FORGOTTEN_FILE = "forgotten.json"
VERSION = 1

#: A lost range: (first id, last id, number of events). Only the events of one agent (or of
#: the supervisor's channel) are counted; the ids between are not all its own.
Hole = tuple[int, int, int]


class ManifestError(ValueError):
    """The manifest (or the legacy forgotten file) exists but cannot be used."""


@dataclass
class Entry:
    number: int
    first_seq: int
    count: int
    first_id: int
    last_id: int


@dataclass
class Manifest:
    entries: dict[int, Entry] = field(default_factory=dict)
    holes: list[Hole] = field(default_factory=list)
    #: It came from ``forgotten.json`` (or from nothing): the next write should replace that.
    legacy: bool = False


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _holes(raw: Any) -> list[Hole]:
    if not isinstance(raw, list):
        raise ManifestError("holes must be a list")
    holes = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 3:
            raise ManifestError(f"a hole must be [first_id, last_id, count], not {item!r}")
        holes.append((_int(item[0], "first_id"), _int(item[1], "last_id"), _int(item[2], "count")))
    return sorted(holes)


def load(directory: Path) -> Manifest:
    """The manifest of ``directory``; an empty one when there is none. Raises
    :class:`ManifestError` naming the file for one that is damaged (or not a file)."""
    path = directory / MANIFEST_FILE
    try:
        raw = json.loads(files.read(path))
    except FileNotFoundError:
        return _legacy(directory)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    try:
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise ManifestError(f"not a version {VERSION} manifest")
        entries = {}
        for item in raw.get("segments") or []:
            if not isinstance(item, dict):
                raise ManifestError(f"a segment entry must be an object, not {item!r}")
            entry = Entry(*(_int(item.get(key), key) for key in ("number", "first_seq", "count", "first_id", "last_id")))
            entries[entry.number] = entry
        return Manifest(entries, _holes(raw.get("holes") or []))
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def _legacy(directory: Path) -> Manifest:
    path = directory / LEGACY_FORGOTTEN_FILE
    try:
        raw = json.loads(files.read(path))
    except FileNotFoundError:
        return Manifest(legacy=True)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    try:
        return Manifest(holes=_holes(raw), legacy=True)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def save(directory: Path, entries: list[Entry], holes: list[Hole], durable: bool, in_thread: bool = False) -> None:
    """Write the manifest atomically (and remove a legacy ``forgotten.json``). Raises ``OSError``."""
    body = {
        "version": VERSION,
        "segments": [
            {"number": e.number, "first_seq": e.first_seq, "count": e.count, "first_id": e.first_id,
             "last_id": e.last_id}
            for e in entries
        ],
        "holes": [list(hole) for hole in holes],
    }
    files.replace(directory / MANIFEST_FILE, json.dumps(body, separators=(",", ":")).encode(), durable, in_thread)
    try:
        (directory / LEGACY_FORGOTTEN_FILE).unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a folder of that name, say: the manifest is what is read from now on
