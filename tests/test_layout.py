"""The shape of the code: the core stands alone, and the client alone."""
from __future__ import annotations

import subprocess
import sys

from support import ROOT

CORE = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "supervisor").rglob("*.py")
    if path.name != "__main__.py"
)


def test_the_core_imports_neither_flask_nor_the_api() -> None:
    """Every module of supervisor/ loads without Flask or api/ (only ``serve`` reaches the server,
    inside its function)."""
    code = ("import importlib, sys\n"
            f"for name in {CORE!r}: importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'api'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    assert "supervisor.cli.commands" in CORE and "supervisor.bus" in CORE
