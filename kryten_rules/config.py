"""The operator's service config, as typed values.

Only the *names* of environment variables live here; their values are read
when a model is called (``kryten_rules.dispatch.llm``) and never logged. Checking the
document against ``schemas/config.schema.json`` happens in ``check``; this
module turns an already-checked plain document into dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kryten_rules.units import parse_duration

DEFAULT_MAX_MESSAGE_LENGTH = 320
# /health and /metrics: in the 282xx block the Kryten services share, after
# userstats 28282, moderator 28284, llm 28286, api-gate 28288, economy 28290
DEFAULT_METRICS_PORT = 28292
# lifecycle heartbeat, as the other Kryten services (kryten-robot's registry
# marks a service stale after 90 s without one)
DEFAULT_HEARTBEAT = 30.0

DEFAULT_HISTORY_SLACK = 5.0
"""Seconds a chat line's CyTube ``time`` may lie before its arrival and still be live.

Covers the robot's relay and our own queueing; a replayed line is minutes or
hours old. The service config's ``history_slack`` overrides it (clocks of the
CyTube server and this host further apart than this would drop live lines)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One LiteLLM model. ``model`` is LiteLLM's model string (``openai/gpt-4o-mini``)."""

    name: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = 20.0
    max_tokens: int | None = None
    temperature: float | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    # LiteLLM's offline `mock_response`: the demo model answers without any network.
    mock_response: str | None = None


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """Models tried in order; ``deadline`` bounds the whole chain in seconds."""

    name: str
    models: tuple[str, ...]
    deadline: float = 30.0


@dataclass(frozen=True, slots=True)
class NatsTlsConfig:
    """PEM files for TLS to NATS (paths resolved against the config's directory)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """Where NATS is and how to authenticate: secrets only by environment variable name.

    ``kryten_rules/natsauth.py`` turns this into nats-py's connect options at start.
    """

    url: str = "nats://127.0.0.1:4222"
    user: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    creds_file: Path | None = None
    nkey_file: Path | None = None
    tls: NatsTlsConfig | None = None

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


@dataclass(frozen=True, slots=True)
class CytubeConfig:
    domain: str = "cytu.be"
    channel: str = ""
    username: str = ""
    max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH


DEFAULT_STATE_BUCKET = "kryten_rules_state"


DEFAULT_LEASE_TTL = 3.0
"""Seconds after a lease holder's last renewal that a standby takes its channel over."""
MIN_LEASE_TTL = 1.0
MAX_LEASE_TTL = 3600.0

@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where cooldowns and budgets live: ``memory`` (this process) or ``jetstream``
    (written behind to the KV ``bucket``, loaded at start; see service/kvstate.py)."""

    store: str = "memory"
    bucket: str = DEFAULT_STATE_BUCKET
    # with store jetstream, instances on one channel hold it by a lease (service/lease.py)
    lease_ttl: float = DEFAULT_LEASE_TTL


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One channel the process serves: where, as whom, and with which rules.

    ``dry_run`` and ``ignore_users`` of ``None`` take the service's; a value
    here is this channel's own (a new channel tried out in dry run beside
    live ones)."""

    cytube: CytubeConfig
    rules: tuple[Path, ...] = ()
    dry_run: bool | None = None
    ignore_users: frozenset[str] | None = None

    @property
    def channel(self) -> str:
        return self.cytube.channel

    @property
    def label(self) -> str:
        """``domain/channel``, as logs and errors name a channel."""
        return f"{self.cytube.domain}/{self.cytube.channel}"


