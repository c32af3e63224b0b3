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

import types
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kryten_rules.codes import Code
from kryten_rules.errors import KrytenRulesError
from kryten_rules.ruleformat.templatelimits import (
    MAX_ITERATIONS,
    MAX_OUTPUT_CHARS,
    MAX_WIDTH,
    int_power_problem,
    int_product_problem,
    joined_length,
    percent_format_problem,
    replaced_length,
    str_format_problem,
    str_method_problem,
)

# docs/rules.md "Template variables", with the attributes each structured one has.
VARIABLES: dict[str, frozenset[str] | None] = {
    "user": frozenset({"name", "rank", "rank_name"}),
    "message": None,
    "text": None,
    "match": None,
    "groups": None,
    "media": frozenset({"title", "duration", "type", "id"}),
    "playlist": frozenset({"next"}),
    "room": frozenset({"users"}),
    "history": None,
    "persona": frozenset({"name", "aliases"}),
    "channel": None,
    "rule": frozenset({"id", "description"}),
    "now": None,
}
MAX_RANGE = 1_000  # like Jinja's own sandbox constant, but tighter: prompts are small


class TemplateProblem(KrytenRulesError):
    """A template that cannot be used; ``line`` is relative to the template's first line."""

    def __init__(
        self,
        code: Code | str,
        message: str,
        line: int = 1,
        hint: str | None = None,
        needle: str = "",
    ):
        super().__init__(message)
        self.code = Code(code)  # a registered diagnostic code (ValueError if not)
        self.message = message
        self.line = line
        self.hint = hint
        self.needle = needle  # the text the problem is about, to find its column


# Per-render budgets: nested loops multiply, a per-call cap does not.
_range_budget: ContextVar[int] = ContextVar("range_budget", default=MAX_RANGE * 10)
_loop_budget: ContextVar[int] = ContextVar("loop_budget", default=MAX_ITERATIONS)


def _refuse(problem: str | None) -> None:
    if problem:
        raise SecurityError(problem)


def _charge_loop(items: int) -> None:
    left = _loop_budget.get() - items
    if left < 0:
        raise SecurityError(f"the loops run more than {MAX_ITERATIONS:,} times in one render")
    _loop_budget.set(left)


def _counted(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _charge_loop(1)
        yield item


class _Codegen(CodeGenerator):
    """Jinja's code generator, with every ``{% for %}`` iterable passed through
    ``environment.loop_items`` so loops draw on one per-render budget."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        guard = nodes.EnvironmentAttribute("loop_items", lineno=node.lineno)
        node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, tightened (the limits are in ``templatelimits.py``).

    * no private attributes, even through ``attr()`` or ``[...]``;
    * ``*``, ``**`` and ``%`` go through :meth:`call_binop` with size limits (and
      are therefore never folded at parse time, so ``validate`` cannot be made to
      compute ``10 ** 10 ** 10``);
    * every call goes through :meth:`call`, which sizes what ``zfill``,
      ``ljust``, ``replace``, ``join``, ... would build before they build it;
    * format strings and padding filters refuse huge and ``*`` widths;
    * every loop draws on one per-render item budget (:meth:`loop_items`).
    """

    intercepted_binops = frozenset({"*", "**", "%"})
    code_generator_class = _Codegen

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _refuse(int_power_problem(left, right))
            return left**right
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and (len(seq) * n > MAX_OUTPUT_CHARS)
                ):
                    raise SecurityError("repetition result is too long")
            _refuse(int_product_problem(left, right))
            return left * right
        if isinstance(left, str):  # '%' formatting
            _refuse(percent_format_problem(left))
        return left % right

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Size a str method's result from its arguments before running it."""
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str) and isinstance(obj, types.BuiltinMethodType):
            name = obj.__name__
            _refuse(str_method_problem(owner, name, args, kwargs))
            if name == "join" and args:
                items = list(args[0])  # once: it may be an iterator
                if joined_length(owner, items) > max(MAX_OUTPUT_CHARS, len(owner)):
                    raise SecurityError("join result is too long")
                args = (items, *args[1:])
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        """``'...'.format(...)`` in a template: refuse huge widths before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = getattr(value, "__self__", "")

        def checked(*args: Any, **kwargs: Any) -> str:
            if isinstance(fmt, str):
                _refuse(str_format_problem(fmt))
            return str(wrapped(*args, **kwargs))

        return checked

    def loop_items(self, iterable: Any) -> Any:
        """What a ``{% for %}`` iterates over, charged to the render's loop budget:
        all at once when its length is known, else item by item."""
        try:
            size = len(iterable)
        except TypeError:
            return _counted(iterable)
        _charge_loop(size)
        return iterable


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range too big (more than {MAX_RANGE} items)")
    left = _range_budget.get() - len(r)
    if left < 0:
        raise SecurityError("too many loop iterations in one render")
    _range_budget.set(left)
    return r


def _guarded_filter(original: Any, check: Any) -> Any:
    """``original`` (a Jinja filter), refusing the calls for which ``check(args, kwargs)``
    names a problem. ``check`` sees the filter's own arguments (the value first),
    without the environment or eval context Jinja passes some filters; the
    filter's pass-context marker is kept so Jinja still passes it."""
    marker = getattr(original, "jinja_pass_arg", None)
    skip = 0 if marker is None else 1

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _refuse(check(args[skip:], kwargs))
        return original(*args, **kwargs)

    if marker is not None:
        wrapper.jinja_pass_arg = marker  # type: ignore[attr-defined]
    return wrapper


