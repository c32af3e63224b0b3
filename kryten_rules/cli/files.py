"""``validate``, ``schema`` and ``init``: the commands about rule files themselves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kryten_rules.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STDIN,
    STDIN_NAME,
    chosen_config,
    config_or_exit,
    config_rules,
    echo_diagnostics,
    info,
    main,
    read_stdin_to_file,
)
from kryten_rules.cli.channels import configs_among, per_channel_rules
from kryten_rules.diagnostics import format_github, format_json

if TYPE_CHECKING:
    from kryten_rules.compile.load import Checked
    from kryten_rules.config import ServiceConfig


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Service config: rules' chains must exist in it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option("--strict", is_flag=True, help="Warnings fail the run too.")
def validate(paths: tuple[str, ...], config_path: str | None, fmt: str, strict: bool) -> None:
    """Check rule files, service configs and rule tests; report every problem at once.

    PATHS are files or directories (all *.yaml / *.yml below them); `-` reads
    one file from standard input. A service config brings the rules it points
    at: `validate kryten-rules.yaml` checks what `run` would load. Without
    PATHS: the config `run` would use (./kryten-rules.yaml, else
    /etc/kryten/kryten-rules/config.yaml).
    """
    from dataclasses import replace

    from kryten_rules.compile.load import check_paths

    paths = paths or (config_path or chosen_config(None),)  # --config alone: check that one

    if list(paths).count(STDIN) > 1:
        click.echo("error: `-` (standard input) can be given once", err=True)
        sys.exit(EXIT_USAGE)
    missing = [p for p in paths if p != STDIN and not Path(p).exists()]
    if missing:
        click.echo(f"error: no such file or directory: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)
    config = config_or_exit(config_path)
    stdin_file = read_stdin_to_file() if STDIN in paths else None
    try:
        names = [str(stdin_file) if p == STDIN else p for p in paths]
        checked = check_paths(names + config_rules(names), config=config)
        per_channel = channel_checks(names, config)
    finally:
        if stdin_file is not None:
            stdin_file.unlink(missing_ok=True)
    # a file given and also a channel's is checked twice: reported once
    diags = list(
        dict.fromkeys(checked.diagnostics + [d for c in per_channel for d in c.diagnostics])
    )
    if stdin_file is not None:
        diags = [
            replace(d, span=replace(d.span, file=STDIN_NAME))
            if d.span.file == str(stdin_file)
            else d
            for d in diags
        ]
    if fmt == "json":
        click.echo(format_json(diags))
    elif fmt == "github":
        if diags:
            click.echo(format_github(diags))
    else:
        every = [checked, *per_channel]
        n_files = sum(len(c.rule_files) + len(c.configs) + len(c.tests) for c in every)
        if diags:
            echo_diagnostics(diags, err=False)
        else:
            n_rules = sum(len(rf.rules) for c in every for rf in c.rule_files)
            where = f" in {len(per_channel)} channels" if per_channel else ""
            info(f"ok: {n_files} file(s), {n_rules} rule(s){where}, no problems")
    errors = any(d.is_error for d in diags)
    sys.exit(EXIT_FAILED if errors or (strict and diags) else EXIT_OK)


def channel_checks(names: list[str], config: ServiceConfig | None) -> list[Checked]:
    """Each channel's rule set of every multi-channel config among ``names`` and
    ``--config``, checked on its own with that channel's config."""
    from kryten_rules.compile.load import check_paths

    configs = configs_among(names) + ([config] if config is not None else [])
    seen: set[str] = set()
    out = []
    for cfg in configs:
        if str(cfg.path) in seen:
            continue
        seen.add(str(cfg.path))
        for _label, rules, one in per_channel_rules(cfg):
            out.append(check_paths(rules, config=one))
    return out


@main.command()
@click.argument("kind", type=click.Choice(["rules", "config", "test"]), default="rules")
def schema(kind: str) -> None:
    """Print the JSON Schema of rule files, the service config or rule tests."""
    from kryten_rules.ruleformat.schema import schema as get_schema

    click.echo(json.dumps(get_schema(kind), indent=2))


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that are already there.")
def init(directory: str, force: bool) -> None:
    """Write a working project into DIRECTORY (default: here).

    The service config (kryten-rules.yaml), the default persona's rules/ and
    prompts/, a rule-test file that passes, a CI workflow example
    (.github/workflows/rules.yml) and the editor schemas. Files that are
    already there are left alone unless --force.
    """
    from kryten_rules.tools.project import existing, plan_project, write_project

    target = Path(directory)
    if target.exists() and not target.is_dir():
        click.echo(f"error: {directory!r} is not a directory", err=True)
        sys.exit(EXIT_USAGE)
    plan = plan_project()
    there = existing(target, plan)
    if there and not force:
        names = ", ".join(str(p) for p in there[:5]) + (" ..." if len(there) > 5 else "")
        click.echo(
            f"error: {len(there)} file(s) already exist in {directory!r}: {names}\n"
            "nothing was written; use --force to overwrite them",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    written = write_project(target, plan)
    cd = "" if directory == "." else f"  cd {directory}\n"
    info(
        f"wrote {len(written)} files into {directory!r}. Next:\n{cd}"
        "  kryten-rules validate kryten-rules.yaml   # the config and its rules\n"
        "  kryten-rules test tests/                 # the rule tests\n"
        "  kryten-rules chat --demo                 # a scripted conversation, offline\n"
        "  kryten-rules chat                        # talk to it yourself\n"
        "then set nats.url and cytube.* in kryten-rules.yaml and `kryten-rules run "
        "--config kryten-rules.yaml` beside your Kryten-Robot."
    )
