"""``${VAR}`` / ``${VAR:-default}`` in config strings (kryten_rules.ruleformat.envexpand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kryten_rules.compile.load import load_config
from kryten_rules.diagnostics import RuleSetError
from kryten_rules.ruleformat.envexpand import ExpandProblem, expand

ENV = {"HOST": "nats.internal", "EMPTY": "", "PORT": "4222"}
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
VALUES = st.text(max_size=30)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("nats://${HOST}:${PORT}", "nats://nats.internal:4222"),
        ("${MISSING:-127.0.0.1}", "127.0.0.1"),
        ("${EMPTY:-fallback}", "fallback"),  # empty counts as unset, as in the shell
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("${MISSING:-a:-b}", "a:-b"),  # the default is literal text up to "}"
        ("$${HOST}", "${HOST}"),  # escaped
        ("$$${HOST}", "$${HOST}"),  # "$" before "${" escapes it, once
        ("costs $5, $HOST, $", "costs $5, $HOST, $"),  # a lone "$" is a dollar sign
        ("no references", "no references"),
    ],
)
def test_expand(text: str, expanded: str) -> None:
    assert expand(text, ENV) == expanded


@pytest.mark.parametrize(
    ("text", "code", "offset"),
    [
        ("nats://${MISSING}:4222", "env-unset", 7),
        ("${HOST", "env-syntax", 0),
        ("a ${} b", "env-syntax", 2),
        ("${1ST}", "env-syntax", 0),
        ("${HOST-default}", "env-syntax", 0),  # only ":-" is a default
        ("${HO ST}", "env-syntax", 0),
    ],
)
def test_problems(text: str, code: str, offset: int) -> None:
    with pytest.raises(ExpandProblem) as raised:
        expand(text, ENV)
    assert (raised.value.code, raised.value.offset) == (code, offset)


def test_an_unclosed_reference_does_not_repeat_the_text() -> None:
    # the text may be a URL with a password in it
    with pytest.raises(ExpandProblem) as raised:
        expand("nats://bot:s3cret@${HOST", ENV)
    assert "s3cret" not in str(raised.value) and "character 19" in str(raised.value)


@given(st.text().filter(lambda t: "${" not in t))
def test_text_without_a_reference_is_unchanged(text: str) -> None:
    assert expand(text, {}) == text


@given(NAMES, VALUES, VALUES, VALUES)
def test_a_set_variable_is_its_value_with_or_without_a_default(
    name: str, value: str, before: str, after: str
) -> None:
    before, after = before.replace("$", ""), after.replace("$", "")
    env = {name: value}
    assert expand(f"{before}${{{name}}}{after}", env) == before + value + after
    default = after.replace("}", "")
    want = value if value else default
    assert expand(f"${{{name}:-{default}}}", env) == want


@given(NAMES, VALUES)
def test_an_escaped_reference_is_literal_and_never_looked_up(name: str, value: str) -> None:
    assert expand(f"$${{{name}}}", {name: value}) == f"${{{name}}}"


@given(NAMES)
def test_an_unset_variable_names_itself(name: str) -> None:
    with pytest.raises(ExpandProblem) as raised:
        expand(f"x${{{name}}}", {})
    assert raised.value.code == "env-unset" and name in str(raised.value)


def _config(tmp_path: Path, nats: str) -> Path:
    (tmp_path / "rules").mkdir()
    path = tmp_path / "kryten-rules.yaml"
    path.write_text(
        "kryten_rules_config: 1\n"
        f"nats:\n{nats}"
        "cytube: {channel: c, username: '${KR_TEST_BOT:-bot}'}\n"
        "rules: rules/\n"
        "metrics: {port: 9100}\n",
        encoding="utf-8",
    )
    return path


def test_load_config_expands_strings_and_checks_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KR_TEST_NATS", "nats://10.1.2.3:4222")
    monkeypatch.setenv("KR_TEST_USER", "kryten")
    cfg = load_config(
        _config(tmp_path, "  url: ${KR_TEST_NATS}\n  user: ${KR_TEST_USER}\n"
                "  password_env: KR_TEST_PASSWORD\n")
    )
    assert cfg.nats.url == "nats://10.1.2.3:4222"
    assert cfg.nats.user == "kryten"
    assert cfg.nats.password_env == "KR_TEST_PASSWORD"  # a name, never expanded
    assert cfg.cytube.username == "bot"
    assert cfg.metrics_port == 9100


def test_an_unset_variable_is_a_config_error_at_its_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KR_TEST_UNSET", raising=False)
    path = _config(tmp_path, "  url: 'nats://${KR_TEST_UNSET}:4222'\n")
    with pytest.raises(RuleSetError) as raised:
        load_config(path)
    [d] = raised.value.diagnostics
    assert (d.code, str(d.span)) == ("env-unset", f"{path}:3:8")
    assert "KR_TEST_UNSET" in d.message