def _width_check(name: str, default: int) -> Any:
    """A check for a filter whose second argument is a result width (or a prefix)."""

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        width = kwargs.get("width", args[1] if len(args) > 1 else default)
        if isinstance(width, int) and width > MAX_WIDTH:
            return f"{name} width {width} is too large (limit {MAX_WIDTH})"
        if isinstance(width, str) and len(width) > MAX_WIDTH:
            return f"{name} prefix is too long"
        return None

    return check


def _format_check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    return percent_format_problem(args[0]) if args and isinstance(args[0], str) else None


def _replace_check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    # replace(s, old, new, count=None), on str() of each, as Jinja does
    if len(args) < 3:
        return None
    s, old, new = (str(a) for a in args[:3])
    count = args[3] if len(args) > 3 else kwargs.get("count")
    count = count if isinstance(count, int) else -1
    if replaced_length(s, old, new, count) > max(MAX_OUTPUT_CHARS, len(s)):
        return "replace result is too long"
    return None


def _count_check(name: str, key: str) -> Any:
    """batch(value, n, fill_with) and slice(value, n, fill_with) build n lists."""

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        n = args[1] if len(args) > 1 else kwargs.get(key)
        if isinstance(n, int) and n > MAX_WIDTH:
            return f"{name}({n}) is too large (limit {MAX_WIDTH})"
        return None

    return check


def _safe_join(original: Any) -> Any:
    """The join filter, sizing the result before building it."""
    from jinja2.filters import make_attrgetter

    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        if attribute is not None:
            value = map(make_attrgetter(eval_ctx.environment, attribute), value)
        items = [str(x) for x in value]
        if joined_length(str(d), items) > MAX_OUTPUT_CHARS:
            raise SecurityError("join result is too long")
        return original(eval_ctx, items, d)

    join.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    return join


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
    f = env.filters
    f["format"] = _guarded_filter(f["format"], _format_check)
    f["center"] = _guarded_filter(f["center"], _width_check("center", 80))
    f["indent"] = _guarded_filter(f["indent"], _width_check("indent", 4))
    f["wordwrap"] = _guarded_filter(f["wordwrap"], _width_check("wordwrap", 79))
    f["replace"] = _guarded_filter(f["replace"], _replace_check)
    f["batch"] = _guarded_filter(f["batch"], _count_check("batch", "linecount"))
    f["slice"] = _guarded_filter(f["slice"], _count_check("slice", "slices"))
    f["join"] = _safe_join(f["join"])
    return env


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
        """The text, cut to MAX_OUTPUT_CHARS: rendering stops once that much is out,
        so a loop that would print megabytes costs no more than the cap."""
        tokens = (_range_budget.set(MAX_RANGE * 10), _loop_budget.set(MAX_ITERATIONS))
        try:
            if self._template is None:
                self._template = environment().from_string(self.source)
            parts: list[str] = []
            size = 0
            for chunk in self._template.generate(context):
                parts.append(chunk)
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    break
            out = "".join(parts)
        except MemoryError as exc:
            raise TemplateProblem("template-budget", "ran out of memory while rendering") from exc
        except SecurityError as exc:
            raise TemplateProblem("template-unsafe", f"blocked by the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise TemplateProblem("template-render", f"cannot render: {exc}") from exc
        except Exception as exc:  # a filter fed the wrong type, a division by zero, ...
            raise TemplateProblem("template-render", f"cannot render: {exc!r}") from exc
        finally:
            _range_budget.reset(tokens[0])
            _loop_budget.reset(tokens[1])
        if len(out) > MAX_OUTPUT_CHARS:
            out = out[:MAX_OUTPUT_CHARS]
        return out.strip()


def compile_template(source: str) -> CompiledTemplate:
    """A template that :func:`check_template` accepted, ready to render."""
    return CompiledTemplate(source)
