"""``python -m supervisor``: the same as the ``agent-supervisor`` command."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
