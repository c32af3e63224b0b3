"""The ``kryten-rules`` command line. Commands parse options and hand off.

Exit codes, the same for every command (docs/cli.md has the table):

* 0 - clean (``validate``: no errors, warnings allowed unless ``--strict``;
  ``test``: every case passed; ``run``/``record``/``chat``: stopped as asked)
* 1 - the input has errors (diagnostics printed) or a test failed
* 2 - usage error or cannot start: bad options, missing files, unreadable
  input, a config with errors, a service that cannot start, an internal error

Every command takes ``--color auto|always|never`` (``auto`` honours
``NO_COLOR``) and ``-q/--quiet`` (errors, diagnostics and asked-for output
only), before or after the command name.

Heavy imports (LiteLLM, NATS) happen inside the commands that need them:
``validate`` must stay fast and never touch the network.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, overload

import click

from kryten_rules.codes import Code
from kryten_rules.diagnostics import (
    Diagnostic,
    RuleSetError,
    format_text,
)
from kryten_rules.version import __version__

if TYPE_CHECKING:  # the CLI imports these lazily, inside the commands
    from kryten_rules.compile.ruleset import RuleSet
    from kryten_rules.config import ServiceConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# diagnostics of rules that are not there at all: a usage error, where mistakes in them are 1
USAGE_CODES = frozenset({Code.MISSING_PATH, Code.NO_RULES})
COLOR_MODES = ("auto", "always", "never")


class _Group(click.Group):
    """Usage errors exit 2 (click's default), everything else unexpected exits 2 too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:  # Ctrl-C where it is not the way to stop: the shell's 130
            click.echo("", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: say so, keep the traceback for the report
            import traceback

            traceback.print_exc()
            click.echo(
                f"error: internal error ({type(exc).__name__}): please report it, "
                "with the traceback above",
                err=True,
            )
            sys.exit(EXIT_USAGE)


def _remember(name: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            ctx.find_root().meta[name] = value
        return value

    return callback


def common_options() -> list[click.Option]:
    return [
        click.Option(
            ["--color"],
            type=click.Choice(COLOR_MODES),
            default=None,
            expose_value=False,
            callback=_remember("color"),
            help="Color in text output: auto (a terminal, and NO_COLOR unset), always, never.",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_remember("quiet"),
            help="Only errors, diagnostics and the output asked for; no summaries or banners.",
        ),
    ]


def _meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().meta if ctx is not None else {}


def use_color(stream: TextIO) -> bool:
    """``--color``; ``auto``: a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    mode = _meta().get("color", "auto")
    if mode != "auto":
        return bool(mode == "always")
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def quiet() -> bool:
    return bool(_meta().get("quiet"))


def info(text: str, *, err: bool = False) -> None:
    """A summary, banner or next step: not printed with ``-q``."""
    if not quiet():
        click.echo(text, err=err)


def echo_diagnostics(diags: Iterable[Diagnostic], *, err: bool) -> None:
    stream = sys.stderr if err else sys.stdout
    color = use_color(stream)
    click.echo(format_text(diags, color=color), err=err, color=color)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kryten-rules")
def main() -> None:
    """Declarative rules for LLM chat bots in CyTube channels (Kryten ecosystem).

    Exit codes, for every command: 0 ok, 1 the input has errors or a test
    failed, 2 usage error or cannot start. Shell completion: see docs/cli.md
    (eval "$(_KRYTEN_RULES_COMPLETE=bash_source kryten-rules)").
    """


main.params.extend(common_options())


@overload
def config_or_exit(path: str) -> ServiceConfig: ...
@overload
def config_or_exit(path: str | None) -> ServiceConfig | None: ...
def config_or_exit(path: str | None) -> ServiceConfig | None:
    if path is None:
        return None
    from kryten_rules.compile.load import load_config

    try:
        return load_config(path)
    except RuleSetError as exc:
        echo_diagnostics(exc.diagnostics, err=True)
        click.echo(f"error: the service config {path!r} has errors", err=True)
        sys.exit(EXIT_USAGE)
    except (ValueError, OverflowError) as exc:  # a value the checks let through: still no traceback
        click.echo(f"error: the service config {path!r}: {masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)


STDIN = "-"
STDIN_NAME = "<stdin>"


def chosen_config(path: str | None) -> str:
    """``--config``, else the first default config path (configpath.py); says which."""
    from kryten_rules.cli.configpath import NoConfigFound, choose_config

    try:
        choice = choose_config(path)
    except NoConfigFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if not choice.given:
        info(choice.describe(), err=True)
    return choice.path


def read_stdin_to_file() -> Path:
    """Standard input in a file of its own, in this directory when it can be.

    A file named ``-`` in this directory reads like this one: relative paths in
    it (``prompt_file``, a test's ``rules``) resolve from here.
    """
    import tempfile

    data = sys.stdin.buffer.read()
    for where in (".", None):
        try:
            fd, name = tempfile.mkstemp(prefix=".kryten-rules-stdin-", suffix=".yaml", dir=where)
        except OSError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return Path(name)
    click.echo("error: cannot store standard input in a temporary file", err=True)
    sys.exit(EXIT_USAGE)


def config_rules(paths: list[str]) -> list[str]:
    """The rule paths of the service configs among ``paths``, to check with them.

    ``validate kryten-rules.yaml`` said "ok, 0 rules" while ``run`` failed on
    the rules it names.
    """
    from kryten_rules.compile.load import load_config
    from kryten_rules.ruleformat.schema import file_kind
    from kryten_rules.ruleformat.tree import YAML_SUFFIXES
    from kryten_rules.ruleformat.yamlload import load_file

    extra: list[str] = []
    for raw in paths:
        p = Path(raw)
        if not (p.is_file() and p.suffix in YAML_SUFFIXES):
            continue
        doc = load_file(p)
        if doc.root is None or file_kind(doc.root) != "config":
            continue
        try:
            config = load_config(p)
        except RuleSetError:
            continue  # the config's own errors are reported when it is checked
        if len(config.channel_configs) > 1:
            continue  # each channel's rules are a rule set of their own (cli/channels.py)
        extra += [str(r) for r in config.rules if str(r) not in paths + extra]
    return extra


def masked(exc: BaseException) -> str:
    from kryten_rules.redact import mask_credentials

    return mask_credentials(str(exc))


def setup_logging(level: str) -> None:
    """Log to stderr; every line goes through the credential mask (kryten_rules.redact)."""
    import logging

    from kryten_rules.redact import MaskingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def ruleset_or_exit(
    paths: list[str], config: ServiceConfig | None, bot: str | None = None
) -> RuleSet:
    from kryten_rules.compile.load import load_ruleset

    try:
        return load_ruleset(paths, config, bot_name=bot)
    except RuleSetError as exc:
        echo_diagnostics(exc.diagnostics, err=True)
        # Rules that are not there at all is a usage error; rules with mistakes is not.
        errors = {d.code for d in exc.diagnostics if d.is_error}
        sys.exit(EXIT_USAGE if errors <= USAGE_CODES else EXIT_FAILED)


def default_rules(config: ServiceConfig | None) -> list[str]:
    if config is not None and config.rules:
        return [str(p) for p in config.rules]
    return ["rules"]
