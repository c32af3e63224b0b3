"""``groups`` in a template: a regex's capture groups by number, and by name.

docs/rules.md "Template variables": ``groups[0]`` is the first group and a
named group ``(?P<film>...)`` is also ``groups.film``. A rule may have several
regexes; validate accepts a group that *any* of them has (``ruleformat.
groupcheck``), so a template can use ``groups.film`` whichever matched. The
regex that matched may lack it, or not take part in it: that reads as an empty
string, as an unmatched group always has, rather than failing the render.

The class is deliberately small for the sandbox: no public methods at all
(``collections.abc.Sequence`` would add ``index`` and ``count``, which would
hide groups of those names), so every ``groups.x`` that Jinja cannot find as
an attribute falls through to :meth:`__getitem__`, which answers only the
rule's group names; everything else stays undefined (an error under
``StrictUndefined``) and ``_`` names are refused by the sandbox before that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence


class Groups:
    """The capture groups of the regex that matched, as a template reads them."""

    __slots__ = ("_named", "_values", "_width")

    def __init__(
        self,
        values: Sequence[str] = (),
        named: Mapping[str, str] | None = None,
        width: int = 0,
        names: frozenset[str] = frozenset(),
    ) -> None:
        """``values``: the groups of the match (``""`` for one that did not take part);
        ``named``: the matched regex's named groups; ``width`` and ``names``: the most
        groups and every group name of the rule's regexes, which read as ``""`` when
        the regex that matched has fewer."""
        self._values: tuple[str, ...] = tuple(values)
        known = dict.fromkeys(names, "")
        known.update(named or {})
        self._named: dict[str, str] = known  # never handed out: the sandbox cannot reach it
        self._width = max(width, len(self._values))

    def __reduce__(self) -> tuple[type[Groups], tuple[tuple[str, ...], dict[str, str], int]]:
        """Pickled to the render worker (``dispatch.renderworker``) as its parts."""
        return (Groups, (self._values, dict(self._named), self._width))

    def __getitem__(self, key: object) -> object:
        if isinstance(key, bool):  # True is 1 to Python; not a group to a moderator
            raise KeyError(key)
        if isinstance(key, int):
            if 0 <= key < len(self._values) or -len(self._values) <= key < 0:
                return self._values[key]
            if len(self._values) <= key < self._width:
                return ""
            raise IndexError(f"no group {key}: the regex has {self._width}")
        if isinstance(key, slice):
            return list(self._values[key])
        if isinstance(key, str) and not key.startswith("_") and key in self._named:
            return self._named[key]
        raise KeyError(key)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __contains__(self, item: object) -> bool:
        return item in self._values

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Groups):
            return self._values == other._values and dict(self._named) == dict(other._named)
        if isinstance(other, list | tuple):
            return list(self._values) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __str__(self) -> str:
        """As the plain list it was before named groups: ``['Kick', '12']``."""
        return str(list(self._values))

    def __repr__(self) -> str:
        return f"Groups({list(self._values)!r}, {dict(self._named)!r})"


def map_groups(groups: Groups | Sequence[str], fn: Callable[[str], str]) -> Groups:
    """``groups`` with ``fn`` applied to every value, names kept (a module function,
    not a method: a method would hide a group of its name)."""
    if not isinstance(groups, Groups):
        return Groups([fn(g) for g in groups])
    named = {k: fn(v) for k, v in groups._named.items()}
    return Groups([fn(g) for g in groups._values], named, groups._width)


NO_GROUPS = Groups()

__all__ = ["NO_GROUPS", "Groups", "map_groups"]
