"""Every diagnostic code, in one registry.

Codes are part of the public interface: CI filters, editor integrations and
docs/diagnostics.md rely on them, so a code is never renamed or reused; a new
problem gets a new member here and a row in docs/diagnostics.md
(``tests/test_docs.py`` holds the two to each other, and checks that every
member is made somewhere in the package).

:func:`kryten_rules.diagnostics.error` and ``warning`` take a member or its
string and refuse anything else, so an unregistered code fails the first test
that reaches it instead of reaching a user.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """A diagnostic code (kebab-case), grouped by the stage that reports it."""

    # --- Reading files
    EMPTY_FILE = "empty-file"
    FILE_TOO_LARGE = "file-too-large"
    FILE_UNREADABLE = "file-unreadable"
    MISSING_PATH = "missing-path"
    NOT_UTF8 = "not-utf8"
    RULE_FILE_OUTSIDE = "rule-file-outside"
    TOO_DEEP = "too-deep"
    UNKNOWN_FILE_KIND = "unknown-file-kind"
    # --- YAML
    DUPLICATE_KEY = "duplicate-key"
    YAML_ALIAS = "yaml-alias"
    YAML_KEY = "yaml-key"
    YAML_MERGE_KEY = "yaml-merge-key"
    YAML_SYNTAX = "yaml-syntax"
    YAML_TAB = "yaml-tab"
    YAML_TOO_DEEP = "yaml-too-deep"
    YAML_TOO_LARGE = "yaml-too-large"
    YAML_VALUE = "yaml-value"
    # --- Shape (the JSON Schemas)
    BAD_ID = "bad-id"
    BAD_NUMBER = "bad-number"
    BAD_RANK = "bad-rank"
    BAD_VALUE = "bad-value"
    BAD_VERSION = "bad-version"
    EMPTY_VALUE = "empty-value"
    MISSING_KEY = "missing-key"
    NUMBER_RANGE = "number-range"
    PROBABILITY_RANGE = "probability-range"
    SCHEMA = "schema"
    UNKNOWN_KEY = "unknown-key"
    WRONG_TYPE = "wrong-type"
    # --- Meaning of one rule
    BAD_DURATION = "bad-duration"
    BAD_REGEX = "bad-regex"
    DURATION_RANGE = "duration-range"
    PROMPT_CHOICE = "prompt-choice"
    PROMPT_FILE_MISSING = "prompt-file-missing"
    PROMPT_FILE_OUTSIDE = "prompt-file-outside"
    PROMPT_FILE_TYPE = "prompt-file-type"
    PROMPT_FILE_UNREADABLE = "prompt-file-unreadable"
    RANK_RANGE = "rank-range"
    REGEX_TOO_LARGE = "regex-too-large"
    UNKNOWN_CHAIN = "unknown-chain"
    # --- Shapes that cannot do what they say (v1.1, ruleformat/shapes.py)
    MATCH_WITHOUT_TEXT = "match-without-text"
    MENTION_WITHOUT_TEXT = "mention-without-text"
    PM_WITHOUT_SENDER = "pm-without-sender"
    PROBABILITY_ZERO = "probability-zero"
    USER_WITHOUT_SENDER = "user-without-sender"
    # --- Timers and when.chat (v1.1, ruleformat/timerchecks.py)
    CHAT_WINDOW = "chat-window"
    EVERY_NOT_TIMER = "every-not-timer"
    TIMER_EVERY_MISSING = "timer-every-missing"
    TIMER_EVERY_SHORT = "timer-every-short"
    TIMER_EVERY_TOO_SHORT = "timer-every-too-short"
    TIMER_MATCH = "timer-match"
    TIMER_RESPOND_VIA = "timer-respond-via"
    TIMER_SENDER_CONDITION = "timer-sender-condition"
    TIMER_USER = "timer-user"
    # --- Across the rule set and the config
    CHANNELS_AND_CYTUBE = "channels-and-cytube"
    DUPLICATE_CHANNEL = "duplicate-channel"
    DUPLICATE_ID = "duplicate-id"
    DUPLICATE_LIMITS = "duplicate-limits"
    DUPLICATE_PERSONA = "duplicate-persona"
    DUPLICATE_RANKS = "duplicate-ranks"
    NO_CHANNEL = "no-channel"
    NO_RULES = "no-rules"
    REGEX_SET_TOO_LARGE = "regex-set-too-large"
    SHADOWED = "shadowed"
    UNKNOWN_MODEL = "unknown-model"
    UNKNOWN_RULE = "unknown-rule"
    # --- The service config's nats: keys and ${VAR} (envexpand, natscheck)
    BAD_ENV_NAME = "bad-env-name"
    ENV_IN_ENV_KEY = "env-in-env-key"
    ENV_SYNTAX = "env-syntax"
    ENV_UNSET = "env-unset"
    NATS_AUTH_CONFLICT = "nats-auth-conflict"
    NATS_AUTH_INCOMPLETE = "nats-auth-incomplete"
    # --- Templates
    TEMPLATE_BUDGET = "template-budget"
    TEMPLATE_INCLUDE = "template-include"
    TEMPLATE_RENDER = "template-render"
    TEMPLATE_SYNTAX = "template-syntax"
    TEMPLATE_UNKNOWN_FILTER = "template-unknown-filter"
    TEMPLATE_UNKNOWN_GROUP = "template-unknown-group"
    TEMPLATE_UNKNOWN_NAME = "template-unknown-name"
    TEMPLATE_UNKNOWN_TEST = "template-unknown-test"
    TEMPLATE_UNSAFE = "template-unsafe"


__all__ = ["Code"]
