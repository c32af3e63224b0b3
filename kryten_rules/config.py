"""The operator's service config, as typed values.

Only the *names* of environment variables live here; their values are read
when a model is called (``kryten_rules.llm``) and never logged. Checking the
document against ``schemas/config.schema.json`` happens in ``check``; this
module turns an already-checked plain document into dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .intake import DEFAULT_HISTORY_SLACK
from .units import parse_duration

DEFAULT_MAX_MESSAGE_LENGTH = 320


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
class NatsConfig:
    url: str = "nats://127.0.0.1:4222"

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


@dataclass(frozen=True, slots=True)
class CytubeConfig:
    domain: str = "cytu.be"
    channel: str = ""
    username: str = ""
    max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH


@dataclass(frozen=True, slots=True)
class LogConfig:
    responses: str | None = None
    level: str = "INFO"


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
    max_in_flight: int = 4
    metrics_port: int | None = None
    reply_max_age: float = 60.0
    # chat stamped by CyTube more than this before it reached us is replayed history
    history_slack: float = DEFAULT_HISTORY_SLACK

    @property
    def bot_name(self) -> str:
        return self.cytube.username


def _seconds(value: Any, default: float) -> float:
    return default if value is None else parse_duration(value)


def config_from_plain(doc: Mapping[str, Any], path: Path | None = None) -> ServiceConfig:
    """Build a :class:`ServiceConfig` from a document the schema has accepted.

    Relative paths (``rules``, ``log.responses``) are resolved against the
    config file's directory, as operators expect.
    """
    base = path.parent if path is not None else Path.cwd()
    nats = doc.get("nats") or {}
    cy = doc.get("cytube") or {}
    rules = doc.get("rules", [])
    rule_paths = [rules] if isinstance(rules, str) else list(rules)
    models = {
        name: ModelConfig(
            name=name,
            model=m["model"],
            api_base=m.get("api_base"),
            api_key_env=m.get("api_key_env"),
            timeout=_seconds(m.get("timeout"), 20.0),
            max_tokens=m.get("max_tokens"),
            temperature=m.get("temperature"),
            input_cost_per_token=m.get("input_cost_per_token"),
            output_cost_per_token=m.get("output_cost_per_token"),
            mock_response=m.get("mock_response"),
        )
        for name, m in (doc.get("models") or {}).items()
    }
    chains = {
        name: ChainConfig(
            name=name,
            models=tuple(c["models"]),
            deadline=_seconds(c.get("deadline"), 30.0),
        )
        for name, c in (doc.get("chains") or {}).items()
    }
    log = doc.get("log") or {}
    responses = log.get("responses")
    metrics = doc.get("metrics") or {}
    return ServiceConfig(
        path=path,
        nats=NatsConfig(url=nats.get("url", NatsConfig.url)),
        cytube=CytubeConfig(
            domain=cy.get("domain", CytubeConfig.domain),
            channel=cy.get("channel", ""),
            username=cy.get("username", ""),
            max_message_length=cy.get("max_message_length", DEFAULT_MAX_MESSAGE_LENGTH),
        ),
        rules=tuple((base / p) for p in rule_paths),
        models=models,
        chains=chains,
        dry_run=bool(doc.get("dry_run", False)),
        ignore_users=frozenset(u.lower() for u in doc.get("ignore_users", [])),
        log=LogConfig(
            responses=str(base / responses) if responses else None,
            level=log.get("level", "INFO"),
        ),
        max_in_flight=int(doc.get("max_in_flight", 4)),
        metrics_port=metrics.get("port"),
        reply_max_age=_seconds(doc.get("reply_max_age"), 60.0),
        history_slack=_seconds(doc.get("history_slack"), DEFAULT_HISTORY_SLACK),
    )
