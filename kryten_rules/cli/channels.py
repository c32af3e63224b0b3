"""Choosing a channel of a multi-channel config on the command line.

``explain`` and ``replay`` read one rule set; with ``channels:`` there are
several, so ``--channel`` names the one to read (optional when the config has
one channel). ``validate`` checks every channel's rule set, each on its own:
two channels' rules are two rule sets (a persona each, ids that may repeat),
and checked as one they would report conflicts that ``run`` never meets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kryten_rules.cli.app import EXIT_USAGE
from kryten_rules.config import ServiceConfig
from kryten_rules.wire import normalize_token


def one_channel(config: ServiceConfig | None, name: str | None) -> ServiceConfig | None:
    """``config`` as the one-channel config of ``--channel`` (exits 2 if it cannot be)."""
    if config is None:
        if name is not None:
            click.echo("error: --channel needs --config (the channels are the config's)", err=True)
            sys.exit(EXIT_USAGE)
        return None
    channels = config.channel_configs
    known = ", ".join(c.label for c in channels)
    if name is None:
        if len(channels) == 1:
            return config
        click.echo(f"error: the config serves several channels; give --channel ({known})", err=True)
        sys.exit(EXIT_USAGE)
    domain, _, channel = name.rpartition("/")
    for c in channels:
        if normalize_token(c.channel) == normalize_token(channel) and domain in (
            "",
            c.cytube.domain,
        ):
            return config.for_channel(c)
    click.echo(f"error: the config has no channel {name!r} (channels: {known})", err=True)
    sys.exit(EXIT_USAGE)


def per_channel_rules(config: ServiceConfig) -> list[tuple[str, list[str], ServiceConfig]]:
    """``(label, rule paths, one-channel config)`` for each channel of a ``channels:``
    config with more than one; empty for a one-channel config (checked as before)."""
    channels = config.channel_configs
    if len(channels) < 2:
        return []
    return [(c.label, [str(p) for p in c.rules], config.for_channel(c)) for c in channels]


def configs_among(paths: list[str]) -> list[ServiceConfig]:
    """The loadable service configs among ``paths`` (files only; others are checked as
    they are)."""
    from kryten_rules.compile.load import load_config
    from kryten_rules.diagnostics import RuleSetError
    from kryten_rules.ruleformat.schema import file_kind
    from kryten_rules.ruleformat.tree import YAML_SUFFIXES
    from kryten_rules.ruleformat.yamlload import load_file

    out = []
    for raw in paths:
        p = Path(raw)
        if not (p.is_file() and p.suffix in YAML_SUFFIXES):
            continue
        doc = load_file(p)
        if doc.root is None or file_kind(doc.root) != "config":
            continue
        try:
            out.append(load_config(p))
        except RuleSetError:
            continue  # the config's own errors are reported when it is checked
    return out
