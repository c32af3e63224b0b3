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

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, overload

import click

from kryten_rules.diagnostics import (
    Diagnostic,
    RuleSetError,
    format_github,
    format_json,
    format_text,
)
from kryten_rules.version import __version__

if TYPE_CHECKING:  # the CLI imports these lazily, inside the commands
    from kryten_rules.compile.ruleset import RuleSet
    from kryten_rules.config import ServiceConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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


def _common_options() -> list[click.Option]:
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


main.params.extend(_common_options())


@overload
def _config_or_exit(path: str) -> ServiceConfig: ...
@overload
def _config_or_exit(path: str | None) -> ServiceConfig | None: ...
def _config_or_exit(path: str | None) -> ServiceConfig | None:
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
        click.echo(f"error: the service config {path!r}: {_masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)


STDIN = "-"
STDIN_NAME = "<stdin>"


def _stdin_file() -> Path:
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


def _config_rules(paths: list[str]) -> list[str]:
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
        extra += [str(r) for r in config.rules if str(r) not in paths + extra]
    return extra


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

    PATHS are files or directories (all *.yaml / *.yml below them); `-` reads
    one file from standard input. A service config brings the rules it points
    at: `validate kryten-rules.yaml` checks what `run` would load.
    """
    from dataclasses import replace

    from kryten_rules.compile.load import check_paths

    if list(paths).count(STDIN) > 1:
        click.echo("error: `-` (standard input) can be given once", err=True)
        sys.exit(EXIT_USAGE)
    missing = [p for p in paths if p != STDIN and not Path(p).exists()]
    if missing:
        click.echo(f"error: no such file or directory: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)
    config = _config_or_exit(config_path)
    stdin_file = _stdin_file() if STDIN in paths else None
    try:
        names = [str(stdin_file) if p == STDIN else p for p in paths]
        checked = check_paths(names + _config_rules(names), config=config)
    finally:
        if stdin_file is not None:
            stdin_file.unlink(missing_ok=True)
    diags = checked.diagnostics
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
        n_files = len(checked.rule_files) + len(checked.configs) + len(checked.tests)
        if diags:
            echo_diagnostics(diags, err=False)
        else:
            info(
                f"ok: {n_files} file(s), "
                f"{sum(len(rf.rules) for rf in checked.rule_files)} rule(s), no problems"
            )
    errors = any(d.is_error for d in diags)
    sys.exit(EXIT_FAILED if errors or (strict and diags) else EXIT_OK)


@main.command()
@click.argument("kind", type=click.Choice(["rules", "config", "test"]), default="rules")
def schema(kind: str) -> None:
    """Print the JSON Schema of rule files, the service config or rule tests."""
    from kryten_rules.ruleformat.schema import schema as get_schema

    click.echo(json.dumps(get_schema(kind), indent=2))


def _masked(exc: BaseException) -> str:
    from kryten_rules.redact import mask_credentials

    return mask_credentials(str(exc))


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


def _setup_logging(level: str) -> None:
    """Log to stderr; every line goes through the credential mask (kryten_rules.redact)."""
    import logging

    from kryten_rules.redact import MaskingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


@main.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The service config (kryten-rules.yaml).",
)
@click.option("--dry-run", is_flag=True, help="Decide and log everything, send nothing.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: the config's).")
def run_cmd(config_path: str, dry_run: bool, log_level: str | None) -> None:
    """Run the bot: NATS in, rules, LLM, NATS out. SIGHUP reloads the rules."""
    import asyncio

    from kryten_rules.service.bot import Bot, StartupError

    config = _config_or_exit(config_path)
    _setup_logging(log_level or config.log.level)
    bot = Bot(config, dry_run=True if dry_run else None)
    try:
        asyncio.run(bot.run_forever())
    except StartupError as exc:
        click.echo(f"error: {_masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)


def _chat_config(path: str | None) -> ServiceConfig:
    """``--config``, else ./kryten-rules.yaml, else ./kryten-rules.example.yaml, else the
    example the package carries (with the default persona), so `chat` runs anywhere."""
    from dataclasses import replace

    from kryten_rules.tools.project import CONFIG_NAME, EXAMPLE_CONFIG

    if path is not None:
        return _config_or_exit(path)
    for name in (CONFIG_NAME, "kryten-rules.example.yaml"):
        if Path(name).is_file():
            return _config_or_exit(name)
    config = _config_or_exit(str(EXAMPLE_CONFIG))
    # the package's directory is no place for a response log
    return replace(config, log=replace(config.log, responses=None))


def _route_to_chain(config: ServiceConfig, chain: str) -> ServiceConfig:
    """Every chain of ``config`` made of ``chain``'s models (only those models kept)."""
    from dataclasses import replace

    if chain not in config.chains:
        known = ", ".join(sorted(config.chains)) or "none"
        click.echo(
            f"error: the config {str(config.path)!r} has no chain {chain!r} (chains: {known})",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    target = config.chains[chain]
    return replace(
        config,
        chains={name: replace(target, name=name) for name in config.chains},
        models={m: config.models[m] for m in target.models if m in config.models},
    )


@main.command()
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="The service config (default: ./kryten-rules.yaml, else ./kryten-rules.example.yaml, "
    "else the example the package carries, with the default persona).",
)
@click.option("--user", default="you", show_default=True, help="Your CyTube name in the chat.")
@click.option("--rank", default="registered", show_default=True, help="Your rank.")
@click.option(
    "--demo",
    is_flag=True,
    help="Play a short scripted conversation, offline (the config's `demo` chain), and exit.",
)
@click.option(
    "--chain",
    "chain",
    default=None,
    help="Answer every rule with this chain of the config (--demo: `demo`).",
)
@click.option("--log-level", default="WARNING", show_default=True)
# Seconds between the demo's lines (its cooldowns are real time); tests shorten it.
@click.option("--demo-pause", type=float, default=5.5, hidden=True)
def chat(
    config_path: str | None,
    user: str,
    rank: str,
    demo: bool,
    chain: str | None,
    log_level: str,
    demo_pause: float,
) -> None:
    """Talk to the bot from the terminal through NATS (lines on stdin, or --demo)."""
    import asyncio

    from kryten_rules.service.bot import StartupError
    from kryten_rules.service.chat import DEMO_SCRIPT, run_chat
    from kryten_rules.units import parse_rank

    try:
        rank_value = parse_rank(rank)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--rank'") from exc
    config = _chat_config(config_path)
    chain = chain or ("demo" if demo else None)
    if chain is not None:
        config = _route_to_chain(config, chain)
    _setup_logging(log_level)
    try:
        asyncio.run(
            run_chat(
                config,
                user=user,
                rank=rank_value,
                script=DEMO_SCRIPT if demo else None,
                interactive=sys.stdin.isatty(),
                pause=demo_pause,
                quiet=quiet(),
            )
        )
    except StartupError as exc:
        click.echo(f"error: {_masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("")  # Ctrl-C is a way to quit: leave the shell prompt on its own line


def _ruleset_or_exit(
    paths: list[str], config: ServiceConfig | None, bot: str | None = None
) -> RuleSet:
    from kryten_rules.compile.load import load_ruleset

    try:
        return load_ruleset(paths, config, bot_name=bot)
    except RuleSetError as exc:
        echo_diagnostics(exc.diagnostics, err=True)
        # Rules that are not there at all is a usage error; rules with mistakes is not.
        errors = {d.code for d in exc.diagnostics if d.is_error}
        sys.exit(EXIT_USAGE if errors <= {"missing-path", "no-rules"} else EXIT_FAILED)


def _default_rules(config: ServiceConfig | None) -> list[str]:
    if config is not None and config.rules:
        return [str(p) for p in config.rules]
    return ["rules"]


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("-k", "keyword", help="Only cases whose name contains this text.")
def test_cmd(paths: tuple[str, ...], fmt: str, keyword: str | None) -> None:
    """Run rule-test files (transcripts in virtual time; no model is called)."""
    from kryten_rules.tools import ruletests

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        click.echo(f"error: no such file or directory: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)
    suite = ruletests.run_files(paths, keyword=keyword)
    if fmt == "json":
        click.echo(ruletests.format_json(suite))
    elif suite.diagnostics:
        echo_diagnostics(suite.diagnostics, err=True)
    if suite.diagnostics and any(d.is_error for d in suite.diagnostics):
        sys.exit(EXIT_USAGE)
    if fmt == "text":
        report = ruletests.format_text(suite)
        if quiet():  # the failures only, not the count
            report = report.rpartition("\n")[0] if "\n" in report else ""
        if report:
            click.echo(report)
    if not suite.cases:
        click.echo("error: no test cases found", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if suite.passed else EXIT_FAILED)


@main.command()
@click.argument("text")
@click.argument("rules", nargs=-1, type=click.Path(exists=True))
@click.option("--user", default="someone", show_default=True, help="The sender.")
@click.option("--rank", default="registered", show_default=True, help="The sender's rank.")
@click.option(
    "--on",
    "kind",
    type=click.Choice(["chatmsg", "pm", "changemedia", "adduser"]),
    default="chatmsg",
    show_default=True,
    help="The event kind.",
)
@click.option("--media", "media_title", help="Title of the media now playing.")
@click.option("--media-duration", default="90m", show_default=True, help="Duration of --media.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Service config (bot name, chains, rules).",
)
def explain(
    text: str,
    rules: tuple[str, ...],
    user: str,
    rank: str,
    kind: str,
    media_title: str | None,
    media_duration: str,
    fmt: str,
    config_path: str | None,
) -> None:
    """Show why the bot would or would not answer TEXT, rule by rule."""
    from kryten_rules.tools.explain import explain_event, format_explanation
    from kryten_rules.units import parse_duration, parse_rank

    config = _config_or_exit(config_path)
    try:
        rank_value = parse_rank(rank)
        duration = parse_duration(media_duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    ruleset = _ruleset_or_exit(list(rules) or _default_rules(config), config)
    result = explain_event(
        ruleset,
        text,
        user=user,
        rank=rank_value,
        kind=kind,
        media_title=media_title,
        media_duration=duration,
        channel=config.cytube.channel if config else "",
    )
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(format_explanation(result))


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Service config: its nats.url and cytube.channel.",
)
@click.option("--nats", "nats_url", help="NATS server URL (instead of the config's).")
@click.option("--channel", help="CyTube channel (instead of the config's).")
@click.option("-a", "--append", is_flag=True, help="Add to OUT if it exists.")
def record(
    out: str, config_path: str | None, nats_url: str | None, channel: str | None, append: bool
) -> None:
    """Record a channel's events from NATS into OUT (JSONL), for `replay`.

    Every event Kryten-Robot publishes for the channel, one line each, written
    as it arrives. Ctrl-C or SIGTERM stops. Give --config, or --nats and
    --channel.
    """
    import asyncio

    from kryten_rules.tools.record import record as record_events
    from kryten_rules.wire import subscribe_subject

    config = _config_or_exit(config_path)
    url = nats_url or (config.nats.url if config else None)
    channel = channel or (config.cytube.channel if config else None)
    if not url or not channel:
        click.echo("error: give --config, or --nats URL and --channel NAME", err=True)
        sys.exit(EXIT_USAGE)
    if url == "embedded":
        click.echo(
            "error: nats.url is `embedded`: no Kryten-Robot publishes there; give --nats URL",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    try:
        subscribe_subject(channel)
    except ValueError as exc:
        click.echo(f"error: channel {channel!r}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    path = Path(out)
    if path.exists() and not append and path.stat().st_size > 0:
        click.echo(
            f"error: {out!r} exists: --append adds to it, or record into a new file", err=True
        )
        sys.exit(EXIT_USAGE)
    try:
        fh = path.open("a" if append else "w", encoding="utf-8")
    except OSError as exc:
        click.echo(f"error: cannot write {out!r}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE)
    with fh:
        count = asyncio.run(
            record_events(url, channel, fh, notify=lambda text: info(text, err=True))
        )
    info(f"recorded {count} event(s) into {out}", err=True)


@main.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--rules",
    "rules",
    multiple=True,
    type=click.Path(exists=True),
    help="Rule files or directories (repeatable; default: the config's or rules/).",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Name every skipped line, with its line number and reason (text: on stderr).",
)
def replay(
    log: str,
    rules: tuple[str, ...],
    config_path: str | None,
    seed: int,
    fmt: str,
    verbose: bool,
) -> None:
    """Run a recorded channel (JSONL of Kryten-Robot events) through the rules.

    LOG is what `kryten-rules record` writes, or one envelope per line. Lines
    that are not events are skipped and counted by reason; --verbose names each.
    """

    from kryten_rules.config import ServiceConfig
    from kryten_rules.tools import replay as replay_mod

    config = _config_or_exit(config_path)
    ruleset = _ruleset_or_exit(list(rules) or _default_rules(config), config)
    path = Path(log)
    with path.open(encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    show_bar = sys.stderr.isatty() and len(lines) > 2000 and not verbose and not quiet()
    defaults = config or ServiceConfig()
    skipped: list[replay_mod.Skipped] = []

    def on_skip(item: replay_mod.Skipped) -> None:
        if not verbose:
            return
        if fmt == "json":
            skipped.append(item)
        else:
            click.echo(f"{log}:{item.line}: skipped: {item.reason}", err=True)

    def run_replay(events: Iterable[str]) -> replay_mod.ReplayStats:
        return replay_mod.replay(
            ruleset,
            events,
            seed=seed,
            bot_name=config.bot_name if config else None,
            ignore_users=defaults.ignore_users,
            history_slack=defaults.history_slack,
            on_skip=on_skip,
        )

    if show_bar:
        with click.progressbar(lines, label="replaying", file=sys.stderr) as bar:
            stats = run_replay(bar)
    else:
        stats = run_replay(lines)
    if fmt == "json":
        out = stats.as_dict()
        if verbose:
            out["skipped_lines"] = [{"line": s.line, "reason": s.reason} for s in skipped]
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(replay_mod.format_text(stats))


for _command in main.commands.values():
    _command.params.extend(_common_options())


if __name__ == "__main__":
    main()
