"""Named regular expressions (and JSON fields) read from every line of an agent's output.

An extractor is ``{"name": "npm.error_code", "pattern": "...", "flags": "i"}``; each match on a
line's ANSI-free text becomes an :class:`Extraction`. A JSON extractor, ``{"name":
"codex.usage", "json": "usage", "where": {"type": "turn.completed"}}``, reads lines that parse
as a JSON object (``codex exec --json``, structured logs): when every ``where`` path has its
value (a list means any of them), the field at ``json`` is the value (a string as it is,
anything else as compact JSON; an object's scalar members become the groups, or ``groups``
names paths of its own). Paths are dotted keys, numbers index lists: ``item.content.0.text``. Patterns run on google-re2, a linear-time
engine, because users supply them and they run on the hub: under Python's backtracking ``re``,
``(a+)+$`` against a long line of ``a`` would stall every agent and every client. RE2 has no
backreferences and no lookaround; a pattern that uses them is refused with a message saying so.

Almost every line matches nothing, and each call into the re2 wrapper costs microseconds, so
:meth:`ExtractorSet.scan` first asks one ``re2.Set`` of all the patterns which of them match at
all (one pass in C over the line) and runs only those.
"""
from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from .exceptions import InvalidExtractor
from .names import is_name

#: Longest pattern accepted, in characters.
MAX_PATTERN_LENGTH = 4096
#: Most extractors in one set: each one the prefilter reports costs a full regex run.
MAX_EXTRACTORS = 100
#: Most matches one extractor reports on one line, by default (a pattern that matches
#: everywhere, such as ``\w``, would otherwise turn a 64 KiB line into 64 Ki events).
MAX_MATCHES_PER_LINE = 8
#: Most extractions one line yields from all extractors together, by default: 100 extractors
#: of 8 matches would otherwise still make 800 events of every line.
MAX_EXTRACTIONS_PER_LINE = 32

_KEYS = frozenset({"name", "pattern", "flags"})
_JSON_KEYS = frozenset({"name", "json", "where", "groups"})
#: Longest JSON path, and most ``where`` conditions and ``groups`` of one JSON extractor.
MAX_JSON_PATH = 256
MAX_JSON_TERMS = 16
_JSON_PATH = re.compile(r"[^.]+(?:\.[^.]+)*")
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: A line that is no JSON object (or not one we can read).
_NOT_JSON: Any = object()
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# Canonical order of the flag letters; RE2 takes them as an inline ``(?ims)`` prefix.
_FLAG_ORDER = "ims"
_FLAG_NAMES = {
    "i": "i", "ignorecase": "i", "ignore_case": "i",
    "s": "s", "dotall": "s",
    "m": "m", "multiline": "m",
}
_PY_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE}
# The wrapper's own unanchored-search constant, for the fast path in _find_spans.
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


@dataclass(frozen=True, slots=True)
class Extraction:
    """One match of one extractor on one line."""

    name: str
    #: The ``value`` named group if the pattern has one, else group 1, else the whole match; the
    #: empty string when that group did not take part in the match.
    value: str
    #: Every named group; ``None`` for one that did not take part in the match.
    groups: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Scan:
    """What :meth:`ExtractorSet.scan_capped` found on one line, and what the caps cut."""

    found: list[Extraction]
    #: How many extractors had a match on the line that was not reported because of a cap
    #: (each extractor counts once per line, however many of its matches were cut).
    cut: int


class _Extractor:
    __slots__ = ("flags", "name", "named_groups", "pattern", "regex", "value_group")

    def __init__(self, name: str, pattern: str, flags: str, regex: Any) -> None:
        self.name = name
        self.pattern = pattern
        self.flags = flags
        self.regex = regex
        index: dict[str, int] = regex.groupindex
        self.value_group: int = index.get("value", 1 if regex.groups else 0)
        self.named_groups = tuple(sorted(index.items(), key=lambda item: item[1]))


Path = tuple[str, ...]
#: A JSON extractor's ``where``: (path, accepted values), each value as its JSON text.
Where = tuple[tuple[Path, tuple[str, ...]], ...]


def _at(doc: Any, path: Path) -> Any:
    """The value at ``path`` in ``doc``, or :data:`_NOT_JSON` when it is not there."""
    for key in path:
        if isinstance(doc, dict):
            if key not in doc:
                return _NOT_JSON
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return _NOT_JSON
    return doc


