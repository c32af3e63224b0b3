"""The ``kryten-rules`` command line. Commands parse options and hand off.

Exit codes, the same for every command:

* 0 - clean (``validate``: no errors, warnings allowed unless ``--strict``;
  ``test``: every case passed)
* 1 - the input has errors (diagnostics printed) or a test failed
* 2 - usage error: bad options, missing files, unreadable input

Heavy imports (LiteLLM, NATS) happen inside the commands that need them:
``validate`` must stay fast and never touch the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .diagnostics import RuleSetError, format_github, format_json, format_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Group(click.Group):
    """Usage errors exit 2 (click's default), everything else unexpected exits 2 too."""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kryten-rules")
def main() -> None:
    """Declarative rules for LLM chat bots in CyTube channels (Kryten ecosystem)."""


def _config_or_exit(path: str | None):
    if path is None:
        return None
    from .load import load_config

    try:
        return load_config(path)
    except RuleSetError as exc:
        click.echo(format_text(exc.diagnostics, color=sys.stderr.isatty()), err=True)
        click.echo(f"error: the service config {path!r} has errors", err=True)
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
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

    PATHS are files or directories (all *.yaml / *.yml below them).
    """
    from .load import check_paths

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        click.echo(f"error: no such file or directory: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)
    config = _config_or_exit(config_path)
    checked = check_paths(paths, config=config)
    diags = checked.diagnostics
    if fmt == "json":
        click.echo(format_json(diags))
    elif fmt == "github":
        if diags:
            click.echo(format_github(diags))
    else:
        n_files = len(checked.rule_files) + len(checked.configs) + len(checked.tests)
        if diags:
            click.echo(format_text(diags, color=sys.stdout.isatty()))
        else:
            click.echo(
                f"ok: {n_files} file(s), "
                f"{sum(len(rf.rules) for rf in checked.rule_files)} rule(s), no problems"
            )
    errors = any(d.is_error for d in diags)
    sys.exit(EXIT_FAILED if errors or (strict and diags) else EXIT_OK)


@main.command()
@click.argument("kind", type=click.Choice(["rules", "config", "test"]), default="rules")
def schema(kind: str) -> None:
    """Print the JSON Schema of rule files, the service config or rule tests."""
    from .schema import schema as get_schema

    click.echo(json.dumps(get_schema(kind), indent=2))


def run() -> None:  # pragma: no cover - console entry alias
    main()
