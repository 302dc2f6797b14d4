"""Virtual screens: what a full-screen program shows, kept in memory (no I/O, no Flask).

- :class:`VirtualScreen` (``emulator.py``): a terminal emulator fed the same bytes as the line
  pipeline; snapshots, row changes since a ``seq``, soft-wrap information.
- :class:`AlternateScreenDetector` (``detector.py``): a byte scan that says when a program
  enters the alternate screen, so that a screen can be started only for programs that use one.
- ``grid.py``: rows of cells and how they render as text and as SGR-coloured strings.
- ``text.py``: the screen's text as the lines a program printed (rows it wrapped joined), for
  extractors.
- ``worker.py``: the emulator in a process of its own (``python -m supervisor.screen.worker``),
  sending the rows that changed; ``protocol.py``: the frames between it and the server;
  ``mirror.py``: the server's copy of a worker's screen, read like an emulator.
- ``live.py`` and ``link.py``: an agent's screen on the gevent hub (the modules here that use
  gevent): the ``screen`` setting, the worker's process and pipes, settling, watchers. Not
  imported here.
"""
from supervisor.screen.detector import AlternateScreenDetector
from supervisor.screen.emulator import DEC_GRAPHICS, Cursor, ScreenLine, VirtualScreen

__all__ = ["DEC_GRAPHICS", "AlternateScreenDetector", "Cursor", "ScreenLine", "VirtualScreen"]
