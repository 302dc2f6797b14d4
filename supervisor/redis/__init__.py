"""The Redis Streams backend (issue 16): many nodes, one id sequence, one history, every agent
listed, streamed and controlled through any node.

Needs the ``redis`` extra (``pip install 'agent-supervisor[redis]'``); nothing outside this
package imports it except lazily (the registry, for ``serve --redis``), so the embedded backend
runs without it. docs/REDIS.md is the design; the module docstrings say why each part is so.
"""
