"""Prompt and reply templates: Jinja2, sandboxed, with a fixed set of names.

Rule files are written by moderators, who are trusted to shape what the bot
says, not to run code. So templates:

* render in an ``ImmutableSandboxedEnvironment`` (no mutation of values, no
  access to ``_private`` attributes, no unsafe callables);
* have no loader: ``include``/``extends``/``import`` cannot read files;
* see only the variables of docs/rules.md; an unknown name, or an attribute that
  begins with ``_``, is an error at *validate* time (static check of the
  template's AST), and ``StrictUndefined`` makes any miss at render time an
  error rather than an empty string.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# docs/rules.md "Template variables", with the attributes each structured one has.
VARIABLES: dict[str, frozenset[str] | None] = {
    "user": frozenset({"name", "rank", "rank_name"}),
    "message": None,
    "text": None,
    "match": None,
    "groups": None,
    "media": frozenset({"title", "duration", "type", "id"}),
    "history": None,
    "persona": frozenset({"name", "aliases"}),
    "channel": None,
    "rule": frozenset({"id", "description"}),
    "now": None,
}
MAX_OUTPUT_CHARS = 20_000  # a prompt longer than this is a template bug (or an attack)
MAX_RANGE = 1_000  # like Jinja's own sandbox constant, but tighter: prompts are small


class TemplateProblem(Exception):
    """A template that cannot be used; ``line`` is relative to the template's first line."""

    def __init__(
        self, code: str, message: str, line: int = 1, hint: str | None = None, needle: str = ""
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.hint = hint
        self.needle = needle  # the text the problem is about, to find its column


MAX_POWER = 64  # exponents beyond this are not prompt arithmetic
MAX_WIDTH = 999  # widths in format specs and padding filters
# A per-render budget of `range` items: nested loops multiply, a per-call cap does not.
_range_budget: ContextVar[int] = ContextVar("range_budget", default=MAX_RANGE * 10)
_WIDE_FORMAT = re.compile(r"\{[^}]*\d{4,}[^}]*\}|%[-+ #0*]*\d{4,}")


def _too_big(value: Any) -> bool:
    return isinstance(value, str | list | tuple) and len(value) > MAX_OUTPUT_CHARS


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, tightened.

    * no private attributes, even through ``attr()`` or ``[...]``;
    * ``*``, ``**`` and ``%`` go through :meth:`call_binop` with size limits (and
      are therefore never folded at parse time, so ``validate`` cannot be made to
      compute ``10 ** 10 ** 10``);
    * format strings and padding filters refuse huge widths before allocating.
    """

    intercepted_binops = frozenset({"*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER:
                raise SecurityError(f"exponent {right!r} is too large")
            return left**right
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and (len(seq) * n > MAX_OUTPUT_CHARS)
                ):
                    raise SecurityError("repetition result is too long")
            return left * right
        if isinstance(left, str) and _WIDE_FORMAT.search(left):  # '%' formatting
            raise SecurityError("format width is too large")
        return left % right

    def wrap_str_format(self, value: Any) -> Any:
        """``'...'.format(...)`` in a template: refuse huge widths before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = getattr(value, "__self__", "")

        def checked(*args: Any, **kwargs: Any) -> str:
            if isinstance(fmt, str) and _WIDE_FORMAT.search(fmt):
                raise SecurityError("format width is too large")
            return wrapped(*args, **kwargs)

        return checked


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range too big (more than {MAX_RANGE} items)")
    left = _range_budget.get() - len(r)
    if left < 0:
        raise SecurityError("too many loop iterations in one render")
    _range_budget.set(left)
    return r


def _bounded(name: str, width_arg: int, default: int) -> Any:
    """A padding filter that refuses widths that would allocate megabytes."""
    from jinja2 import filters

    original = getattr(filters, f"do_{name}")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        width = kwargs.get("width", args[width_arg] if len(args) > width_arg else default)
        if isinstance(width, int) and width > MAX_WIDTH:
            raise SecurityError(f"{name} width {width} is too large")
        if isinstance(width, str) and len(width) > MAX_WIDTH:
            raise SecurityError(f"{name} prefix is too long")
        return original(*args, **kwargs)

    return wrapper


def _safe_format(value: str, *args: Any, **kwargs: Any) -> str:
    if isinstance(value, str) and _WIDE_FORMAT.search(value):
        raise SecurityError("format width is too large")
    from jinja2 import filters

    return filters.do_format(value, *args, **kwargs)


@cache
def environment() -> _Env:
    env = _Env(
        undefined=StrictUndefined,
        autoescape=False,  # plain text for the model and the chat, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        loader=None,
    )
    env.globals.clear()
    env.globals["range"] = _safe_range
    env.filters["format"] = _safe_format
    env.filters["center"] = _bounded("center", 1, 80)
    env.filters["indent"] = _bounded("indent", 1, 4)
    # wordwrap(environment, s, width=79, ...): pass_environment shifts the arguments
    wordwrap = _bounded("wordwrap", 2, 79)
    wordwrap.jinja_pass_arg = env.filters["wordwrap"].jinja_pass_arg
    env.filters["wordwrap"] = wordwrap
    return env


def _const_number(node: nodes.Node) -> float | None:
    """The value of constant arithmetic, computed without ever computing a huge number."""
    if isinstance(node, nodes.Const):
        v = node.value
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None
    if isinstance(node, nodes.Neg | nodes.Pos):
        v = _const_number(node.node)
        return None if v is None else (-v if isinstance(node, nodes.Neg) else v)
    if isinstance(node, nodes.Pow | nodes.Mul | nodes.Add | nodes.Sub):
        left, right = _const_number(node.left), _const_number(node.right)
        if left is None or right is None:
            return None
        if math.isinf(left) or math.isinf(right):
            return math.inf
        if isinstance(node, nodes.Pow):
            if abs(right) > MAX_POWER or abs(left) > 1e6:
                return math.inf
            power: float = float(left) ** right  # int ** negative is a float too
            return power
        if isinstance(node, nodes.Mul):
            return float(left) * right
        return float(left) + right if isinstance(node, nodes.Add) else float(left) - right
    return None


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
        self.declared: set[str] = set()
        self.attrs: list[nodes.Getattr] = []
        add = self.problems.append
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
            elif isinstance(node, nodes.Pow):
                exp = _const_number(node.right)
                if exp is not None and abs(exp) > MAX_POWER:
                    add(
                        TemplateProblem(
                            "template-unsafe",
                            f"exponent is too large (limit {MAX_POWER})",
                            node.lineno,
                            needle="**",
                        )
                    )
            elif isinstance(node, nodes.Mul):
                for side, other in ((node.left, node.right), (node.right, node.left)):
                    n = _const_number(side)
                    if (
                        n is not None
                        and abs(n) > MAX_OUTPUT_CHARS
                        and (_const_number(other) is None)
                    ):
                        add(
                            TemplateProblem(
                                "template-unsafe",
                                "repetition is too large (it would build a huge string)",
                                node.lineno,
                                needle="*",
                            )
                        )
                        break

    @property
    def free(self) -> dict[str, int]:
        """Names read from the context and never assigned in the template.

        Flow-insensitive on purpose: a name set anywhere counts as set
        everywhere. That can only let a rare mistake through to render time,
        where StrictUndefined still reports it; it never rejects a good template.
        """
        return {n: line for n, line in self.loads.items() if n not in self.declared}


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


class CompiledTemplate:
    """A checked template, compiled to Python on its first render.

    Jinja's compile step costs ~0.6 ms a template, so a 1,000-rule set would
    spend most of a reload compiling templates that may never render; the
    source was parsed and checked before, so compiling later cannot fail on it.
    Rendering errors surface as ``TemplateProblem``.
    """

    __slots__ = ("_template", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._template: Any = None

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.source[:40]!r})"

    def render(self, context: Mapping[str, Any]) -> str:
        token = _range_budget.set(MAX_RANGE * 10)
        try:
            if self._template is None:
                self._template = environment().from_string(self.source)
            out: str = self._template.render(context)
        except SecurityError as exc:
            raise TemplateProblem("template-unsafe", f"blocked by the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise TemplateProblem("template-render", f"cannot render: {exc}") from exc
        except Exception as exc:  # a filter fed the wrong type, a division by zero, ...
            raise TemplateProblem("template-render", f"cannot render: {exc!r}") from exc
        finally:
            _range_budget.reset(token)
        if len(out) > MAX_OUTPUT_CHARS:
            out = out[:MAX_OUTPUT_CHARS]
        return out.strip()


def compile_template(source: str) -> CompiledTemplate:
    """A template that :func:`check_template` accepted, ready to render."""
    return CompiledTemplate(source)