def _text(value: Any) -> str | None:
    """A JSON value as an extraction's value: a string as it is, ``null`` as nothing."""
    if value is None:
        return None
    return value if isinstance(value, str) else _dumps(value)


class _JsonExtractor:
    __slots__ = ("groups", "name", "path", "spec", "where")

    def __init__(self, name: str, path: str, where: Where, groups: tuple[tuple[str, str], ...]) -> None:
        self.name = name
        self.path: Path = tuple(path.split("."))
        self.where = where
        self.groups = tuple((group, tuple(at.split("."))) for group, at in groups)
        spec: dict[str, Any] = {"name": name, "json": path}
        if where:
            spec["where"] = {".".join(at): [json.loads(v) for v in values] if len(values) > 1
                             else json.loads(values[0]) for at, values in where}
        if groups:
            spec["groups"] = dict(groups)
        self.spec = spec

    def extract(self, doc: Any) -> Extraction | None:
        for at, accepted in self.where:
            found = _at(doc, at)
            if found is _NOT_JSON or _dumps(found) not in accepted:
                return None
        value = _at(doc, self.path)
        if value is _NOT_JSON:
            return None
        text = _text(value)
        if not text:
            return None
        if self.groups:
            groups = {name: _text(found) if (found := _at(doc, at)) is not _NOT_JSON else None
                      for name, at in self.groups}
        elif isinstance(value, dict):
            groups = {str(key): _text(item) for key, item in value.items()
                      if not isinstance(item, (dict, list))}
        else:
            groups = {}
        return Extraction(self.name, text, groups)


