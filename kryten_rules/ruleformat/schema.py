"""Stage 2a, check against the JSON Schemas in ``schemas/``.

The schemas are the single description of the file formats: editors use them
for completion (``# yaml-language-server: $schema=...``), and ``validate`` uses
them here. Each JSON Schema error is mapped back to the YAML node it concerns
and given a stable, specific code, so "unknown key" points at the key and
offers the closest known key.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from kryten_rules.diagnostics import Diagnostic, Span, error
from kryten_rules.ruleformat.yamlload import Node
from kryten_rules.units import RANKS

KINDS = ("rules", "config", "test")
# The key that tells the three kinds of file apart.
VERSION_KEYS = {
    "kryten_rules": "rules",
    "kryten_rules_config": "config",
    "kryten_rules_test": "test",
}


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind of file (``rules``, ``config`` or ``test``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema {kind!r}; one of {', '.join(KINDS)}")
    text = (
        resources.files("kryten_rules")
        .joinpath("schemas", f"{kind}.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def _inline(node: Any, defs: dict[str, Any], origin: dict[int, str]) -> Any:
    """The schema with every local ``$ref`` replaced by what it points to.

    The published schemas keep their ``$defs`` (editors show them); the
    validator gets this flat copy because resolving a reference costs more
    than checking the value, and a rule file has thousands of them.
    ``origin`` remembers which definition each inlined copy came from.
    """
    if isinstance(node, list):
        return [_inline(n, defs, origin) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
        name = ref[8:]
        target = _inline(defs[name], defs, origin)
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        origin[id(merged)] = name
        return merged
    return {k: _inline(v, defs, origin) for k, v in node.items() if k != "$defs"}


@cache
def _flat(kind: str) -> tuple[dict[str, Any], dict[int, str]]:
    doc = schema(kind)
    origin: dict[int, str] = {}
    flat = _inline(doc, doc.get("$defs", {}), origin)
    return flat, origin


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(_flat(kind)[0])


def file_kind(root: Node) -> str | None:
    """Which kind of file a document is, by its version key."""
    if not root.is_map:
        return None
    for key, kind in VERSION_KEYS.items():
        if key in root.value:
            return kind
    return None


def did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _closest_rank(word: str) -> str | None:
    close = difflib.get_close_matches(word.strip().lower(), list(RANKS), n=1, cutoff=0.7)
    return f"did you mean {close[0]!r}?" if close else None


def _dotted(path: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else p))
    return "".join(parts)


# A rule is named by its id, a rule-test case by its name, rather than by position.
_NAMED = {"rules": ("id", "rule"), "cases": ("name", "case")}


def _what(path: tuple[str | int, ...], root: Node | None = None) -> str:
    """Where in the document: ``cooldown.rule of rule 'help'``, not ``rules[2].cooldown.rule``."""
    if root is not None and len(path) >= 2 and path[0] in _NAMED and isinstance(path[1], int):
        key, noun = _NAMED[str(path[0])]
        item = root.at(path[:2])
        name = item.get(key) if item is not None and item.is_map else None
        if name is not None and isinstance(name.value, str) and name.value:
            rest = _dotted(path[2:])
            return f"{rest} of {noun} {name.value!r}" if rest else f"{noun} {name.value!r}"
    return _dotted(path) or "the document"


def _is_def(err: ValidationError, kind: str, name: str) -> bool:
    return _flat(kind)[1].get(id(err.schema)) == name


def _map_error(err: ValidationError, root: Node, kind: str) -> Iterator[Diagnostic]:
    path = tuple(err.absolute_path)
    node = root.at(path)
    where = _what(path, root)
    key = path[-1] if path else None
    # A failing key's own span reads better than its value's for "wrong kind of value".
    parent = root.at(path[:-1]) if path else root
    key_span = parent.key_span(key) if isinstance(key, str) else node.span
    v = err.validator

    if v == "additionalProperties":
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        known = sorted(schema.get("properties", {}))
        for extra in sorted(set(node.value) - set(known)) if node.is_map else []:
            if f"{extra}_env" in known:  # `password: s3cret` where `password_env` is known
                # the same stable code; the line is not shown, it holds the secret
                yield _unquoted(
                    "unknown-key",
                    f"unknown key {extra!r} in {where}: a secret is never written in the "
                    "config, only the name of the environment variable that holds it",
                    node.key_span(extra),
                    f"did you mean {extra + '_env'!r}? Put the secret in an environment "
                    f"variable and name that: `{extra}_env: VARIABLE`",
                )
                continue
            hint = did_you_mean(extra, known)
            yield error(
                "unknown-key",
                f"unknown key {extra!r} in {where}",
                node.key_span(extra),
                hint or (f"known keys: {', '.join(known)}" if known else None),
            )
        return
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        yield error("missing-key", f"{where} needs the key {missing!r}", node.span)
        return
    if v == "const" and path and path[0] in VERSION_KEYS:
        yield error(
            "bad-version",
            f"unsupported version {err.instance!r}; this kryten-rules reads version 1",
            node.span,
        )
        return
    if key == "probability" and v in ("minimum", "maximum"):
        yield error(
            "probability-range",
            f"probability {err.instance!r} is outside 0..1",
            node.span,
            "0 never fires, 1 always fires (once every other gate passed)",
        )
        return
    if _is_def(err, kind, "duration") or (v == "pattern" and "d)?" in str(err.validator_value)):
        yield error(
            "bad-duration",
            f"{where}: {err.instance!r} is not a duration",
            node.span,
            "use e.g. 45s, 5m, 1h30m, 2d, or a number of seconds",
        )
        return
    if _is_def(err, kind, "rank"):
        yield error(
            "bad-rank",
            f"{where}: {err.instance!r} is not a CyTube rank",
            node.span,
            (_closest_rank(err.instance) if isinstance(err.instance, str) else None)
            or "a number 0..255, or guest, registered, moderator, admin, owner, founder, siteadmin",
        )
        return
    if v == "pattern" and isinstance(key, str) and key.endswith("_env"):
        # not the value: a pasted secret where its variable's name belongs
        if "${" in str(err.instance):
            return  # envexpand's env-in-env-key says it better
        yield _unquoted(
            "bad-env-name",
            f"{where} must be the name of an environment variable "
            "(letters, digits and _, not starting with a digit)",
            node.span,
            "the name, not the secret: e.g. NATS_PASSWORD, with the value in the environment",
        )
        return
    if v == "pattern" and key == "id":
        yield error(
            "bad-id",
            f"rule id {err.instance!r} must be lowercase letters, digits, '-' or '_', "
            "starting with a letter (at most 64)",
            node.span,
        )
        return
    if v == "enum":
        choices = [str(c) for c in err.validator_value]  # type: ignore[union-attr]
        hint = did_you_mean(str(err.instance), choices) or f"one of: {', '.join(choices)}"
        yield error("bad-value", f"{where}: {err.instance!r} is not allowed", node.span, hint)
        return
    if v == "type":
        value = err.validator_value
        want = " or ".join(value) if isinstance(value, list) else str(value)
        yield error(
            "wrong-type",
            f"{where} must be {_article(want)}, not {_json_type(err.instance)}",
            node.span if node is not root or not path else key_span,
        )
        return
    if v in ("minProperties", "minItems", "minLength"):
        yield error("empty-value", f"{where} must not be empty", node.span)
        return
    yield error("schema", f"{where}: {err.message}", node.span)


def _unquoted(code: str, message: str, span: Span, hint: str) -> Diagnostic:
    """An error whose source line is not shown: it may hold a secret."""
    return replace(error(code, message, span, hint), quote=False)


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def check_schema(root: Node, kind: str) -> list[Diagnostic]:
    """Every schema problem of one document, each at its node."""
    out: list[Diagnostic] = []
    seen: set[tuple[str, int, int, str]] = set()
    for err in _validator(kind).iter_errors(root.plain()):
        for d in _map_error(err, root, kind):
            k = (d.code, d.span.line, d.span.column, d.message)
            if k not in seen:
                seen.add(k)
                out.append(d)
    return out
