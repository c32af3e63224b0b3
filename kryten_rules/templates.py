"""Prompt and reply templates: Jinja2, sandboxed, with a fixed set of names.

Rule files are written by moderators, who are trusted to shape what the bot
says, not to run code. So templates:

* render in an ``ImmutableSandboxedEnvironment`` (no mutation of values, no
  access to ``_private`` attributes, no unsafe callables);
* have no loader: ``include``/``extends``/``import`` cannot read files;
* see only the variables of RULES.md; an unknown name, or an attribute that
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
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# RULES.md "Template variables", with the attributes each structured one has.
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
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and (
                    len(seq) * n > MAX_OUTPUT_CHARS
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
    wordwrap.jinja_pass_arg = env.filters["wordwrap"].jinja_pass_arg  # type: ignore[attr-defined]
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
            return float(left) ** right
        if isinstance(node, nodes.Mul):
            return float(left) * right
        return float(left) + right if isinstance(node, nodes.Add) else float(left) - right
    return None


def _arithmetic_problems(ast: nodes.Template) -> Iterator[TemplateProblem]:
    """Constant exponents and repetitions that would hang or exhaust the service."""
    for node in ast.find_all(nodes.Pow):
        exp = _const_number(node.right)
        if exp is not None and abs(exp) > MAX_POWER:
            yield TemplateProblem("template-unsafe", f"exponent is too large (limit {MAX_POWER})",
                                  node.lineno, needle="**")
    for node in ast.find_all(nodes.Mul):
        for side, other in ((node.left, node.right), (node.right, node.left)):
            n = _const_number(side)
            if n is not None and abs(n) > MAX_OUTPUT_CHARS and _const_number(other) is None:
                yield TemplateProblem("template-unsafe",
                                      "repetition is too large (it would build a huge string)",
                                      node.lineno, needle="*")
                break


def _walk_problems(ast: nodes.Template) -> Iterator[TemplateProblem]:
    env = environment()
    for node in ast.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        yield TemplateProblem(
            "template-include",
            "templates cannot include, extend or import other templates",
            node.lineno,
            "use prompt_file for a long template",
        )
    for node in ast.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            yield TemplateProblem(
                "template-unsafe",
                f"attribute {node.attr!r} is not allowed: names starting with '_' are private",
                node.lineno,
                needle=node.attr,
            )
    for node in ast.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and str(node.arg.value).startswith("_"):
            yield TemplateProblem(
                "template-unsafe",
                f"item {node.arg.value!r} is not allowed: names starting with '_' are private",
                node.lineno,
                needle=str(node.arg.value),
            )
    for node in ast.find_all(nodes.Filter):
        if node.name not in env.filters:
            yield TemplateProblem(
                "template-unknown-filter",
                f"unknown filter {node.name!r}",
                node.lineno,
                needle=node.name,
            )
    for node in ast.find_all(nodes.Test):
        if node.name not in env.tests:
            yield TemplateProblem(
                "template-unknown-test",
                f"unknown test {node.name!r}",
                node.lineno,
                needle=node.name,
            )


def _undeclared(ast: nodes.Template) -> dict[str, int]:
    """Names the template reads from its context, with the first line each is used on."""
    from jinja2 import meta

    free = meta.find_undeclared_variables(ast)
    first: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in free and node.name not in first:
            first[node.name] = node.lineno
    for name in free:
        first.setdefault(name, 1)
    return first


def check_template(
    source: str, names: Mapping[str, frozenset[str] | None] = VARIABLES
) -> list[TemplateProblem]:
    """Every problem of one template, found without rendering it."""
    env = environment()
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem("template-syntax", exc.message or str(exc), exc.lineno or 1)]
    problems = list(_walk_problems(ast)) + list(_arithmetic_problems(ast))
    try:
        free = _undeclared(ast)
    except TemplateError as exc:  # e.g. an unknown filter, already reported above
        if not problems:
            problems.append(TemplateProblem("template-syntax", str(exc), 1))
        return problems
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
    for node in ast.find_all(nodes.Getattr):
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
    return problems


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template ready to render; rendering errors surface as ``TemplateProblem``."""

    source: str
    _template: Any

    def render(self, context: Mapping[str, Any]) -> str:
        token = _range_budget.set(MAX_RANGE * 10)
        try:
            out = self._template.render(context)
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
    """Compile a template that :func:`check_template` accepted."""
    return CompiledTemplate(source, environment().from_string(source))