def _json_of(text: str) -> Any:
    """``text`` as a JSON object, or :data:`_NOT_JSON` (no parse is tried unless it looks like
    one: a line of plain output costs two character tests)."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return _NOT_JSON
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return _NOT_JSON


class ExtractorSet:
    """A compiled, immutable list of extractors; safe to share between agents.

    Built by :func:`compile_extractors`, which caches sets by their specs, so a thousand agents
    on one profile share one set.
    """

    __slots__ = ("_extractors", "_json", "_prefilter", "_regex")

    def __init__(self, extractors: tuple[_Extractor | _JsonExtractor, ...]) -> None:
        self._extractors = extractors
        # The regular expressions (by their place among all extractors) and the JSON ones.
        self._regex = tuple(i for i, e in enumerate(extractors) if isinstance(e, _Extractor))
        self._json = tuple(i for i, e in enumerate(extractors) if isinstance(e, _JsonExtractor))
        self._prefilter = _build_prefilter(tuple(e for e in extractors if isinstance(e, _Extractor)))

    def scan(self, text: str) -> list[Extraction]:
        """Every match of every extractor on one line, in extractor order, then match order,
        within the default caps (see :meth:`scan_capped`)."""
        return self.scan_capped(text).found

    def scan_capped(self, text: str, per_extractor: int = MAX_MATCHES_PER_LINE,
                    per_line: int = MAX_EXTRACTIONS_PER_LINE) -> Scan:
        """The matches on one line: at most ``per_extractor`` of each extractor and
        ``per_line`` in all, in extractor order, then match order; empty matches are skipped.

        The work is bounded too, not only the output: an extractor is asked for at most
        ``per_extractor + 1`` matches (empty ones included), and once the line's cap is
        reached each remaining extractor only for its first. Never raises on any ``str``,
        lone surrogates included.
        """
        if not self._extractors:
            return Scan([], 0)
        # Encoded once and reused: the wrapper would encode a str again on every call.
        data = text.encode("utf-8", "surrogatepass")
        hits: list[int]
        if not self._regex:
            hits = []
        elif self._prefilter is None:
            hits = list(self._regex)
        else:
            found = self._prefilter.Match(data)
            if not found and not self._json:
                return Scan([], 0)
            regex = self._regex
            hits = sorted(regex[i] for i in found or ())
        doc = _NOT_JSON
        if self._json:
            doc = _json_of(text)
            if doc is not _NOT_JSON:
                hits = sorted(hits + list(self._json))
        if not hits:
            return Scan([], 0)
        found_all: list[Extraction] = []
        cut = 0
        for index in hits:
            extractor = self._extractors[index]
            room = min(per_extractor, per_line - len(found_all))
            if isinstance(extractor, _JsonExtractor):
                got = extractor.extract(doc)
                if got is not None:
                    if room > 0:
                        found_all.append(got)
                    else:
                        cut += 1
                continue
            if room <= 0:
                # The line's cap is reached: only find out whether this one had anything.
                cut += any(True for _ in _matches(extractor, data, per_extractor + 1))
                continue
            for taken, spans in enumerate(_matches(extractor, data, per_extractor + 1)):
                if taken == room:
                    cut += 1
                    break
                groups = {name: _group(data, spans[at]) for name, at in extractor.named_groups}
                value = _group(data, spans[extractor.value_group]) or ""
                found_all.append(Extraction(extractor.name, value, groups))
        return Scan(found_all, cut)

    def specs(self) -> list[dict[str, Any]]:
        """``[{"name", "pattern", "flags"}]``, flags as canonical letters (``""`` for none), and
        ``{"name", "json"[, "where"][, "groups"]}`` for JSON extractors."""
        return [e.spec if isinstance(e, _JsonExtractor) else {"name": e.name, "pattern": e.pattern, "flags": e.flags}
                for e in self._extractors]

    def names(self) -> list[str]:
        return [extractor.name for extractor in self._extractors]

    def __len__(self) -> int:
        return len(self._extractors)

    def __repr__(self) -> str:
        return f"<ExtractorSet {self.names()!r}>"


def compile_extractors(specs: Iterable[Mapping[str, object]]) -> ExtractorSet:
    """Validate and compile extractor specs; raises :class:`InvalidExtractor` naming the culprit.

    A spec is ``{"name": str, "pattern": str, "flags": str | list[str]}`` (flags optional):
    letters from ``"ims"`` or names such as ``"IGNORECASE"``, ``"DOTALL"``, ``"MULTILINE"``.
    """
    return _build(check_specs(specs))


def check_specs(specs: Iterable[Mapping[str, object]]) -> tuple[tuple[str, str, str], ...]:
    """Check the shape of extractor specs without compiling them: each an object with a valid
    name, a pattern and flags, no name twice, not too many. Returns them as ``(name, pattern,
    flags)``; raises :class:`InvalidExtractor` numbering a culprit by its place in ``specs``
    (so check a user's own list alone before it is merged with a profile's)."""
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Iterable):
        raise InvalidExtractor("extractors must be a list of {name, pattern, flags} objects")
    normalized = tuple(_normalize(position, spec) for position, spec in enumerate(specs))
    if len(normalized) > MAX_EXTRACTORS:
        raise InvalidExtractor(
            f"too many extractors: {len(normalized)} (at most {MAX_EXTRACTORS})"
        )
    seen: set[str] = set()
    for _, name, *_ in normalized:
        if name in seen:
            raise InvalidExtractor(f"extractor {name!r}: the name is used twice")
        seen.add(name)
    return normalized


#: An extractor spec, checked and made hashable: ("re", name, pattern, flags) or
#: ("json", name, path, where, groups).
Normalized = tuple[Any, ...]


def _normalize(position: int, spec: object) -> Normalized:
    if not isinstance(spec, Mapping):
        raise InvalidExtractor(
            f"extractor #{position + 1}: must be an object with name and pattern, "
            f"not {type(spec).__name__}"
        )
    name = spec.get("name")
    if not is_name(name):
        raise InvalidExtractor(
            f"extractor #{position + 1}: name {name!r} must be 1 to 64 letters, digits or '_-.'"
        )
    if "json" in spec:
        return _normalize_json(name, spec)
    unknown = sorted(str(key) for key in spec if key not in _KEYS)
    if unknown:
        raise InvalidExtractor(
            f"extractor {name!r}: unknown key(s) {', '.join(unknown)} "
            "(allowed: name, pattern, flags; or name, json, where, groups)"
        )
    pattern = spec.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise InvalidExtractor(f"extractor {name!r}: pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidExtractor(
            f"extractor {name!r}: pattern is {len(pattern)} characters long "
            f"(at most {MAX_PATTERN_LENGTH})"
        )
    return "re", name, pattern, _parse_flags(name, spec.get("flags"))


def _json_path(name: str, what: str, path: object) -> str:
    if not isinstance(path, str) or not _JSON_PATH.fullmatch(path) or len(path) > MAX_JSON_PATH:
        raise InvalidExtractor(
            f"extractor {name!r}: {what} must be a dotted path such as \"item.text\" (keys, or "
            f"numbers for list items; at most {MAX_JSON_PATH} characters), not {path!r}"
        )
    return path


def _normalize_json(name: str, spec: Mapping[str, object]) -> Normalized:
    """A JSON extractor's spec, checked: ``json`` a path, ``where`` an object of paths to a
    value (or a list of values, any of which), ``groups`` an object of names to paths."""
    unknown = sorted(str(key) for key in spec if key not in _JSON_KEYS)
    if unknown:
        hint = " (a JSON extractor has no pattern)" if "pattern" in spec or "flags" in spec else ""
        raise InvalidExtractor(
            f"extractor {name!r}: unknown key(s) {', '.join(unknown)}{hint} "
            "(allowed: name, json, where, groups)"
        )
    path = _json_path(name, "json", spec.get("json"))
    where_in = spec.get("where") or {}
    groups_in = spec.get("groups") or {}
    for key, value in (("where", where_in), ("groups", groups_in)):
        if not isinstance(value, Mapping) or len(value) > MAX_JSON_TERMS:
            raise InvalidExtractor(
                f"extractor {name!r}: {key} must be an object of at most {MAX_JSON_TERMS} entries, not {value!r}"
            )
    assert isinstance(where_in, Mapping) and isinstance(groups_in, Mapping)
    where = []
    for at, expected in where_in.items():
        values = expected if isinstance(expected, list) else [expected]
        if not values or not all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            raise InvalidExtractor(
                f"extractor {name!r}: where.{at} must be a string, number, true, false, null or a "
                f"list of them, not {expected!r}"
            )
        where.append((tuple(_json_path(name, "a where key", at).split(".")), tuple(_dumps(v) for v in values)))
    groups = []
    for group, at in groups_in.items():
        if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group):
            raise InvalidExtractor(f"extractor {name!r}: group name {group!r} must be a letter or _ then "
                                   "letters, digits or _")
        groups.append((group, _json_path(name, f"groups.{group}", at)))
    return "json", name, path, tuple(where), tuple(groups)


def _parse_flags(name: str, flags: object) -> str:
    """Flags as canonical letters: "is", ["IGNORECASE", "DOTALL"] and "I|S" all give "is"."""
    if flags is None or flags == "":
        return ""
    if isinstance(flags, str):
        if set(flags) <= set(_FLAG_ORDER):
            return "".join(flag for flag in _FLAG_ORDER if flag in flags)
        words = re.split(r"[\s|,]+", flags.strip())
    elif isinstance(flags, (list, tuple)) and all(isinstance(word, str) for word in flags):
        words = list(flags)
    else:
        raise InvalidExtractor(
            f"extractor {name!r}: flags must be a string such as \"is\" or a list of names "
            f"such as [\"IGNORECASE\"], not {flags!r}"
        )
    found = set()
    for word in words:
        key = word.strip().lower().removeprefix("re.")
        if key not in _FLAG_NAMES:
            raise InvalidExtractor(
                f"extractor {name!r}: unknown flag {word!r} (use i/IGNORECASE, s/DOTALL, "
                "m/MULTILINE)"
            )
        found.add(_FLAG_NAMES[key])
    return "".join(flag for flag in _FLAG_ORDER if flag in found)


def _engine_options() -> Any:
    options = re2.Options()
    # Without this RE2 logs every parse error to stderr through absl; we raise them instead.
    options.log_errors = False
    return options


def _source(pattern: str, flags: str) -> str:
    # A leading inline group applies to the whole pattern, across every top-level alternative.
    return f"(?{flags}){pattern}" if flags else pattern


@functools.lru_cache(maxsize=128)
def _build(normalized: tuple[Normalized, ...]) -> ExtractorSet:
    return ExtractorSet(tuple(
        _JsonExtractor(*spec[1:]) if spec[0] == "json" else _compile_one(*spec[1:]) for spec in normalized))


def _compile_one(name: str, pattern: str, flags: str) -> _Extractor:
    try:
        regex = re2.compile(_source(pattern, flags), _engine_options())
    except re2.error as exc:
        raise _explain(name, pattern, flags, _decode(exc.args[0]) or "") from None
    # RE2 quietly accepts a group name used twice; Python's parser is the one that notices.
    try:
        re.compile(pattern, _python_flags(flags))
    except re.error as exc:
        if "redefinition of group name" in exc.msg:
            raise InvalidExtractor(
                f"extractor {name!r}: bad pattern at position {exc.pos}: {exc.msg}"
            ) from None
    return _Extractor(name, pattern, flags, regex)


def _explain(name: str, pattern: str, flags: str, engine_message: str) -> InvalidExtractor:
    """The error for a pattern RE2 refused; Python's parser is better at saying where."""
    _, _, fragment = engine_message.partition(": ")
    position = pattern.find(fragment) if fragment else -1
    where = f" at position {position}" if position >= 0 else ""
    if "too large" in engine_message:
        return InvalidExtractor(
            f"extractor {name!r}: pattern is too large for the regex engine ({engine_message}); "
            "use smaller repetition counts or character classes"
        )
    if "repetition size" in engine_message:
        return InvalidExtractor(
            f"extractor {name!r}: repetition count too large{where}: {engine_message}; RE2 "
            "allows at most 1000 repetitions, counting nested ones multiplied"
        )
    try:
        re.compile(pattern, _python_flags(flags))
    except re.error as exc:
        if exc.msg.startswith("bad escape"):
            # RE2 has escapes Python lacks (\pL, \z, \Q...\E): its own message is the one.
            return InvalidExtractor(f"extractor {name!r}: bad pattern{where}: {engine_message}")
        at = f" at position {exc.pos}" if exc.pos is not None else ""
        return InvalidExtractor(f"extractor {name!r}: bad pattern{at}: {exc.msg}")
    # Valid Python, refused by RE2: a construct the linear-time engine does not have.
    hint = " (write \\z for end of text)" if fragment == "\\Z" else ""
    return InvalidExtractor(
        f"extractor {name!r}: unsupported construct{where}: {engine_message}{hint}; the "
        "linear-time regex engine (RE2) has no backreferences, lookahead, lookbehind, "
        "atomic groups or possessive quantifiers"
    )


