"""What one template render may cost, and the checks that keep it there.

A template is written by a moderator, not by us, and Python lets a one-line
expression ask for gigabytes (``'1'.zfill(999999999)``) or for ever
(``(((9**64)**64)**64)**64``). The same limits are enforced twice:

* at validate time, on the template's literals (:func:`node_problems`, called
  by the static check in ``templates.py``): what is provably unbounded is a
  ``template-unsafe`` diagnostic, so the rule never loads;
* at render time, on the values (the sandbox in ``templates.py`` calls the
  ``*_problem`` functions before it performs the operation): the same
  operation fed a computed argument is refused before it allocates.

Neither layer can be complete. The hard stop is the render worker's time and
memory budget (``dispatch/renderpool.py``); these checks make the known attacks fail
at once, with a message that names the operation, instead of costing a worker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from string import Formatter
from typing import Any

from jinja2 import nodes

MAX_OUTPUT_CHARS = 20_000  # a prompt longer than this is a template bug (or an attack)
MAX_WIDTH = 999  # widths and precisions in format specs, padding methods and filters
MAX_POWER = 64  # exponents beyond this are not prompt arithmetic
MAX_INT_BITS = 10_000  # ~3,000 decimal digits: far past any count or date, still printable
MAX_ITERATIONS = 100_000  # loop items in one render, all loops together

# str methods whose first argument is a result width: (method, keyword of that argument)
PADDING_METHODS = {
    "zfill": "width",
    "ljust": "width",
    "rjust": "width",
    "center": "width",
    "expandtabs": "tabsize",
}
# %-conversions: flags, width, precision, length modifier, conversion character
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.|$)", re.DOTALL)
_DIGITS = re.compile(r"\d+")


# --- format strings ------------------------------------------------------------------


def _number_too_big(digits: str) -> bool:
    # compare as text first: int('9' * 5000) would itself be the problem
    return len(digits) > len(str(MAX_WIDTH)) or int(digits) > MAX_WIDTH


def percent_format_problem(fmt: str) -> str | None:
    """Why ``fmt % args`` could be huge, or None.

    A ``*`` width takes its value from the arguments, which the template (or a
    chat user) controls, so it is refused outright rather than bounded.
    """
    for m in _PERCENT.finditer(fmt):
        width, precision = m.group(1), m.group(2)
        for part in (width, precision):
            if part == "*":
                return "'*' widths are not allowed: write the width as a number"
            if part and _number_too_big(part):
                return f"format width {part[:12]} is too large (limit {MAX_WIDTH})"
    return None


def spec_problem(spec: str) -> str | None:
    """Why one ``str.format`` field spec (``>20``, ``.3f``) could be huge, or None."""
    for digits in _DIGITS.findall(spec):
        if _number_too_big(digits):
            return f"format width {digits[:12]} is too large (limit {MAX_WIDTH})"
    return None


def str_format_problem(fmt: str) -> str | None:
    """Why ``fmt.format(...)`` could be huge, judged from the format string alone.

    A nested field in a spec (``'{:{}}'``) takes the width from the arguments;
    it is refused, like a ``*`` width. A malformed format string is not our
    business here: formatting it raises, which is a render error.
    """
    try:
        fields = list(Formatter().parse(fmt))
    except ValueError:
        return None
    for _, name, spec, _ in fields:
        if name is None or not spec:
            continue
        if "{" in spec:
            return "nested width fields ('{:{}}') are not allowed: write the width as a number"
        problem = spec_problem(spec)
        if problem:
            return problem
    return None


# --- str methods and filters at render time ------------------------------------------------


def _grows_past(before: int, after: int) -> bool:
    """A result longer than the output limit, and longer than what it came from."""
    return after > MAX_OUTPUT_CHARS and after > before


def replaced_length(s: str, old: str, new: str, count: int = -1) -> int:
    """The length ``s.replace(old, new, count)`` would have, computed in O(len(s))."""
    hits = s.count(old) if old else len(s) + 1
    if count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def joined_length(sep: str, items: Sequence[Any]) -> int:
    """The length ``sep.join(items)`` would have (items that are not str count as 0)."""
    return sum(len(x) for x in items if isinstance(x, str)) + len(sep) * max(len(items) - 1, 0)


def _translated_length(s: str, table: Any) -> int:
    total = 0
    for ch in s:
        try:
            v = table[ord(ch)]
        except LookupError:
            total += 1
            continue
        total += len(v) if isinstance(v, str) else (0 if v is None else 1)
    return total


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], i: int, key: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(key, default)


def str_method_problem(
    s: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> str | None:
    """Why ``s.<name>(*args, **kwargs)`` would build a huge string, or None.

    Each size is computed from the arguments before the method runs, so a
    refusal costs at most one pass over ``s``.
    """
    if name in PADDING_METHODS:
        default = 8 if name == "expandtabs" else 0
        width = _arg(args, kwargs, 0, PADDING_METHODS[name], default)
        if not isinstance(width, int):
            return None  # the method itself raises TypeError
        if name == "expandtabs":
            after = len(s) + s.count("\t") * max(width, 0)  # an upper bound
            return f"expandtabs({width}) result is too long" if _grows_past(len(s), after) else None
        if width > MAX_WIDTH and width > len(s):
            return f"{name} width {width} is too large (limit {MAX_WIDTH})"
        return None
    if name == "replace":
        old, new = _arg(args, kwargs, 0, "old", None), _arg(args, kwargs, 1, "new", None)
        count = _arg(args, kwargs, 2, "count", -1)
        sized = isinstance(old, str) and isinstance(new, str) and isinstance(count, int)
        if sized and _grows_past(len(s), replaced_length(s, old, new, count)):
            return "replace result is too long"
        return None
    if name == "translate" and args:
        if _grows_past(len(s), _translated_length(s, args[0])):
            return "translate result is too long"
        return None
    if name in ("format", "format_map"):
        return str_format_problem(s)
    return None


def int_power_problem(left: Any, right: Any) -> str | None:
    """Why ``left ** right`` is too much to compute, or None."""
    if isinstance(right, int | float) and not isinstance(right, bool) and abs(right) > MAX_POWER:
        return f"exponent {right!r} is too large (limit {MAX_POWER})"
    ints = isinstance(left, int) and isinstance(right, int) and right > 0
    if ints and abs(left).bit_length() * right > MAX_INT_BITS:
        return "the power is too large a number"
    return None


def int_product_problem(left: Any, right: Any) -> str | None:
    """Why ``left * right`` of two integers is too much to compute, or None."""
    ints = isinstance(left, int) and isinstance(right, int)
    if ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
        return "the product is too large a number"
    return None


# --- the static side: literals in a template's AST -------------------------------------------


def const_number(node: nodes.Node) -> float | None:
    """The value of constant arithmetic, computed without ever computing a huge number.

    ``math.inf`` stands for "astronomically large"; None for "not a constant".
    """
    if isinstance(node, nodes.Const):
        v = node.value
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None
    if isinstance(node, nodes.Neg | nodes.Pos):
        v = const_number(node.node)
        return None if v is None else (-v if isinstance(node, nodes.Neg) else v)
    if isinstance(node, nodes.Pow | nodes.Mul | nodes.Add | nodes.Sub):
        left, right = const_number(node.left), const_number(node.right)
        if left is None or right is None:
            return None
        if math.isinf(left) or math.isinf(right):
            return math.inf
        try:
            if isinstance(node, nodes.Pow):
                if abs(right) > MAX_POWER or abs(left) > 1e6:
                    return math.inf
                return math.pow(left, right)
            if isinstance(node, nodes.Mul):
                return float(left) * right
            return float(left) + right if isinstance(node, nodes.Add) else float(left) - right
        except OverflowError:  # 999999.0 ** 64: past any float
            return math.inf
        except (ZeroDivisionError, ValueError):  # 0 ** -1, (-8) ** 0.5: the render's business
            return None
    return None


def _literal_str(node: nodes.Node | None) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


def _const_len(node: nodes.Node) -> int | None:
    """How many items a loop over ``node`` runs, when the template fixes it."""
    if isinstance(node, nodes.Const) and isinstance(node.value, str | list | tuple):
        return len(node.value)
    if isinstance(node, nodes.List | nodes.Tuple):
        return len(node.items)
    if isinstance(node, nodes.Mul):
        for seq, times in ((node.left, node.right), (node.right, node.left)):
            n, k = _const_len(seq), const_number(times)
            if n is not None and k is not None and not math.isinf(k):
                return n * max(int(k), 0)
        return None
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and not node.kwargs
    ):
        bounds = [const_number(a) for a in node.args]
        if bounds and all(b is not None and not math.isinf(b) for b in bounds):
            try:
                return len(range(*(int(b) for b in bounds if b is not None)))
            except (ValueError, OverflowError):
                return None
    return None


def _call_arg(node: nodes.Call | nodes.Filter, i: int, key: str) -> nodes.Node | None:
    if len(node.args) > i:
        return node.args[i]
    for kw in node.kwargs:
        if kw.key == key:
            return kw.value
    return None


def _width_problem(what: str, arg: nodes.Node | None, literal_only: bool) -> str | None:
    if arg is None:
        return None
    value = const_number(arg)
    if value is None:
        if literal_only:
            return f"{what}: the width must be a literal number up to {MAX_WIDTH}"
        return None
    if abs(value) > MAX_WIDTH:
        return f"{what} width is too large (limit {MAX_WIDTH})"
    return None


def _replacement_problem(what: str, new: nodes.Node | None) -> str | None:
    if new is None or const_number(new) is not None:
        return None  # no replacement argument, or a number (datetime.replace(2020, 1))
    literal = _literal_str(new)
    if literal is None:
        return f"{what}: the replacement must be a literal string of up to {MAX_WIDTH} characters"
    if len(literal) > MAX_WIDTH:
        return f"{what}: the replacement is too long (limit {MAX_WIDTH} characters)"
    return None


def _method_problem(node: nodes.Call) -> str | None:
    if not isinstance(node.node, nodes.Getattr):
        return None
    name = node.node.attr
    if name in PADDING_METHODS:
        return _width_problem(f".{name}()", _call_arg(node, 0, PADDING_METHODS[name]), True)
    if name == "replace":
        return _replacement_problem(".replace()", _call_arg(node, 1, "new"))
    fmt = _literal_str(node.node.node)
    if name in ("format", "format_map") and fmt is not None:
        return str_format_problem(fmt)
    return None


def _filter_problem(node: nodes.Filter) -> str | None:
    if node.name == "format":
        fmt = _literal_str(node.node)
        return percent_format_problem(fmt) if fmt is not None else None
    if node.name == "center":
        return _width_problem("center", _call_arg(node, 0, "width"), True)
    if node.name in ("indent", "wordwrap"):
        return _width_problem(node.name, _call_arg(node, 0, "width"), False)
    if node.name == "replace":
        return _replacement_problem("replace", _call_arg(node, 1, "new"))
    return None


def _pow_problem(node: nodes.Pow) -> str | None:
    exp = const_number(node.right)
    if exp is not None and abs(exp) > MAX_POWER:
        return f"exponent is too large (limit {MAX_POWER})"
    base = node.left
    while isinstance(base, nodes.Neg | nodes.Pos):
        base = base.node
    if isinstance(base, nodes.Pow):
        value = const_number(node)
        if value is None or math.isinf(value):
            return "a power of a power can be astronomically large: compute it in steps"
    return None


def node_problems(node: nodes.Node) -> Iterator[tuple[str, str]]:
    """(message, needle) for each limit one AST node provably breaks.

    ``needle`` is the text to point the diagnostic's column at.
    """
    problem: str | None = None
    needle = ""
    if isinstance(node, nodes.Call):
        problem = _method_problem(node)
        needle = node.node.attr if isinstance(node.node, nodes.Getattr) else ""
    elif isinstance(node, nodes.Filter):
        problem, needle = _filter_problem(node), node.name
    elif isinstance(node, nodes.Mod):
        fmt = _literal_str(node.left)
        problem, needle = (percent_format_problem(fmt) if fmt is not None else None), "%"
    elif isinstance(node, nodes.Pow):
        problem, needle = _pow_problem(node), "**"
    elif isinstance(node, nodes.Mul):
        for side, other in ((node.left, node.right), (node.right, node.left)):
            n = const_number(side)
            if n is not None and abs(n) > MAX_OUTPUT_CHARS and const_number(other) is None:
                problem, needle = "repetition is too large (it would build a huge string)", "*"
                break
    if problem:
        yield problem, needle


def loop_problems(ast: nodes.Template) -> Iterator[tuple[int, str]]:
    """(line, message) for loops whose fixed sizes multiply past :data:`MAX_ITERATIONS`.

    Only sizes the template itself fixes (literals, ``'x' * 20000``,
    ``range(1000)``) count; a loop over a variable counts as one item here and
    is bounded at render time instead.
    """
    stack: list[tuple[nodes.Node, int]] = [(ast, 1)]
    while stack:
        node, runs = stack.pop()
        if isinstance(node, nodes.For):
            size = _const_len(node.iter)
            if size is not None:
                runs *= max(size, 1)
                if runs > MAX_ITERATIONS:
                    yield (
                        node.lineno,
                        (f"the loops run more than {MAX_ITERATIONS:,} times in one render"),
                    )
                    continue
        stack.extend((child, runs) for child in node.iter_child_nodes())
