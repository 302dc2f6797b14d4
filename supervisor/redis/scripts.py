"""The Lua scripts of ``lua/``, called by hash with ``EVALSHA`` and loaded when Redis lacks them.

A script is sent once per Redis process (``SCRIPT LOAD``), then called by its SHA1; a restarted
or flushed Redis answers ``NOSCRIPT`` and the call loads and tries again. That retry is safe: a
``NOSCRIPT`` call did not run. Unlike redis-py's ``Script`` in a pipeline, nothing asks
``SCRIPT EXISTS`` before each pipeline.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

import redis

Arg = str | bytes | int


class LuaScript:
    """One script of ``lua/<name>.lua``."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = (resources.files(__package__) / "lua" / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def many(self, client: redis.Redis, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]) -> list[Any]:
        """Several calls in one pipeline (one round trip); their replies in order, an error
        reply as its exception object (the calls after it ran: a pipeline is not a transaction)."""
        replies = self._pipeline(client, calls)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            client.script_load(self.source)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            for i, reply in zip(again, self._pipeline(client, [calls[i] for i in again])):
                replies[i] = reply
        return replies

    def _pipeline(self, client: redis.Redis, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


APPEND = LuaScript("append")
REBASE = LuaScript("rebase")
LEASE_RENEW = LuaScript("lease_renew")
LEASE_RELEASE = LuaScript("lease_release")
HOLE = LuaScript("hole")
CLAIM = LuaScript("claim")
RELEASE = LuaScript("release")
REAP = LuaScript("reap")
