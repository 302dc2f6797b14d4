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


def test_one_name_rule() -> None:
    """The name rules live in supervisor/names.py alone: no other module spells a name's
    character class and length again (as supervisor/redis/keys.py once did)."""
    import re

    spelled = re.compile(r"\[A-Za-z0-9[._-]{3}\]\{1,64\}|\[A-Za-z0-9\]\[A-Za-z0-9._-\]\{0,63\}")
    again = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "supervisor").rglob("*.py"))
             if path.name != "names.py" and spelled.search(path.read_text())]
    assert again == []


def test_the_command_line_compares_states_as_members() -> None:
    """supervisor/cli/ compares agent states with supervisor.states (members and groups), never
    with a string of its own: an AST walk finds no comparison with a state's name."""
    import ast

    from supervisor.states import AgentState

    names = {state.value for state in AgentState}
    found = []
    for path in sorted((ROOT / "supervisor" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
                parts += [e for p in parts if isinstance(p, (ast.Tuple, ast.List, ast.Set)) for e in p.elts]
                found += [f"{path.name}:{node.lineno} {p.value!r}" for p in parts
                          if isinstance(p, ast.Constant) and p.value in names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and len(node.args) == 2:
                default = node.args[1]  # data.get("state", "exited")
                if isinstance(default, ast.Constant) and default.value in names:
                    found.append(f"{path.name}:{node.lineno} default {default.value!r}")
    assert found == []


def test_no_module_imports_another_modules_private_names() -> None:
    """``from x import _name`` across modules of the code would tie them by their insides (as
    the virtual screen once took the line pipeline's ``_Style``): shared parts live in a module
    of their own, under public names."""
    import ast

    found = []
    for path in sorted([*(ROOT / "supervisor").rglob("*.py"), *(ROOT / "api").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.relative_to(ROOT)}: {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []


def test_every_package_is_in_setup_cfg() -> None:
    """setup.cfg lists its packages (so that the dashboard can ship as api/web): a package of
    supervisor/ or api/ that is not listed would be missing from the wheel."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("supervisor", "api") for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [options] packages in setup.cfg: {sorted(found - listed)}"
    assert listed - found == {"api.web", "api.page"}, "only the mapped data folders are not code"
