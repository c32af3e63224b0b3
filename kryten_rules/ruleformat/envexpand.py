"""``${VAR}`` and ``${VAR:-default}`` in the service config's string values.

The other Kryten services' configs take deployment-specific values (the NATS
URL, a user name) from the environment this way, so operators expect it here
too. Expansion runs on the loaded YAML tree, before the schema check, so a
value the environment supplies is checked like one written in the file, and a
problem is reported at the value's own line and column.

Rules, kept few so that a config reads the same to everyone:

* ``${NAME}`` is the variable's value; an unset variable is an error (a
  silently empty NATS URL or user name is a worse failure later).
* ``${NAME:-default}`` is the default when the variable is unset *or empty*,
  as in the shell. The default is literal text up to the first ``}``.
* ``$${`` is a literal ``${``. Any other ``$`` is just a dollar sign, so text
  written before expansion existed (``$5 a month``) keeps its meaning.
* Keys ending in ``_env`` (``password_env``, ``api_key_env``) name a
  variable: there a ``${`` is an error, not a lookup, because expanding it
  would turn the *name* of a secret into its value.
* Only string values are expanded; keys, numbers and booleans are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from kryten_rules.diagnostics import Diagnostic, error
from kryten_rules.errors import KrytenRulesError
from kryten_rules.ruleformat.yamlload import Node

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_KEY_SUFFIX = "_env"


class ExpandProblem(KrytenRulesError, ValueError):
    """Why a string cannot be expanded: a diagnostic ``code``, and ``offset`` in the string.

    Diagnostics point at the value's start: a quoted or folded scalar's source
    text is not the string, so an offset into one would be a guess.
    """

    def __init__(self, code: str, message: str, offset: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.offset = offset
        self.hint = hint


def expand(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every ``${NAME}`` / ``${NAME:-default}`` replaced from ``env``.

    Raises :class:`ExpandProblem` for an unset variable without a default or a
    ``${`` that is not a well-formed reference. Linear in ``len(text)``.
    """
    if "${" not in text:
        return text
    out: list[str] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            return "".join(out)
        if start > i and text[start - 1] == "$":  # "$${": an escaped, literal "${"
            out.append(text[i : start - 1] + "${")
            i = start + 2
            continue
        out.append(text[i:start])
        end = text.find("}", start + 2)
        if end < 0:
            raise ExpandProblem(
                "env-syntax",
                # not the text itself: a URL in it may carry a password
                f"`${{` at character {start + 1} has no closing `}}`",
                start,
                "write ${NAME} or ${NAME:-default}; $${ is a literal ${",
            )
        body = text[start + 2 : end]
        name, sep, default = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise ExpandProblem(
                "env-syntax",
                f"`${{{body}}}` is not a variable reference",
                start,
                "a name is letters, digits and _, not starting with a digit: "
                "${NAME} or ${NAME:-default}",
            )
        value = env.get(name)
        if sep:
            out.append(value if value else default)
        elif value is None:
            raise ExpandProblem(
                "env-unset",
                f"environment variable {name} is not set (used as ${{{name}}})",
                start,
                f"set {name}, or give a default: ${{{name}:-default}}",
            )
        else:
            out.append(value)
        i = end + 1


def _strings(node: Node, key: str | None) -> Iterator[tuple[Node, str | None]]:
    """Every string scalar under ``node``, with the mapping key it is the value of."""
    if node.is_map:
        for k, child in node.items():
            yield from _strings(child, k)
    elif node.is_seq:
        for child in node.value:
            yield from _strings(child, key)
    elif isinstance(node.value, str):
        yield node, key


def expand_config(root: Node, env: Mapping[str, str]) -> list[Diagnostic]:
    """Expand every string value of a config tree in place; the problems as diagnostics.

    A value that cannot be expanded is left as written (the schema then sees
    what the operator wrote) and reported at its own position.
    """
    diags: list[Diagnostic] = []
    for node, key in _strings(root, None):
        text: str = node.value
        if key is not None and key.endswith(ENV_KEY_SUFFIX):
            if "${" in text:
                diags.append(
                    error(
                        "env-in-env-key",
                        f"`{key}` names an environment variable; `${{` does not belong in it",
                        node.span,
                        f"write the variable's name itself: `{key}: VARIABLE_NAME`",
                    )
                )
            continue
        try:
            node.value = expand(text, env)
        except ExpandProblem as exc:
            diags.append(error(exc.code, exc.message, node.span, exc.hint))
    return diags