def _python_flags(flags: str) -> int:
    value = 0
    for flag in flags:
        value |= _PY_FLAGS[flag]
    return value


def _build_prefilter(extractors: tuple[_Extractor, ...]) -> Any:
    """One ``re2.Set`` of every pattern, or ``None`` (then every regex runs on every line)."""
    if not extractors:
        return None
    prefilter = re2.Set.SearchSet(_engine_options())
    try:
        for extractor in extractors:
            prefilter.Add(_source(extractor.pattern, extractor.flags))
        prefilter.Compile()
    except re2.error:
        # Each pattern compiled alone, so only the combined program can be too big: stay correct.
        return None
    return prefilter


def _find_spans(extractor: _Extractor, data: bytes) -> Iterator[list[tuple[int, int]]]:
    """Byte spans of every group, for each successive match of ``extractor`` in ``data``.

    Goes straight to the wrapper's C++ ``Match``: the public ``_Match.group`` costs a call into
    C++ per group just to count the groups, which tripled the cost of a matching line.
    """
    match = getattr(extractor.regex, "_regexp", None)
    if match is None or _UNANCHORED is None:  # a google-re2 without those internals
        for found in extractor.regex.finditer(data):
            yield [found.span(group) for group in range(extractor.regex.groups + 1)]
        return
    position, end = 0, len(data)
    while True:
        spans = match.Match(_UNANCHORED, data, position, end)
        if spans[0][0] < 0:
            return
        yield spans
        if spans[0][1] == position:
            # An empty match: step over it (a byte is enough, no pattern matches half a char).
            if position == end:
                return
            position += 1
        else:
            position = spans[0][1]


def _matches(extractor: _Extractor, data: bytes, attempts: int) -> Iterator[list[tuple[int, int]]]:
    """The non-empty matches among the first ``attempts`` matches of ``extractor``."""
    for spans in itertools.islice(_find_spans(extractor, data), attempts):
        start, end = spans[0]
        if start != end:
            yield spans


def _group(data: bytes, span: tuple[int, int]) -> str | None:
    start, end = span
    return None if start < 0 else data[start:end].decode("utf-8", "replace")


def _decode(data: bytes | str | None) -> str | None:
    if data is None or isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")
