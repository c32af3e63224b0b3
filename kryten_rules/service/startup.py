"""The start-up steps whose failure the operator must fix, each as one call.

Each step either gives its part or raises :class:`StartupError` with what to
fix (``kryten-rules run`` prints it and exits 2, never a traceback). The bot
(``bot.py``) calls them in order; they are here so that its ``start`` reads
as the sequence it is.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from kryten_rules.config import NatsConfig, ServiceConfig
from kryten_rules.dispatch.llm import ChainRunner
from kryten_rules.dispatch.renderpool import RenderPool, RenderWorkerError
from kryten_rules.errors import KrytenRulesError
from kryten_rules.natsauth import NatsAuthError, NatsRefused, auth_mode, connect_options
from kryten_rules.redact import mask_credentials
from kryten_rules.service.bus import Bus, ConnectStopped, connect_nats
from kryten_rules.service.embedded import EmbeddedNats, EmbeddedNatsError
from kryten_rules.service.responder import NoUsableModel, usable_chains
from kryten_rules.service.responselog import ResponseLog

log = logging.getLogger("kryten_rules.service")


class StartupError(KrytenRulesError, RuntimeError):
    """The service cannot start; the message says what the operator must fix."""


class Stopped(KrytenRulesError):
    """A stop was requested before the service was up; stopping is then a clean exit."""


def open_response_log(responses: ResponseLog) -> None:
    try:
        responses.open()
    except OSError as exc:
        raise StartupError(
            f"cannot write the response log {responses.path}: {exc.strerror or exc} "
            "(check log.responses in the config and the directory's permissions)"
        ) from exc


def make_chains(config: ServiceConfig, completion: Any) -> ChainRunner:
    """The model chains, without the models whose API key is missing."""
    try:
        chains = usable_chains(config)
    except NoUsableModel as exc:
        raise StartupError(str(exc)) from exc
    return ChainRunner(
        config.models, chains, completion=completion, max_in_flight=config.max_in_flight
    )


async def start_renderer() -> RenderPool:
    renderer = RenderPool()
    try:
        await renderer.start()
    except RenderWorkerError as exc:
        raise StartupError(f"cannot start the template render workers: {exc}") from exc
    return renderer


async def connect(
    nats: NatsConfig,
    url: str,
    *,
    embedded: bool,
    name: str,
    stop: asyncio.Event,
    on_state: Callable[[bool], None],
) -> Bus:
    """The NATS connection, with the config's credentials (none for our own embedded
    server); :class:`Stopped` if a stop came first."""
    try:
        options = {} if embedded else connect_options(nats, os.environ)
    except NatsAuthError as exc:
        raise StartupError(str(exc)) from None
    try:
        return await connect_nats(
            url,
            name=name,
            stop=stop,
            on_state=on_state,
            options=options,
            mode=auth_mode(nats, url),
        )
    except ConnectStopped as exc:
        raise Stopped(str(exc)) from exc
    except NatsRefused as exc:  # already one masked line
        raise StartupError(str(exc)) from None
    except Exception as exc:
        raise StartupError(mask_credentials(f"cannot connect to NATS at {url}: {exc}")) from exc


async def start_embedded() -> EmbeddedNats:
    """``nats.url: embedded``: a nats-server of our own, for a first run."""
    try:
        embedded = await asyncio.to_thread(EmbeddedNats().start)
    except EmbeddedNatsError as exc:  # a message and exit 2, not a traceback
        raise StartupError(str(exc)) from exc
    log.info("embedded nats-server listening on %s", embedded.url)
    return embedded
