"""The rules for names a user gives: agents, and the profiles and extractors they use.

An agent's name becomes a folder name (:mod:`supervisor.datadir`), a path segment of the API and
a ``sender`` in its events, so the rule is strict: 1 to 64 letters, digits and ``._-``, starting
with a letter or digit. ``..``, ``/``, hidden files and the supervisor's own channel (``@...``)
are impossible by construction. Profile and extractor names never reach the file system: any of
those characters may start them; the Redis backend's node names and key prefixes follow the
same rule. Stdlib only (the client may import it).
"""
from __future__ import annotations

import re
from typing import TypeGuard

AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Names of profiles, extractors, Redis nodes and key prefixes.
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

AGENT_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_agent_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and AGENT_NAME.fullmatch(name) is not None


def is_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` may name a profile, an extractor, a Redis node or a key prefix."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None
