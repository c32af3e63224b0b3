"""``tail``: the bot's replies (and with ``--decisions`` its decisions), live."""

from __future__ import annotations

import sys
from typing import Any

import click

from kryten_rules.cli.app import EXIT_USAGE, config_or_exit, info, main, masked


@main.command("tail")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="A service config: its nats.url.",
)
@click.option("--nats", "nats_url", help="NATS server URL (instead of the config's).")
@click.option("--channel", help="Only this CyTube channel (default: every bot on the server).")
@click.option("--rule", help="Only events of this rule id.")
@click.option("--decisions", is_flag=True, help="Decisions too, not only replies.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line of text per event, or the event's JSON (for jq).",
)
def tail_cmd(
    config_path: str | None,
    nats_url: str | None,
    channel: str | None,
    rule: str | None,
    decisions: bool,
    fmt: str,
) -> None:
    """Print the bot's replies as they happen (kryten.events.rules.reply), one line each.

    Ctrl-C stops. Give --config or --nats. Exit 2 when NATS cannot be reached.
    """
    import asyncio

    from kryten_rules.natsauth import NatsRefused
    from kryten_rules.service.tail import TailError, TailFilter, tail

    config = config_or_exit(config_path)
    url = nats_url or (config.nats.url if config else None)
    if not url:
        click.echo("error: give --config or --nats URL", err=True)
        sys.exit(EXIT_USAGE)
    if url == "embedded":
        click.echo(
            "error: nats.url is `embedded`: give --nats URL (the bot logs its server's address)",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    wanted = TailFilter(channel=channel, rule=rule, decisions=decisions)
    options: dict[str, Any] = {}
    mode = "no authentication"
    if config is not None:  # log in as the service does
        import os

        from kryten_rules.natsauth import NatsAuthError, auth_mode, connect_options

        try:
            options = connect_options(config.nats, os.environ)
        except NatsAuthError as exc:
            click.echo(f"error: {masked(exc)}", err=True)
            sys.exit(EXIT_USAGE)
        mode = auth_mode(config.nats, url)
    try:
        asyncio.run(
            tail(url, wanted, json_lines=fmt == "json", notify=lambda t: info(t, err=True),
                 options=options, mode=mode)
        )
    except (TailError, NatsRefused) as exc:
        click.echo(f"error: {masked(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:  # before the signal handlers were in place
        pass
