"""How the JetStream state backend (``kvstate.py``) writes keys and values.

Pure functions, no NATS: a :data:`~kryten_rules.engine.state.Key` to a KV key
and back, a :class:`~kryten_rules.engine.state.Cooldown` or
:class:`~kryten_rules.engine.state.Counter` to compact JSON and back.

Keys. One bucket can hold many channels: every key starts with the CyTube
domain and the channel, then the state key's elements (``("user_rule",
"alice", "mention")`` of cytu.be/TestChannel is
``cytu=2Ebe.TestChannel.user_rule.alice.mention``). KV keys allow only
``[-/_=.a-zA-Z0-9]`` and ``.`` separates tokens, so each element keeps its
letters, digits, ``-`` and ``_`` and writes every other byte of its UTF-8 as
``=XX`` (hex); an empty element is ``=``. The encoding is one-to-one, so a key read
back is the tuple that was written (names with spaces, dots, emoji, and the
shadow namespace's ``~shadow`` included).

Values are compact JSON: ``{"cd":[fired_at,duration],"exp":E,"by":ID}`` for a
cooldown, ``{"n":[t1_ms,step_ms,...],"keep":K,"exp":E,"by":ID}`` for a
budget's timestamps (milliseconds, each after the first as the step from the
one before); ``exp`` is when the entry is over (wall-clock seconds) and ``by``
the writing instance, so a watcher can skip its own writes. A budget too big
for one NATS message (``per_day: 1000000``) keeps its newest timestamps in
the bucket and the rest in memory only, with a warning.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from kryten_rules.engine.state import Cooldown, Counter, Key, Value

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- keys ---------------------------------------------------------------------------


def encode_token(text: str) -> str:
    """One key element as a KV key token (see the module docstring)."""
    if not text:
        return "="
    out: list[str] = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def decode_token(token: str) -> str:
    """The inverse of :func:`encode_token`; ``ValueError`` for a token it cannot make."""
    if token == "=":
        return ""
    raw = bytearray()
    i, n = 0, len(token)
    while i < n:
        ch = token[i]
        if ch == "=":
            pair = token[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in "0123456789ABCDEF" for c in pair):
                raise ValueError(f"bad escape in key token {token!r}")
            raw.append(int(pair, 16))
            i += 3
        elif ch in _SAFE:
            raw.append(ord(ch))
            i += 1
        else:
            raise ValueError(f"character {ch!r} in key token {token!r}")
    return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError


def channel_prefix(domain: str, channel: str) -> str:
    """The KV key prefix (with its final dot) of one channel's state."""
    return f"{encode_token(domain)}.{encode_token(channel)}."


def encode_key(prefix: str, key: Key) -> str:
    return prefix + ".".join(encode_token(part) for part in key)


def decode_key(prefix: str, kv_key: str) -> Key:
    if not kv_key.startswith(prefix) or len(kv_key) == len(prefix):
        raise ValueError(f"key {kv_key!r} is not under {prefix!r}")
    return tuple(decode_token(t) for t in kv_key[len(prefix) :].split("."))


# --- values -------------------------------------------------------------------------


def to_ms(t: float) -> int:
    """A timestamp as whole milliseconds: how budgets are stored and merged."""
    return round(t * 1000)


def encode_value(value: Value, writer: str) -> bytes:
    """Compact JSON. A budget's timestamps are milliseconds, the first one
    absolute and each next one as the step from the one before, so a budget
    of 100,000 firings stays a few hundred kilobytes."""
    doc: dict[str, Any]
    if isinstance(value, Cooldown):
        doc = {"cd": [value.fired_at, value.duration], "exp": value.expires}
    else:
        ms = sorted(to_ms(t) for t in value.times)
        steps = [ms[0], *(b - a for a, b in itertools.pairwise(ms))] if ms else []
        doc = {"n": steps, "keep": value.keep, "exp": value.expires}
    doc["by"] = writer
    return json.dumps(doc, separators=(",", ":")).encode()


def _number(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    return float(x)


def _steps(steps: list[Any]) -> tuple[float, ...]:
    total = 0
    out: list[float] = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or (out and step < 0):
            raise ValueError("n is not [first ms, steps in ms...]")
        total += step
        out.append(total / 1000)
    return tuple(out)


def decode_value(data: bytes) -> tuple[Value, str]:
    """A stored value and who wrote it; ``ValueError`` for anything else."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    writer = str(doc.get("by", ""))
    expires = _number(doc.get("exp"))
    if "cd" in doc:
        cd = doc["cd"]
        if not isinstance(cd, list) or len(cd) != 2:
            raise ValueError("cd is not [fired_at, duration]")
        return Cooldown(_number(cd[0]), _number(cd[1]), expires), writer
    steps, keep = doc.get("n"), doc.get("keep")
    if not isinstance(steps, list) or isinstance(keep, bool) or not isinstance(keep, int):
        raise ValueError("neither a cooldown (cd) nor a budget (n, keep)")
    return Counter(_steps(steps), max(1, keep), expires), writer


def fit_value(value: Value, writer: str, limit: int) -> tuple[bytes, int]:
    """``value`` encoded in at most ``limit`` bytes, and how many timestamps
    were left out to fit (the oldest: a budget bigger than a NATS message)."""
    data = encode_value(value, writer)
    if len(data) <= limit or not isinstance(value, Counter):
        return data, 0
    times = value.times
    keep = len(times)
    while len(data) > limit and keep > 0:
        keep = min(keep - 1, int(keep * limit / len(data) * 0.95))
        data = encode_value(Counter(times[len(times) - keep :], value.keep, value.expires), writer)
    return data, len(times) - keep
