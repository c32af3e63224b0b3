"""The public API is deliberate: exactly these names, each importable, none heavy."""

from __future__ import annotations

import subprocess
import sys

import kryten_rules

EXPECTED = {
    "ChatEvent", "Decision", "Diagnostic", "Engine", "Media", "RuleSet", "RuleSetError",
    "ServiceConfig", "Severity", "Span", "SystemClock", "TraceEntry", "VirtualClock",
    "__version__", "check_paths", "load_config", "load_ruleset",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(kryten_rules.__all__) == EXPECTED
    for name in kryten_rules.__all__:
        assert getattr(kryten_rules, name) is not None


def test_names_come_from_their_stage_modules() -> None:
    from kryten_rules.compile.load import load_ruleset
    from kryten_rules.engine.evaluate import Engine

    assert kryten_rules.Engine is Engine
    assert kryten_rules.load_ruleset is load_ruleset


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        kryten_rules.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_no_runtime() -> None:
    code = (
        "import sys, kryten_rules; from kryten_rules import load_ruleset;"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('litellm', 'nats')"
        " or m in ('kryten_rules.engine.evaluate', 'kryten_rules.service.bot')];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
