"""Where ``run`` and ``validate`` find the service config when ``--config`` is not given.

The Kryten services keep their configs under ``/etc/kryten/kryten-{service}/``;
a checkout or ``kryten-rules init`` directory has ``./kryten-rules.yaml``. The
working directory wins, so a developer's copy is never shadowed by the host's.
The command says which file it used: a service that silently read the other
one is an afternoon lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kryten_rules.errors import KrytenRulesError

DEFAULT_CONFIG_PATHS = (Path("kryten-rules.yaml"), Path("/etc/kryten/kryten-rules/config.yaml"))


class NoConfigFound(KrytenRulesError, LookupError):
    """No ``--config`` and none of the default paths exists; the message lists them."""


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    path: str
    given: bool  # --config named it; False: found at a default path

    def label(self) -> str:
        """The path and how it was chosen, e.g. ``kryten-rules.yaml (the default path; ...)``."""
        how = "--config" if self.given else "the default path; --config overrides it"
        return f"{self.path} ({how})"

    def describe(self) -> str:
        return f"using the service config {self.label()}"


def find_config(
    given: str | None, candidates: tuple[Path, ...] = DEFAULT_CONFIG_PATHS
) -> ConfigChoice | None:
    """:func:`choose_config` for commands that work without a config (``explain``):
    None instead of an error when there is none."""
    try:
        return choose_config(given, candidates)
    except NoConfigFound:
        return None


def no_config_label(candidates: tuple[Path, ...] = DEFAULT_CONFIG_PATHS) -> str:
    """What a command without a config says instead of a path."""
    return f"none (no --config, and no {' or '.join(str(p) for p in candidates)})"


def choose_config(
    given: str | None, candidates: tuple[Path, ...] = DEFAULT_CONFIG_PATHS
) -> ConfigChoice:
    """``given`` as is, else the first of ``candidates`` that is a file."""
    if given is not None:
        return ConfigChoice(given, True)
    for path in candidates:
        if path.is_file():
            return ConfigChoice(str(path), False)
    tried = ", ".join(str(p) for p in candidates)
    raise NoConfigFound(
        f"no service config: give --config PATH, or put one at {tried} "
        "(`kryten-rules init DIR` writes a starting one)"
    )
