"""The groundwork of the Redis Streams backend (issue 16): a gevent-friendly client, the key
layout, the Lua scripts that assign ids, and the epoch and lease that guard them.

Needs the ``redis`` extra (``pip install 'agent-supervisor[redis]'``); nothing outside this
package imports it, so the embedded backend runs without it. docs/REDIS.md is the design.
"""
