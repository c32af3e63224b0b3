"""A service config names its channels once each, in one way.

``channels:`` replaces ``cytube`` + ``rules`` (those are a one-entry list):
a config with both would leave the operator guessing which one runs, and one
with neither serves nothing. Kryten-Robot's event subjects carry the channel
but not the domain (``kryten.events.cytube.{channel}.>``), so two entries
whose channel names normalise alike would receive each other's chat: that is
refused too, whatever their domains.
"""

from __future__ import annotations

from collections.abc import Iterator

from kryten_rules.codes import Code
from kryten_rules.diagnostics import Diagnostic, error
from kryten_rules.ruleformat.yamlload import Node, seq
from kryten_rules.wire import normalize_token


def _unsubscribable(name: Node | None) -> Iterator[Diagnostic]:
    """A channel name Kryten-Robot's subjects reduce to nothing (``...``, ``*``, ``>>``):
    no subject can carry its events (it was a traceback at start)."""
    if name is not None and isinstance(name.value, str) and not normalize_token(name.value):
        yield error(
            "bad-value",
            f"channel {name.value!r}: nothing is left of it in a NATS subject (Kryten-Robot "
            "drops dots, spaces to hyphens, wildcards and punctuation), so no event can reach it",
            name.span,
            "use the channel's name as CyTube has it",
        )


def check_channels(root: Node) -> Iterator[Diagnostic]:
    """``cytube``/``rules`` or ``channels``, exactly one; no channel twice; every
    channel name usable in a subject."""
    cytube = root.get("cytube")
    if cytube is not None and cytube.is_map:
        yield from _unsubscribable(cytube.get("channel"))
    for entry in seq(root.get("channels")):
        if entry.is_map:
            yield from _unsubscribable(entry.get("channel"))
    channels = root.get("channels")
    single = [k for k in ("cytube", "rules") if root.get(k) is not None]
    if channels is None:
        if root.get("cytube") is None:
            yield error(
                Code.NO_CHANNEL,
                "the config names no channel: give `cytube` (with `rules`) or `channels`",
                root.span,
            )
        return
    for key in single:
        node = root.get(key)
        assert node is not None
        yield error(
            Code.CHANNELS_AND_CYTUBE,
            f"`{key}` and `channels` are both given: `channels` replaces `cytube` + `rules`",
            node.span,
            "move this channel into the `channels` list, with its own `rules`",
        )
    seen: dict[str, str] = {}
    for entry in seq(channels):
        name = entry.get("channel") if entry.is_map else None
        if name is None or not isinstance(name.value, str):
            continue  # the schema reports it
        token = normalize_token(name.value)
        domain = entry.get("domain")
        where = f"{domain.value if domain is not None else 'cytu.be'}/{name.value}"
        if token in seen:
            yield error(
                Code.DUPLICATE_CHANNEL,
                f"channel {where!r} is listed twice (as {seen[token]!r} before); "
                "Kryten-Robot's subjects name the channel, not the domain",
                name.span,
                "each channel once: one entry serves it with its rules",
            )
        else:
            seen[token] = where
