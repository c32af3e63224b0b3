"""Stage 1, ``kryten_rules.ruleformat.yamlload``: nodes that know where they stand.

Unit tests of positions and of the problems YAML libraries usually hide, and
property tests: whatever bytes a moderator saves, ``check_paths`` answers with
diagnostics, never an exception.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryten_rules.compile.load import check_paths
from kryten_rules.diagnostics import Severity, Span
from kryten_rules.ruleformat.yamlload import MAX_FILE_BYTES, Node, load_file, load_text

RULE = textwrap.dedent(
    """\
    kryten_rules: 1
    rules:
      - id: kung-fu
        on: chatmsg
        match: {any: ["kung fu", karate], regex: ['\\bbruce\\s+lee\\b']}
        probability: 0.2
        prompt: |
          {{ user.name }} said {{ message }}
          Answer in one line.
        reply: >-
          folded
          text
        fallback_reply: "quoted"
        description: plain text
    """
)


def load(text: str) -> tuple[Node, list]:
    root, diags = load_text(text, "f.yaml")
    assert root is not None
    return root, diags


def codes(diags: list) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in diags]


# --- positions ----------------------------------------------------------------------


def test_key_and_value_positions() -> None:
    root, diags = load(RULE)
    assert diags == []
    assert root.span == Span("f.yaml", 1, 1)
    assert root.key_span("kryten_rules") == Span("f.yaml", 1, 1)
    assert root.key_span("rules") == Span("f.yaml", 2, 1)
    assert root.value["kryten_rules"].span == Span("f.yaml", 1, 15)
    rules = root.value["rules"]
    assert rules.is_seq and rules.span == Span("f.yaml", 3, 3)  # the first "-"
    rule = rules.value[0]
    assert rule.is_map and rule.span == Span("f.yaml", 3, 5)
    assert rule.key_span("id") == Span("f.yaml", 3, 5)
    assert rule.value["id"].span == Span("f.yaml", 3, 9)
    assert rule.key_span("probability") == Span("f.yaml", 6, 5)
    assert rule.value["probability"].span == Span("f.yaml", 6, 18)
    match = rule.value["match"]
    assert match.span == Span("f.yaml", 5, 12)  # the "{"
    assert match.key_span("regex") == Span("f.yaml", 5, 39)
    any_ = match.value["any"]
    assert [n.span.column for n in any_.value] == [19, 30]
    assert [n.value for n in any_.value] == ["kung fu", "karate"]
    assert match.value["regex"].value[0].value == r"\bbruce\s+lee\b"


def test_block_scalar_flag_and_indicator_position() -> None:
    rule = load(RULE)[0].value["rules"].value[0]
    prompt = rule.value["prompt"]
    assert prompt.block and prompt.span == Span("f.yaml", 7, 13)  # the "|" indicator
    assert prompt.value == "{{ user.name }} said {{ message }}\nAnswer in one line.\n"
    reply = rule.value["reply"]
    assert reply.block and reply.value == "folded text"
    for key in ("fallback_reply", "description", "id"):
        assert not rule.value[key].block, key


def test_scalar_types_follow_yaml_1_1_but_keys_stay_text() -> None:
    root, diags = load(
        "kryten_rules: 1\non: yes\nyes: no\n1: 2.5\nnull: ~\nwhen: 2024-05-01\nbin: !!binary aGk=\n"
    )
    assert diags == []
    assert list(root.value) == ["kryten_rules", "on", "yes", "1", "null", "when", "bin"]
    assert root.value["on"].value is True
    assert root.value["yes"].value is False
    assert root.value["1"].value == 2.5
    assert root.value["null"].value is None
    assert root.value["when"].value == "2024-05-01"  # dates stay as written
    assert isinstance(root.value["bin"].value, str)


def test_on_key_of_a_rule_is_the_string_on() -> None:
    rule = load(RULE)[0].value["rules"].value[0]
    assert "on" in rule.value and True not in rule.value
    assert rule.plain()["on"] == "chatmsg"


def test_plain_get_items_and_at() -> None:
    root, _ = load(RULE)
    plain = root.plain()
    assert plain["rules"][0]["match"]["any"] == ["kung fu", "karate"]
    assert root.get("nope") is None and root.value["rules"].get("x") is None
    assert [k for k, _ in root.items()] == ["kryten_rules", "rules"]
    assert list(root.value["rules"].items()) == []
    assert root.at(("rules", 0, "match", "any", 1)).value == "karate"
    # missing parts stop at the deepest node that exists
    assert root.at(("rules", 0, "cooldown", "rule")) is root.value["rules"].value[0]
    assert root.at(("rules", 7)) is root.value["rules"]
    assert root.key_span("nope") == root.span


def test_positions_in_flow_sequences_and_crlf() -> None:
    root, diags = load("kryten_rules: 1\r\nrules: [{id: a, reply: x}, {id: b, reply: y}]\r\n")
    assert diags == []
    second = root.value["rules"].value[1]
    assert second.span == Span("f.yaml", 2, 28)
    assert second.value["reply"].span == Span("f.yaml", 2, 43)


# --- problems YAML libraries hide ---------------------------------------------------


def test_duplicate_keys_are_reported_at_the_second_key() -> None:
    root, diags = load("kryten_rules: 1\nrules:\n  - id: a\n    reply: x\n    reply: y\n")
    assert codes(diags) == [("duplicate-key", 5, 5)]
    assert "first defined at line 4" in diags[0].message
    assert diags[0].severity is Severity.ERROR
    assert list(root.value["rules"].value[0].value) == ["id", "reply"]


def test_duplicate_keys_at_every_level() -> None:
    _, diags = load("a: 1\na: 2\nb: {c: 1, c: 2}\nd:\n  - {e: 1}\n  - {e: 1, e: 1}\n")
    assert codes(diags) == [
        ("duplicate-key", 2, 1),
        ("duplicate-key", 3, 11),
        ("duplicate-key", 6, 12),
    ]


def test_merge_key_is_rejected() -> None:
    _, diags = load("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert codes(diags) == [("yaml-merge-key", 3, 3)]
    assert diags[0].hint and "defaults:" in diags[0].hint


def test_complex_key_is_rejected() -> None:
    _, diags = load("? [a, b]\n: 1\nok: 2\n")
    assert codes(diags) == [("yaml-key", 1, 3)]


def test_tab_indentation() -> None:
    root, diags = load_text("kryten_rules: 1\nrules:\n\t- id: a\n", "f.yaml")
    assert root is None
    assert codes(diags) == [("yaml-tab", 3, 1)]
    assert diags[0].hint == "YAML indents with spaces only; replace the tab"


def test_tab_inside_quoted_text_is_fine() -> None:
    _, diags = load('kryten_rules: 1\nrules:\n  - id: a\n    reply: "a\tb"\n')
    assert diags == []


def test_undefined_alias() -> None:
    root, diags = load_text("a: &x 1\nb: *y\n", "f.yaml")
    assert root is None
    assert codes(diags) == [("yaml-alias", 2, 4)]
    assert diags[0].hint and "&name" in diags[0].hint


def test_defined_scalar_alias_is_followed() -> None:
    root, diags = load("a: &x hello\nb: *x\n")
    assert diags == [] and root.value["b"].value == "hello"


def test_syntax_error_position() -> None:
    # The over-indented line continues the plain scalar `a`, so YAML stops at its colon.
    root, diags = load_text("kryten_rules: 1\nrules:\n  - id: a\n     reply: x\n", "f.yaml")
    assert root is None
    assert codes(diags) == [("yaml-syntax", 4, 11)]
    assert "mapping values are not allowed" in diags[0].message
    assert diags[0].hint == "check the indentation and that every key ends with ':'"


def test_several_documents_are_a_syntax_error() -> None:
    root, diags = load_text("kryten_rules: 1\n---\nkryten_rules: 1\n", "f.yaml")
    assert root is None and codes(diags) == [("yaml-syntax", 2, 1)]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_documents(text: str) -> None:
    root, diags = load_text(text, "f.yaml")
    assert root is None or root.value is None
    if root is None:
        assert codes(diags) == [("empty-file", 1, 1)]


def test_python_tags_are_not_constructed() -> None:
    root, diags = load("reply: !!python/name:os.system\nx: !!python/object/apply:os.getcwd []\n")
    assert [d.code for d in diags] == ["yaml-value"]
    assert root.value["reply"].value is None
    assert root.value["x"].value == []  # a tagged sequence stays plain data


# --- depth and size limits ----------------------------------------------------------


def nested(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def test_depth_limit() -> None:
    assert load(nested(40))[1] == []
    assert load(nested(63))[1] == []  # the root mapping plus 63 lists: 64 levels
    root, diags = load(nested(64))
    assert codes(diags) == [("yaml-too-deep", 1, 67)]
    assert root.at(("a",) + (0,) * 70).value is None
    _, diags = load(nested(500))
    assert [d.code for d in diags] == ["yaml-too-deep"]


def test_depth_limit_on_block_mappings() -> None:
    text = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80))
    _, diags = load(text)
    assert [d.code for d in diags] == ["yaml-too-deep"]


def test_extreme_nesting_is_a_diagnostic_not_a_crash() -> None:
    root, diags = load_text(nested(100_000), "f.yaml")
    assert root is None and [d.code for d in diags] == ["yaml-syntax"]


def test_recursive_anchor_is_reported_as_a_loop() -> None:
    root, diags = load_text("rules: &a [*a]\n", "f.yaml")
    assert root is not None and [d.code for d in diags] == ["yaml-alias"]
    assert "loop" in diags[0].message


def test_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with f.open("wb") as out:
        out.write(b"kryten_rules: 1\nrules:\n")
        out.seek(MAX_FILE_BYTES)
        out.write(b"\n")
    doc = load_file(f)
    assert doc.root is None
    assert codes(doc.diagnostics) == [("file-too-large", 1, 1)]
    assert str(MAX_FILE_BYTES) in doc.diagnostics[0].message


def test_large_file_under_the_limit_loads(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    body = "".join(
        f'  - id: rule-{i}\n    match: {{any: [word{i}]}}\n    reply: "{{{{ user.name }}}}"\n'
        for i in range(5000)
    )
    f.write_text("kryten_rules: 1\nrules:\n" + body)
    assert 300_000 < f.stat().st_size < MAX_FILE_BYTES
    doc = load_file(f)
    assert doc.diagnostics == [] and doc.root is not None
    last = doc.root.value["rules"].value[-1]
    assert last.value["id"].value == "rule-4999"
    assert last.span.line == 2 + 3 * 4999 + 1


# --- bytes and encodings -------------------------------------------------------------


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbfkryten_rules: 1\nrules: []\n")
    doc = load_file(f)
    assert doc.diagnostics == [] and doc.root is not None
    assert doc.root.key_span("kryten_rules").column == 1


def test_not_utf8_position(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"kryten_rules: 1\nrules:\n  - id: caf\n    reply: caf\xe9\n")
    doc = load_file(f)
    assert doc.root is None
    assert codes(doc.diagnostics) == [("not-utf8", 4, 15)]
    assert "0xe9" in doc.diagnostics[0].message


def test_unreadable_path_is_a_diagnostic(tmp_path: Path) -> None:
    doc = load_file(tmp_path / "missing.yaml")
    assert doc.root is None and [d.code for d in doc.diagnostics] == ["file-unreadable"]
    doc = load_file(tmp_path)  # a directory
    assert doc.root is None and [d.code for d in doc.diagnostics] == ["file-unreadable"]


def test_unicode_columns_count_characters() -> None:
    root, _ = load("ключ: значение\nb: {ä: 1, ö: 2}\n")
    assert root.value["ключ"].span.column == 7
    assert root.value["b"].key_span("ö").column == 11


# --- property tests: diagnostics, never exceptions ------------------------------------

FRAGMENTS = [
    "kryten_rules: 1",
    "kryten_rules: 2",
    "kryten_rules_config: 1",
    "kryten_rules_test: 1",
    "rules:",
    "rules: []",
    "rules: {}",
    "- id: mention",
    "  - id: kung-fu",
    "id: Bad_ID",
    "    on: chatmsg",
    "on: pm",
    "  on: yes",
    "match: {mention: true}",
    "    match:",
    '      any: [karate, "kung fu"]',
    "any: karate",
    "regex: ['(?=x)']",
    "regex: ['\\bok\\b']",
    "      regex:",
    "        - '(a'",
    "    prompt: |",
    "      {{ user.name }} said {{ message }}",
    "      {% if media %}{{ media.title }}",
    "{% endif %}",
    "{{ user._x }}",
    "{{ ''.__class__ }}",
    'reply: "{{ message|upper }}"',
    "prompt_file: ../prompts/x.j2",
    "prompt_file: /etc/passwd",
    "cooldown: {rule: 5m, user: 5 minutes}",
    "probability: 1.5",
    "when: {rank: {min: admin, max: guest}}",
    "persona: {name: X, aliases: [x]}",
    "ranks: [{min: owner, max: 1}]",
    "limits: {global: {cooldown: 5s}}",
    "defaults: {chain: fast}",
    "name: &n ripley",
    "who: *n",
    "who: *undefined",
    "<<: {a: 1}",
    "? complex",
    ": value",
    "cases:",
    "  - name: c",
    "    events: [{at: 0s, say: hi, expect: {fires: nope}}]",
    "models: {fast: {model: x}}",
    "chains: {default: {models: [slow]}}",
    "cytube: {channel: c, username: u}",
    "---",
    "...",
    "\t- tab",
    "key: 'unclosed",
    'key: "unclosed',
    "[",
    "]",
    "{",
    "}",
    "&",
    "*",
    "!",
    "%YAML 1.1",
    "!!python/object:os.system",
    "- - - x",
    "      deeply: {nested: [1, [2, [3]]]}",
    "# comment",
    "",
    " ",
    "é: ü",
    "\u2028",
    "\x85",
]

yamlish = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.builds(lambda n, f: " " * n + f, st.integers(0, 8), st.sampled_from(FRAGMENTS)),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
    ),
    max_size=25,
).map("\n".join)

KEYS = st.sampled_from(
    [
        "kryten_rules",
        "rules",
        "id",
        "on",
        "match",
        "any",
        "all",
        "regex",
        "none",
        "when",
        "rank",
        "min",
        "max",
        "media",
        "min_duration",
        "max_duration",
        "cooldown",
        "rule",
        "user",
        "limit",
        "per_hour",
        "probability",
        "prompt",
        "prompt_file",
        "reply",
        "fallback_reply",
        "chain",
        "persona",
        "name",
        "aliases",
        "system_prompt",
        "ranks",
        "limits",
        "global",
        "defaults",
        "priority",
        "enabled",
        "mode",
        "respond_via",
        "max_parts",
        "cases",
        "events",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "chatmsg",
            "5m",
            "1h30m",
            "admin",
            "moderater",
            "{{ user.name }}",
            "{{ nope }}",
            "{% if %}",
            "(?<=x)y",
            "../x.j2",
            "../../etc/passwd",
            ".",
        ]
    ),
)
structures = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)
documents = st.one_of(
    structures,
    st.builds(
        lambda version, rest: {version: 1, **rest},
        st.sampled_from(["kryten_rules", "kryten_rules_config", "kryten_rules_test"]),
        st.dictionaries(KEYS, structures, max_size=6),
    ),
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_text(data: bytes) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "rules"
        home.mkdir()
        f = home / "fuzz.yaml"
        f.write_bytes(data)
        checked = check_paths([f])
        for d in checked.diagnostics:
            assert d.code and d.message and d.span.line >= 1 and d.span.column >= 1
        return checked.diagnostics


@FUZZ
@given(yamlish)
def test_yamlish_text_never_raises(text: str) -> None:
    check_text(text.encode("utf-8"))


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check_text(data)


@FUZZ
@given(documents, st.booleans())
def test_dumped_structures_never_raise(doc: object, flow: bool) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    diags = check_text(text.encode("utf-8"))
    if not isinstance(doc, dict) or not doc:
        assert diags, "a document that is not a mapping is never a valid file"


@FUZZ
@given(documents)
def test_load_text_round_trips_plain_data(doc: object) -> None:
    """What safe_dump writes, load_text reads back (keys as text, as YAML 1.2 does).

    Except numbers no rule file may hold (NaN, infinity, past 2**53): those are
    refused with their own codes (issue #9 item 9).
    """
    text = yaml.safe_dump(doc, sort_keys=False)
    root, diags = load_text(text, "f.yaml")
    assert not [
        d for d in diags if d.code not in ("yaml-too-deep", "bad-number", "number-range")
    ]
    if root is not None and not diags:
        assert _same(root.plain(), yaml.safe_load(text))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
