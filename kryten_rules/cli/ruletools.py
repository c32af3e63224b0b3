"""``test``, ``explain`` and ``replay``: rules tried without a channel."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kryten_rules.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    USAGE_CODES,
    config_or_exit,
    default_rules,
    echo_diagnostics,
    main,
    quiet,
    ruleset_or_exit,
)
from kryten_rules.cli.channels import one_channel
from kryten_rules.events import EventKind

if TYPE_CHECKING:
    from kryten_rules.tools import ruletests


def _input_exit(suite: ruletests.Suite) -> int:
    """Mistakes in the rules under test exit 1, as ``validate`` does; a broken test
    file, a missing path or a service config with errors is exit 2 (usage)."""
    usage = [
        d
        for d in suite.diagnostics
        if d.is_error and (d not in suite.rule_diagnostics or d.code in USAGE_CODES)
    ]
    return EXIT_USAGE if usage else EXIT_FAILED


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
    help="junit: JUnit XML on stdout, for CI test reports.",
)
@click.option("-k", "keyword", help="Only cases whose name contains this text.")
@click.option(
    "--coverage",
    "show_coverage",
    is_flag=True,
    help="List the rules no case fired, blocked or saw would-fire (docs/rules.md).",
)
@click.option(
    "--min-coverage",
    type=float,
    default=None,
    metavar="PERCENT",
    callback=lambda ctx, param, value: _percent(value),
    help="Exit 1 when fewer than PERCENT (0-100) of the rules are covered; implies --coverage.",
)
def test_cmd(
    paths: tuple[str, ...],
    fmt: str,
    keyword: str | None,
    show_coverage: bool,
    min_coverage: float | None,
) -> None:
    """Run rule-test files (transcripts in virtual time; no model is called)."""
    from kryten_rules.tools import coverage as cov_mod
    from kryten_rules.tools import ruletests
    from kryten_rules.tools.junit import format_junit

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        click.echo(f"error: no such file or directory: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)
    suite = ruletests.run_files(paths, keyword=keyword)
    cov = cov_mod.coverage(suite) if show_coverage or min_coverage is not None else None
    if fmt == "json":
        extra = {"coverage": cov.as_dict()} if cov is not None else {}
        click.echo(ruletests.format_json(suite, **extra))
    elif fmt == "junit":
        click.echo(format_junit(suite))
    if suite.diagnostics and fmt != "json":
        echo_diagnostics(suite.diagnostics, err=True)
    if any(d.is_error for d in suite.diagnostics):
        sys.exit(_input_exit(suite))
    if fmt == "text":
        report = ruletests.format_text(suite)
        if quiet():  # the failures only, not the count
            report = report.rpartition("\n")[0] if "\n" in report else ""
        if report:
            click.echo(report)
    if cov is not None and fmt != "json":  # asked for: printed even with -q
        click.echo(cov_mod.format_text(cov), err=fmt == "junit")
    if not suite.cases:
        click.echo("error: no test cases found", err=True)
        sys.exit(EXIT_USAGE)
    if cov is not None and min_coverage is not None and cov.below(min_coverage):
        click.echo(cov_mod.below_message(cov, min_coverage), err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK if suite.passed else EXIT_FAILED)


def _percent(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= 100:  # NaN fails both comparisons
        raise click.BadParameter(f"{value} is not a percentage: give 0 to 100")
    return value


def _draw(value: float | None) -> float | None:
    """``--draw``: 0 <= X < 1, as ``random()`` draws (click's FloatRange lets NaN through)."""
    if value is not None and not 0 <= value < 1:  # NaN fails both comparisons
        raise click.BadParameter(f"{value} is not a draw: give a number with 0 <= X < 1")
    return value


@main.command()
@click.argument("text")
@click.argument("rules", nargs=-1, type=click.Path(exists=True))
@click.option("--user", default="someone", show_default=True, help="The sender.")
@click.option("--rank", default="registered", show_default=True, help="The sender's rank.")
@click.option(
    "--on",
    "kind",
    type=click.Choice([k.value for k in EventKind]),
    default="chatmsg",
    show_default=True,
    help="The event kind; with timer, TEXT is the timer rule's id ('' for every timer).",
)
@click.option(
    "--chat-lines",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Lines from people just now, for when.chat (v1.1 timers).",
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
    help="Service config (bot name, chains, rules); default: ./kryten-rules.yaml, "
    "else /etc/kryten/kryten-rules/config.yaml, when there.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the probability draws."
)
@click.option(
    "--draw",
    type=float,
    default=None,
    callback=lambda ctx, param, value: _draw(value),
    help="Pin the probability draw (0 <= X < 1): a rule with probability P fires when X < P.",
)
@click.option(
    "--channel",
    "channel",
    help="The config's channel whose rules answer (needed when it has several).",
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
    chat_lines: int,
    seed: int,
    draw: float | None,
    channel: str | None,
) -> None:
    """Show why the bot would or would not answer TEXT, rule by rule.

    With ``--on timer``, TEXT names a timer rule ('' for all): why it would or
    would not speak if its turn came now, with ``--chat-lines`` recent lines.
    """
    from kryten_rules.cli.configpath import find_config, no_config_label
    from kryten_rules.tools.explain import check_timer_name, explain_event, format_explanation
    from kryten_rules.units import parse_duration, parse_rank

    choice = find_config(config_path)
    config = one_channel(config_or_exit(choice.path if choice else None), channel)
    try:
        rank_value = parse_rank(rank)
        duration = parse_duration(media_duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    ruleset = ruleset_or_exit(list(rules) or default_rules(config), config)
    if kind == "timer":
        try:
            check_timer_name(ruleset, text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="TEXT") from exc
    result = explain_event(
        ruleset,
        text,
        user=user,
        rank=rank_value,
        kind=kind,
        media_title=media_title,
        media_duration=duration,
        channel=config.cytube.channel if config else "",
        chat_times=[1.0] * chat_lines,
        seed=seed,
        draw=draw,
    )
    result["config"] = choice.path if choice else None
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, default=str))
        return
    result["config"] = choice.label() if choice else no_config_label()
    click.echo(format_explanation(result))


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
@click.option("--channel", "channel", help="The config's channel to replay (of several).")
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
    channel: str | None,
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

    config = one_channel(config_or_exit(config_path), channel)
    ruleset = ruleset_or_exit(list(rules) or default_rules(config), config)
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
