"""Checking a template without rendering it: every problem, with its line.

One walk over the Jinja2 AST finds names read from the context (unknown
ones are errors, with a "did you mean"), attributes the context does not
have, anything that begins with ``_`` (the way out of a sandbox), and what
``templatelimits`` refuses (sizes and loops past the render budget).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from kryten_rules.ruleformat.templatelimits import (
    loop_problems,
    node_problems,
)
from kryten_rules.ruleformat.templates import VARIABLES, TemplateProblem, environment


def _walk(ast: nodes.Template) -> Iterator[nodes.Node]:
    """Every node of the tree, once (a single pass instead of one per question)."""
    stack: list[nodes.Node] = [ast]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())


class _Findings:
    """What one walk over a template's AST found."""

    def __init__(self, ast: nodes.Template) -> None:
        env = environment()
        self.problems: list[TemplateProblem] = []
        self.loads: dict[str, int] = {}  # name read from the context -> first line
        self.declared: set[str] = set(env.globals)  # range, the sandbox's bounded one
        self.attrs: list[nodes.Getattr] = []
        add = self.problems.append
        limits_broken: set[tuple[int, str]] = set()
        for node in _walk(ast):
            if isinstance(node, nodes.Name):
                if node.ctx == "load":
                    line = self.loads.get(node.name)
                    if line is None or node.lineno < line:
                        self.loads[node.name] = node.lineno
                else:  # store / param: set, for, macro arguments
                    self.declared.add(node.name)
            elif isinstance(node, nodes.Getattr):
                self.attrs.append(node)
                if node.attr.startswith("_"):
                    add(
                        TemplateProblem(
                            "template-unsafe",
                            f"attribute {node.attr!r} is not allowed: names starting with '_' are "
                            "private",
                            node.lineno,
                            needle=node.attr,
                        )
                    )
            elif isinstance(node, nodes.Getitem):
                if isinstance(node.arg, nodes.Const) and str(node.arg.value).startswith("_"):
                    add(
                        TemplateProblem(
                            "template-unsafe",
                            f"item {node.arg.value!r} is not allowed: names starting with '_' are "
                            "private",
                            node.lineno,
                            needle=str(node.arg.value),
                        )
                    )
            elif isinstance(node, nodes.Filter):
                if node.name not in env.filters:
                    add(
                        TemplateProblem(
                            "template-unknown-filter",
                            f"unknown filter {node.name!r}",
                            node.lineno,
                            needle=node.name,
                        )
                    )
            elif isinstance(node, nodes.Test):
                if node.name not in env.tests:
                    add(
                        TemplateProblem(
                            "template-unknown-test",
                            f"unknown test {node.name!r}",
                            node.lineno,
                            needle=node.name,
                        )
                    )
            elif isinstance(node, nodes.Include | nodes.Extends | nodes.Import | nodes.FromImport):
                add(
                    TemplateProblem(
                        "template-include",
                        "templates cannot include, extend or import other templates",
                        node.lineno,
                        "use prompt_file for a long template",
                    )
                )
            elif isinstance(node, nodes.For):
                self.declared.add("loop")
            elif isinstance(node, nodes.Macro | nodes.CallBlock):
                self.declared.update(("caller", "varargs", "kwargs"))
                if isinstance(node, nodes.Macro):
                    self.declared.add(node.name)  # {% macro hi() %}: 'hi' is the template's own
            for message, needle in node_problems(node):
                if (node.lineno, message) not in limits_broken:  # a tower is one problem
                    limits_broken.add((node.lineno, message))
                    add(TemplateProblem("template-unsafe", message, node.lineno, needle=needle))
        for line, message in loop_problems(ast):
            add(TemplateProblem("template-unsafe", message, line, needle="for"))

    @property
    def free(self) -> dict[str, int]:
        """Names read from the context and never assigned in the template.

        Flow-insensitive on purpose: a name set anywhere counts as set
        everywhere. That can only let a rare mistake through to render time,
        where StrictUndefined still reports it; it never rejects a good template.
        """
        return {n: line for n, line in self.loads.items() if n not in self.declared}


def reads(source: str) -> frozenset[str]:
    """The context names a template reads (empty when it does not parse: its check says why)."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError:
        return frozenset()
    return frozenset(_Findings(ast).free)


def check_template(
    source: str, names: Mapping[str, frozenset[str] | None] = VARIABLES
) -> list[TemplateProblem]:
    """Every problem of one template, found without rendering it."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem("template-syntax", exc.message or str(exc), exc.lineno or 1)]
    found = _Findings(ast)
    problems = found.problems
    free = found.free
    known = sorted(names)
    for name, line in sorted(free.items(), key=lambda kv: kv[1]):
        if name not in names:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known names: {', '.join(known)}"
            problems.append(
                TemplateProblem(
                    "template-unknown-name",
                    f"unknown template variable {name!r}",
                    line,
                    hint,
                    needle=name,
                )
            )
    for node in found.attrs:
        if isinstance(node.node, nodes.Name) and node.node.name in free:
            attrs = names.get(node.node.name)
            if attrs is not None and node.attr not in attrs and not node.attr.startswith("_"):
                problems.append(
                    TemplateProblem(
                        "template-unknown-name",
                        f"{node.node.name!r} has no attribute {node.attr!r}",
                        node.lineno,
                        f"{node.node.name} has: {', '.join(sorted(attrs))}",
                        needle=f".{node.attr}",
                    )
                )
    problems.sort(key=lambda p: p.line)
    return problems
