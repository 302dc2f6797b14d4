"""Shell completion for bash and zsh, written from the command line's own grammar.

``agent-supervisor completion bash`` (or ``zsh``) prints a script; ``source <(agent-supervisor
completion bash)`` in ``~/.bashrc`` turns it on. It completes commands, each command's options,
the values of options that have choices (``--restart always``), files and directories for the
options that take one, and agent names, which it asks the running server for
(``agent-supervisor list --names``, quietly, when a name is wanted). After ``--`` of ``run`` and
``start`` it completes commands and files, as the shell would.

The scripts are generated from :func:`~supervisor.cli.parser.build_parser`, so a new option
completes without anyone remembering to add it here. A library (argcomplete, shtab) would do
the same at the price of a dependency, and argcomplete of a Python start at every Tab.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from .conventions import PROG

#: Option values completed as paths (directories for these; files for the rest that take one).
DIRECTORY_OPTIONS = frozenset({"--cwd", "--data-dir"})
#: Positionals that are agent names.
AGENT_POSITIONALS = frozenset({"name"})


@dataclass
class Command:
    """What completes after one command: its options, their choices, its positionals."""

    name: str
    flags: list[str] = field(default_factory=list)  # options that take no value
    valued: dict[str, list[str]] = field(default_factory=dict)  # option -> its choices ([] = a path)
    positionals: list[str] = field(default_factory=list)  # "agent", "choice:a b", "any"


def commands_of(parser: argparse.ArgumentParser) -> tuple[Command, dict[str, Command]]:
    """The top level and every command (aliases included) of ``parser``."""
    top = _command(PROG, parser)
    subs: dict[str, Command] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of its grammar
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                subs[name] = _command(name, sub)
    return top, subs


def _command(name: str, parser: argparse.ArgumentParser) -> Command:
    command = Command(name)
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            continue
        if action.option_strings:
            if action.nargs == 0:
                command.flags.extend(action.option_strings)
            else:
                for option in action.option_strings:
                    command.valued[option] = [str(choice) for choice in action.choices or ()]
        elif action.dest in AGENT_POSITIONALS:
            command.positionals.append("agent")
        elif action.choices:
            command.positionals.append("choice:" + " ".join(str(c) for c in action.choices))
        else:
            command.positionals.append("any")
    return command


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``shell`` (``bash`` or ``zsh``)."""
    top, subs = commands_of(parser)
    return (_bash if shell == "bash" else _zsh)(top, subs)


def _words(items: list[str]) -> str:
    return shlex.quote(" ".join(items))


def _function_body(top: Command, subs: dict[str, Command]) -> str:
    """The shell-neutral part (bash and zsh both run it): sets ``candidates`` (words to offer)
    and ``kind`` (``words``, ``files``, ``dirs``, ``commands``) from ``words`` and ``cword``."""
    global_valued = "|".join(sorted(top.valued))
    lines = [
        'local cur="${words[cword]}" prev="" cmd="" i=1 n=0 after=0',
        '[ "$cword" -gt 1 ] && prev="${words[cword-1]}"',
        "candidates=\"\" kind=words",
        "while [ $i -lt $cword ]; do",
        '  case "${words[i]}" in',
        f"    {'|'.join(sorted(top.valued)) or '--'}) i=$((i+1)) ;;",
        "    -*) ;;",
        '    *) cmd="${words[i]}"; break ;;',
        "  esac",
        "  i=$((i+1))",
        "done",
        'if [ -z "$cmd" ]; then',
        f'  case "$prev" in {"|".join(sorted(top.valued)) or "--"}) kind=files; return ;; esac',
        f"  candidates={_words(sorted(subs) + sorted(top.flags) + sorted(top.valued))}",
        "  return",
        "fi",
        # Positionals given so far after the command (options and their values skipped), and "--".
        "local j=$((i+1)) valued=''",
        'case "$cmd" in',
    ]
    for name, command in sorted(subs.items()):
        lines.append(f"  {name}) valued={_words(sorted(command.valued))} ;;")
    lines += [
        "esac",
        "while [ $j -lt $cword ]; do",
        '  case "${words[j]}" in',
        "    --) after=1 ;;",
        "    -*) case \" $valued \" in *\" ${words[j]} \"*) j=$((j+1)) ;; esac ;;",
        "    *) n=$((n+1)) ;;",
        "  esac",
        "  j=$((j+1))",
        "done",
        'if [ "$after" = 1 ]; then kind=commands; return; fi',
        'case "$cmd $prev" in',
    ]
    for name, command in sorted(subs.items()):
        for option, choices in sorted(command.valued.items()):
            if option in top.valued:
                continue
            if choices:
                lines.append(f'  "{name} {option}") candidates={_words(choices)}; return ;;')
            else:
                lines.append(f'  "{name} {option}") kind={"dirs" if option in DIRECTORY_OPTIONS else "files"};'
                             " return ;;")
    lines += [
        "esac",
        f'case "$prev" in {global_valued or "--"}) kind=files; return ;; esac',
        'case "$cur" in',
        '  -*)',
        '    case "$cmd" in',
    ]
    for name, command in sorted(subs.items()):
        lines.append(f"      {name}) candidates={_words(sorted(command.flags + list(command.valued)))} ;;")
    lines += [
        "    esac",
        "    return ;;",
        "esac",
        'case "$cmd" in',
    ]
    for name, command in sorted(subs.items()):
        if not command.positionals:
            continue
        cases = []
        for index, positional in enumerate(command.positionals):
            if positional == "agent":
                action = f"candidates=\"$({PROG} list --names 2>/dev/null)\""
            elif positional.startswith("choice:"):
                action = f"candidates={shlex.quote(positional[7:])}"
            else:
                action = "kind=files" if name not in ("run", "start") else "kind=commands"
            cases.append(f"{index}) {action} ;;")
        lines.append(f"  {name}) case $n in {' '.join(cases)} esac ;;")
    lines.append("esac")
    return "\n".join("  " + line for line in lines)


def _bash(top: Command, subs: dict[str, Command]) -> str:
    return f"""# bash completion for {PROG}: source <({PROG} completion bash)
_agent_supervisor_candidates() {{
  local -a words=("${{COMP_WORDS[@]}}")
  local cword=$COMP_CWORD
{_function_body(top, subs)}
}}

_agent_supervisor() {{
  local candidates kind
  _agent_supervisor_candidates
  local cur="${{COMP_WORDS[COMP_CWORD]}}"
  case "$kind" in
    files) COMPREPLY=($(compgen -f -- "$cur")) ;;
    dirs) COMPREPLY=($(compgen -d -- "$cur")) ;;
    commands) COMPREPLY=($(compgen -c -f -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$candidates" -- "$cur")) ;;
  esac
}}
complete -o default -F _agent_supervisor {PROG}
"""


def _zsh(top: Command, subs: dict[str, Command]) -> str:
    return f"""#compdef {PROG}
# zsh completion for {PROG}: source <({PROG} completion zsh)  (after compinit)
_agent_supervisor_candidates() {{
  setopt localoptions ksharrays  # words[0] is the command, as in bash
  local cword=$(( CURRENT - 1 ))
{_function_body(top, subs)}
}}

_agent_supervisor() {{
  local candidates kind
  _agent_supervisor_candidates
  case "$kind" in
    files) _files ;;
    dirs) _files -/ ;;
    commands) _command_names -e; _files ;;
    *) compadd -- ${{=candidates}} ;;
  esac
}}
compdef _agent_supervisor {PROG}
"""
