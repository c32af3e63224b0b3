"""``run``, ``chat`` and ``record``: the commands that talk to NATS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kryten_rules.cli.app import (
    EXIT_USAGE,
    chosen_config,
    config_or_exit,
    info,
    main,
    masked,
    quiet,
    setup_logging,
)

if TYPE_CHECKING:
    from kryten_rules.config import ServiceConfig


@main.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="The service config (default: ./kryten-rules.yaml, else "
    "/etc/kryten/kryten-rules/config.yaml).",
)
@click.option("--dry-run", is_flag=True, help="Decide and log everything, send nothing.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: the config's).")
def run_cmd(config_path: str | None, dry_run: bool, log_level: str | None) -> None:
    """Run the bot: NATS in, rules, LLM, NATS out. SIGHUP reloads the rules.

    Exits 75 after a group restart (kryten.lifecycle.group.restart), for the
    supervisor (systemd Restart=on-failure) to start it again.
    """
    import asyncio

    from kryten_rules.service.bot import EXIT_RESTART, Bot, StartupError

    config = config_or_exit(chosen_config(config_path))
    setup_logging(log_level or config.log.level)
    bot = Bot(config, dry_run=True if dry_run else None)
    try:
        asyncio.run(bot.run_forever())
    except StartupError as exc:
        click.echo(f"error: {masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    if bot.restart_reason is not None:
        sys.exit(EXIT_RESTART)


def chat_config(path: str | None) -> ServiceConfig:
    """``--config``, else ./kryten-rules.yaml, else ./kryten-rules.example.yaml, else the
    example the package carries (with the default persona), so `chat` runs anywhere."""
    from dataclasses import replace

    from kryten_rules.tools.project import CONFIG_NAME, EXAMPLE_CONFIG

    if path is not None:
        return config_or_exit(path)
    for name in (CONFIG_NAME, "kryten-rules.example.yaml"):
        if Path(name).is_file():
            return config_or_exit(name)
    config = config_or_exit(str(EXAMPLE_CONFIG))
    # the package's directory is no place for a response log
    return replace(config, log=replace(config.log, responses=None))


def route_to_chain(config: ServiceConfig, chain: str) -> ServiceConfig:
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
    config = chat_config(config_path)
    chain = chain or ("demo" if demo else None)
    if chain is not None:
        config = route_to_chain(config, chain)
    setup_logging(log_level)
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
        click.echo(f"error: {masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("")  # Ctrl-C is a way to quit: leave the shell prompt on its own line


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

    from kryten_rules.natsauth import NatsRefused
    from kryten_rules.tools.record import record as record_events
    from kryten_rules.wire import subscribe_subject

    config = config_or_exit(config_path)
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
    auth = _record_auth(config, url)
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
        try:
            count = asyncio.run(
                record_events(url, channel, fh, notify=lambda text: info(text, err=True), **auth)
            )
        except NatsRefused as exc:  # the server said no: one line, exit 2, as `run`
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    info(f"recorded {count} event(s) into {out}", err=True)


def _record_auth(config: ServiceConfig | None, url: str) -> dict[str, Any]:
    """``record``'s NATS options: the config's credentials, also for a ``--nats`` URL."""
    import os

    from kryten_rules.config import NatsConfig
    from kryten_rules.natsauth import NatsAuthError, auth_mode, connect_options

    if config is None:
        return {"mode": auth_mode(NatsConfig(url=url))}
    try:
        return {"options": connect_options(config.nats, os.environ),
                "mode": auth_mode(config.nats, url)}
    except NatsAuthError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


