"""Stage 1, load: YAML text to a tree of nodes that carry their own position.

YAML is parsed once (PyYAML's composer, the C one when libyaml is present)
into :class:`Node` values: every mapping, sequence and scalar knows its file,
line and column, and a mapping also knows where each of its keys stands, so a
later stage can point at the key itself ("unknown key") or at its value.

Problems that YAML libraries usually hide are reported here: duplicate keys
(PyYAML silently keeps the last), tabs used for indentation, aliases to
undefined anchors, files that are not UTF-8, and numbers that are NaN,
infinite or too large to compute with (``numbers``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kryten_rules.diagnostics import Diagnostic, Span, error
from kryten_rules.gcpause import gc_paused
from kryten_rules.ruleformat.numbers import int_text_problem, number_problem
from kryten_rules.ruleformat.sources import MAX_FILE_BYTES, Sources, SourceTooLarge

try:  # the C composer is ~10x faster on large rule sets
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
MAX_NODES = 200_000  # values in one document, counting what aliases repeat


@dataclass(slots=True)
class Node:
    """A YAML value with its position.

    ``value`` is a ``dict[str, Node]`` for mappings, a ``list[Node]`` for
    sequences, or a plain scalar (str, int, float, bool, None).
    """

    value: Any
    span: Span
    key_spans: dict[str, Span] = field(default_factory=dict)
    # A block scalar (`|` or `>`): its text starts on the line after `span`.
    block: bool = False
    end_line: int = 0  # the last line the value spans (for multi-line scalars)

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if isinstance(self.value, dict) else None

    def key_span(self, key: str) -> Span:
        return self.key_spans.get(key, self.span)

    def items(self) -> Iterator[tuple[str, Node]]:
        if isinstance(self.value, dict):
            yield from self.value.items()

    def plain(self) -> Any:
        """The value as plain Python data (what JSON Schema and compile see)."""
        v = self.value
        if isinstance(v, dict):
            return {k: n.plain() for k, n in v.items()}
        if isinstance(v, list):
            return [n.plain() for n in v]
        return v

    def at(self, path: tuple[str | int, ...]) -> Node:
        """The deepest node along ``path`` that exists (for mapping errors to places)."""
        node = self
        for part in path:
            child = None
            if isinstance(node.value, dict) and isinstance(part, str):
                child = node.value.get(part)
            elif (
                isinstance(node.value, list)
                and isinstance(part, int)
                and (0 <= part < len(node.value))
            ):
                child = node.value[part]
            if child is None:
                break
            node = child
        return node


def seq(node: Node | None) -> list[Node]:
    """The items of a sequence node; nothing for anything else.

    Semantic checks also run on files the schema rejected (so every problem is
    reported in one run), so they must take any shape without raising.
    """
    return list(node.value) if node is not None and node.is_seq else []


def effective(rule: Node, defaults: Node | None, key: str) -> Node | None:
    """A rule's own value for ``key``, else its file's ``defaults`` value."""
    node = rule.get(key)
    if node is None and defaults is not None:
        node = defaults.get(key)
    return node


@dataclass(slots=True)
class Document:
    """One loaded file: its root node (``None`` when it could not be parsed)."""

    path: Path
    root: Node | None
    diagnostics: list[Diagnostic]
    data: bytes = b""  # the bytes parsed: a reload's digest must be of what was checked


def _span(file: str, mark: Any) -> Span:
    return Span(file, mark.line + 1, mark.column + 1)


class _Converter:
    """Turns PyYAML's composed node graph into :class:`Node` values.

    Uses PyYAML's own constructor for scalars so that types follow YAML 1.1 as
    PyYAML resolves them (ints, floats, bools, nulls, timestamps as strings).
    """

    def __init__(self, file: str, loader: Any) -> None:
        self.file = file
        self.loader = loader
        self.diagnostics: list[Diagnostic] = []
        self._depth = 0
        self._nodes = 0
        self._open: set[int] = set()  # collections being converted: an alias to one is a loop
        self._too_big = False

    def convert(self, ynode: yaml.Node) -> Node:
        span = _span(self.file, ynode.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            # Aliases can make a tiny file expand exponentially ("billion laughs").
            if not self._too_big:
                self._too_big = True
                self.diagnostics.append(
                    error(
                        "yaml-too-large",
                        f"the document expands to more than {MAX_NODES} values",
                        span,
                        "aliases (*name) repeat what they point to; write the values out",
                    )
                )
            return Node(None, span)
        if id(ynode) in self._open:
            self.diagnostics.append(
                error("yaml-alias", "an alias refers to a value that contains it (a loop)", span)
            )
            return Node(None, span)
        self._depth += 1
        try:
            if self._depth > 64:
                self.diagnostics.append(error("yaml-too-deep", "nesting is too deep", span))
                return Node(None, span)
            if isinstance(ynode, yaml.MappingNode | yaml.SequenceNode):
                self._open.add(id(ynode))
                try:
                    if isinstance(ynode, yaml.MappingNode):
                        return self._mapping(ynode, span)
                    return Node([self.convert(n) for n in ynode.value], span)
                finally:
                    self._open.discard(id(ynode))
            block = getattr(ynode, "style", None) in ("|", ">")
            assert isinstance(ynode, yaml.ScalarNode)
            return Node(
                self._scalar(ynode, span), span, block=block, end_line=ynode.end_mark.line + 1
            )
        finally:
            self._depth -= 1

    def _scalar(self, ynode: yaml.ScalarNode, span: Span) -> Any:
        if ynode.tag == _STR_TAG:  # most values: skip the constructor machinery
            return ynode.value
        if ynode.tag == _INT_TAG:
            # Python refuses to convert integers of over 4,300 digits (ValueError)
            problem = int_text_problem(ynode.value, span)
            if problem is not None:
                self.diagnostics.append(problem)
                return None
        try:
            value = self.loader.construct_object(ynode, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            self.diagnostics.append(error("yaml-value", f"bad value: {exc}", span))
            return None
        problem = number_problem(value, ynode.value, span)
        if problem is not None:  # NaN, infinity, or too large to compute with
            self.diagnostics.append(problem)
            return None
        if not isinstance(value, str | int | float | bool | type(None)):
            # Dates and binary: keep the source text, the schema will say what it wants.
            return str(ynode.value)
        return value

    def _mapping(self, ynode: yaml.MappingNode, span: Span) -> Node:
        out: dict[str, Node] = {}
        keys: dict[str, Span] = {}
        for key_node, value_node in ynode.value:
            kspan = _span(self.file, key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.diagnostics.append(
                    error(
                        "yaml-merge-key",
                        "merge keys (<<) are not supported in rule files",
                        kspan,
                        "write the keys out, or use `defaults:` for values shared by rules",
                    )
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.append(error("yaml-key", "a key must be a plain scalar", kspan))
                continue
            # Keys are always text: YAML 1.1 would read `on:` (a rule key) as True.
            key = str(key_node.value)
            if key in out:
                first = keys[key]
                self.diagnostics.append(
                    error(
                        "duplicate-key",
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        kspan,
                        "YAML keeps only one of them; remove or rename one",
                    )
                )
                continue
            keys[key] = kspan
            out[key] = self.convert(value_node)
        return Node(out, span, keys)


def _decode(data: bytes, file: str) -> tuple[str | None, Diagnostic | None]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        # the column counts characters, like every other column we report
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        return None, error(
            "not-utf8",
            f"the file is not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
            Span(file, line, col),
            "save the file as UTF-8",
        )


def _yaml_error(exc: yaml.YAMLError, file: str, text: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    span = _span(file, mark) if mark is not None else Span(file, 1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}, {problem}" if context else str(problem)
    hint = None
    code = "yaml-syntax"
    lines = text.splitlines()
    line_text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    if "\t" in problem or "'\\t'" in message or line_text[: span.column].strip(" ") == "\t":
        code = "yaml-tab"
        message = "a tab character where YAML needs spaces"
        hint = "YAML indents with spaces only; replace the tab"
    elif "found undefined alias" in message:
        code = "yaml-alias"
        hint = "define the anchor (&name) before using the alias (*name)"
    elif "could not find expected ':'" in message or "mapping values are not allowed" in message:
        hint = "check the indentation and that every key ends with ':'"
    return error(code, message, span, hint)


def load_text(text: str, file: str) -> tuple[Node | None, list[Diagnostic]]:
    """Parse one YAML document from text."""
    loader = _Loader(text)
    try:
        composed = loader.get_single_node()
    except yaml.YAMLError as exc:
        return None, [_yaml_error(exc, file, text)]
    finally:
        loader.dispose()
    if composed is None:
        return None, [error("empty-file", "the file is empty", Span(file, 1, 1))]
    conv = _Converter(file, _Loader(""))
    with gc_paused():
        root = conv.convert(composed)
    return root, conv.diagnostics


def load_file(path: Path, sources: Sources | None = None) -> Document:
    """Read and parse one file; every failure becomes a diagnostic, never an exception.

    With ``sources`` the file is read through it, so the bytes parsed here are
    the bytes every later stage of the same load (and the digest) sees.
    """
    file = str(path)
    try:
        src = (sources or Sources()).read(path)
    except SourceTooLarge as exc:
        return Document(
            path,
            None,
            [
                error(
                    "file-too-large",
                    f"file is {exc.size} bytes (limit {MAX_FILE_BYTES})",
                    Span(file),
                )
            ],
        )
    except OSError as exc:
        return Document(
            path, None, [error("file-unreadable", exc.strerror or str(exc), Span(file))]
        )
    data = src.data
    text, diag = _decode(data, file)
    if text is None:
        return Document(path, None, [diag] if diag else [])
    root, diags = load_text(text, file)
    return Document(path, root, diags, data)