@dataclass(frozen=True, slots=True)
class LogConfig:
    responses: str | None = None
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """What the service publishes for other services (docs/operator.md "Events")."""

    replies: bool = True
    decisions: str = "matched"  # all | matched | off


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    path: Path | None = None
    nats: NatsConfig = field(default_factory=NatsConfig)
    cytube: CytubeConfig = field(default_factory=CytubeConfig)
    rules: tuple[Path, ...] = ()
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    chains: Mapping[str, ChainConfig] = field(default_factory=dict)
    dry_run: bool = False
    ignore_users: frozenset[str] = frozenset()
    log: LogConfig = field(default_factory=LogConfig)
    state: StateConfig = field(default_factory=StateConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    max_in_flight: int = 4
    # (burst, messages a second): CyTube's flood limit below moderator
    pacing: tuple[int, float] = (4, 1.0)
    metrics_port: int | None = DEFAULT_METRICS_PORT
    metrics_host: str = "127.0.0.1"
    reply_max_age: float = 60.0
    # chat stamped by CyTube more than this before it reached us is replayed history
    history_slack: float = DEFAULT_HISTORY_SLACK
    heartbeat: float = DEFAULT_HEARTBEAT
    # as written under `channels:`; empty: the one channel of `cytube` + `rules`
    channels: tuple[ChannelConfig, ...] = ()

    @property
    def bot_name(self) -> str:
        return self.cytube.username

    @property
    def channel_configs(self) -> tuple[ChannelConfig, ...]:
        """Every channel served: ``channels``, or the one of ``cytube`` + ``rules``."""
        return self.channels or (ChannelConfig(self.cytube, self.rules),)

    def for_channel(self, channel: ChannelConfig) -> ServiceConfig:
        """This config as a one-channel one: what each channel's parts read.

        The rule manager, responder, robot sender and intake read ``cytube``,
        ``rules``, ``dry_run`` and ``ignore_users`` of a :class:`ServiceConfig`;
        given this, they serve ``channel`` and need not know there are others.
        """
        return replace(
            self,
            cytube=channel.cytube,
            rules=channel.rules,
            dry_run=self.dry_run if channel.dry_run is None else channel.dry_run,
            ignore_users=(
                self.ignore_users if channel.ignore_users is None else channel.ignore_users
            ),
            channels=(),
        )


def _given(
    doc: Mapping[str, Any],
    *keys: str,
    durations: tuple[str, ...] = (),
    integers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The keys of ``doc`` that the operator actually wrote, as keyword arguments.

    Absent keys are left out, so each default is written once, on its
    dataclass field. (Reading a default back as ``NatsConfig.url`` does not
    work: on a ``slots`` dataclass that is the slot's member descriptor, not
    the string, and every send then failed with a ``TypeError``.) JSON Schema
    counts ``4.0`` as an integer, so ``integers`` are made ``int`` here.
    """
    out: dict[str, Any] = {}
    for key in keys:
        value = doc.get(key)
        if value is not None:
            if key in durations:
                value = parse_duration(value)
            elif key in integers:
                value = int(value)
            out[key] = value
    return out


def config_from_plain(doc: Mapping[str, Any], path: Path | None = None) -> ServiceConfig:
    """Build a :class:`ServiceConfig` from a document the schema has accepted.

    Relative paths (``rules``, ``log.responses``) are resolved against the
    config file's directory, as operators expect.
    """
    base = path.parent if path is not None else Path.cwd()
    models = {
        name: ModelConfig(
            name=name,
            **_given(
                m,
                "model",
                "api_base",
                "api_key_env",
                "timeout",
                "max_tokens",
                "temperature",
                "input_cost_per_token",
                "output_cost_per_token",
                "mock_response",
                durations=("timeout",),
                integers=("max_tokens",),
            ),
        )
        for name, m in (doc.get("models") or {}).items()
    }
    chains = {
        name: ChainConfig(
            name=name,
            models=tuple(c["models"]),
            **_given(c, "deadline", durations=("deadline",)),
        )
        for name, c in (doc.get("chains") or {}).items()
    }
    log = dict(doc.get("log") or {})
    if log.get("responses"):
        log["responses"] = str(base / log["responses"])
    metrics = doc.get("metrics") or {}
    top = _given(
        doc,
        "dry_run",
        "max_in_flight",
        "reply_max_age",
        "history_slack",
        "heartbeat",
        durations=("reply_max_age", "history_slack", "heartbeat"),
        integers=("max_in_flight",),
    )
    if "ignore_users" in doc:
        top["ignore_users"] = frozenset(u.lower() for u in doc["ignore_users"])
    channels = tuple(_channel(c, base) for c in doc.get("channels") or ())
    if channels:  # the first is also `cytube` + `rules`, for what names one channel
        top |= {"channels": channels, "cytube": channels[0].cytube, "rules": channels[0].rules}
    else:
        top |= {"cytube": _cytube(doc.get("cytube") or {}), "rules": _paths(doc.get("rules"), base)}
    pacing = doc.get("pacing") or {}
    if pacing:
        top["pacing"] = (int(pacing.get("burst", 4)), float(pacing.get("per_second", 1.0)))
    if metrics.get("port") is not None:
        top["metrics_port"] = int(metrics["port"])
    if metrics.get("host") is not None:
        top["metrics_host"] = metrics["host"]
    return ServiceConfig(
        path=path,
        nats=_nats(doc.get("nats") or {}, base),
        models=models,
        chains=chains,
        log=LogConfig(**_given(log, "responses", "level")),
        state=StateConfig(
            **_given(
                doc.get("state") or {}, "store", "bucket", "lease_ttl", durations=("lease_ttl",)
            )
        ),
        events=EventsConfig(**_given(doc.get("events") or {}, "replies", "decisions")),
        **top,
    )


def _nats(doc: Mapping[str, Any], base: Path) -> NatsConfig:
    """The ``nats:`` section; its files are relative to the config's directory."""
    given = _given(doc, "url", "user", "password_env", "token_env", "creds_file", "nkey_file")
    for key in ("creds_file", "nkey_file"):
        if key in given:
            given[key] = base / given[key]
    tls = doc.get("tls")
    if tls is not None:
        files = _given(tls, "ca_file", "cert_file", "key_file")
        given["tls"] = NatsTlsConfig(**{k: base / v for k, v in files.items()})
    return NatsConfig(**given)


def _cytube(doc: Mapping[str, Any]) -> CytubeConfig:
    return CytubeConfig(
        **_given(
            doc,
            "domain",
            "channel",
            "username",
            "max_message_length",
            integers=("max_message_length",),
        )
    )


def _paths(rules: Any, base: Path) -> tuple[Path, ...]:
    """``rules:`` (one path or a list) resolved against the config's directory."""
    if rules is None:
        return ()
    return tuple(base / p for p in ([rules] if isinstance(rules, str) else rules))


def _channel(doc: Mapping[str, Any], base: Path) -> ChannelConfig:
    """One entry of ``channels:``: the ``cytube`` keys plus its own rules and options."""
    ignore = doc.get("ignore_users")
    return ChannelConfig(
        cytube=_cytube(doc),
        rules=_paths(doc.get("rules"), base),
        dry_run=doc.get("dry_run"),
        ignore_users=None if ignore is None else frozenset(u.lower() for u in ignore),
    )
