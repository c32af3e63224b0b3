"""The exceptions of kryten-rules: one tree, rooted at :class:`KrytenRulesError`.

Every exception the package raises is a ``KrytenRulesError``, so a caller of
the library can catch ours apart from everybody else's; each also keeps the
built-in base it always had (``ValueError``, ``RuntimeError``, ``OSError``), so
``except ValueError`` still catches what it caught. Most never leave the
package: stages before the engine *collect* problems as diagnostics instead of
raising, and the service turns failures into outcomes, logs and metrics.

::

    KrytenRulesError
    |-- loading rules (public: load_ruleset raises it)
    |   |-- RuleSetError          diagnostics.py      the rule set has errors; .diagnostics has all
    |   |-- SourceTooLarge        ruleformat/sources  a file past the size limit (also OSError)
    |   |-- DurationRangeError    units.py            a duration no float holds (also ValueError)
    |   |-- PatternSetError       ruleformat/patterns RE2 could not build the set (also ValueError)
    |   |-- TemplateProblem       ruleformat/templates a template that cannot be used; .code
    |   `-- ExpandProblem         ruleformat/envexpand a ${VAR} that cannot be expanded; .code
    |-- events and state
    |   |-- MalformedEvent        wire/decode         not the Kryten-Robot protocol (ValueError)
    |   `-- StateFull             engine/state        no room for a new key (also RuntimeError)
    |-- replies
    |   |-- RenderWorkerError     dispatch/renderpool a render worker failed (also RuntimeError)
    |   |-- CompletionError       dispatch/llm        one model call failed; .outcome says how
    |   `-- NoUsableModel         service/responder   no usable model in a chain (ValueError)
    |-- connecting to NATS
    |   |-- NatsAuthError         natsauth            the nats: keys cannot be used (ValueError)
    |   `-- NatsRefused           natsauth            the server refused them (RuntimeError)
    |-- the command line
    |   `-- NoConfigFound         cli/configpath      no --config, no default config (LookupError)
    `-- the service
        |-- BadRequest            service/commands    a command request we cannot read (ValueError)
        |-- RestartNoticeError    service/lifecycle   a group restart notice we cannot act on
        |-- StartupError          service/startup     cannot start; the message says what to fix
        |-- Stopped               service/startup     stopped before it was up (a clean exit)
        |-- UnknownChannel        service/channel     a command named no channel served (ValueError)
        |-- RulesFailed           service/rulemanager the rules did not load (also RuntimeError)
        |-- ConnectStopped        service/bus         stopped before NATS was reachable
        |-- NoResponders          service/bus         nobody listens on a request's subject
        |-- RequestTimeout        service/bus         a request's answer did not come in time
        |-- EmbeddedNatsError     service/embedded    the embedded nats-server did not start
        |-- StateUnavailable      service/kvstate     the state bucket is unreachable (RuntimeError)
        |-- TailError             service/tail        `tail` cannot reach NATS (also RuntimeError)
        `-- _TooLarge             service/metrics     an HTTP request past our bounds (internal)

``tests/test_errors.py`` checks that every exception class in the package is in
this tree and named here.
"""

from __future__ import annotations


class KrytenRulesError(Exception):
    """The root of every exception kryten-rules raises."""


__all__ = ["KrytenRulesError"]
