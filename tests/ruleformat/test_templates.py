"""The template sandbox: known Jinja2 SSTI payloads, resource abuse, the names of
docs/rules.md "Template variables", StrictUndefined and the filters moderators use.

Every payload is checked, compiled and rendered in a forked child with a memory
ceiling and a deadline, so a regression that hangs or allocates gigabytes fails
the test instead of taking the test run (or the machine) down with it.
"""

from __future__ import annotations

import multiprocessing
import resource
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import check_paths, load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.events import ChatEvent, Media
from kryten_rules.ruleformat.templatecheck import check_template
from kryten_rules.ruleformat.templates import (
    VARIABLES,
    TemplateProblem,
    compile_template,
    environment,
)

GUARD_SECONDS = 2.0
GUARD_HEADROOM = 256 * 1024 * 1024  # bytes of address space a child may add
GUARD_MAX_RSS_GROWTH_KB = 128 * 1024  # a template may not make the process grow by this

# What must never come out of a template: Python internals, shells, files.
LEAKS = (
    "<class",
    "subclasses",
    "<module",
    "<function",
    "<built-in",
    "<bound method",
    "__",
    "popen",
    "TemplateReference",
    "Context",
    "root:",
    "uid=",
    "environ",
    "jinja2",
)


def realistic_context() -> dict[str, Any]:
    """A context shaped exactly as Engine builds one (see the engine test below)."""
    return {
        "user": {"name": "alice", "rank": 1, "rank_name": "registered"},
        "message": "who did the stunts in this one?",
        "text": "cynthia, who did the stunts in this one?",
        "match": "stunts",
        "groups": ["stunts"],
        "media": {"title": "Lady Reporter", "duration": 5700.0, "type": "yt", "id": "abc123"},
        "history": [
            {"user": "bob", "text": "kung fu rules"},
            {"user": "carol", "text": "best kick ever"},
        ],
        "persona": {"name": "Cynthia", "aliases": ["cynthia", "rothbot"]},
        "channel": "420grindhouse",
        "rule": {"id": "mention", "description": "Answer whoever addresses the bot"},
        "now": datetime(2024, 5, 17, 21, 30, tzinfo=UTC),
    }


# --- the guard -------------------------------------------------------------------------


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limited_child(conn: Any, fn: Callable[[], dict[str, Any]]) -> None:
    limit = _vm_size() + GUARD_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, Any] = {"codes": [], "outcome": None, "detail": ""}
    try:
        out.update(fn())
    except MemoryError:
        out["outcome"], out["detail"] = "memory", "MemoryError"
    except BaseException as exc:  # anything but TemplateProblem escaping is a bug
        out["outcome"], out["detail"] = "crash", repr(exc)[:500]
    out["rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    conn.send(out)
    conn.close()


def run_limited(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child with a memory ceiling and a deadline."""
    mp = multiprocessing.get_context("fork")
    parent, child = mp.Pipe(duplex=False)
    proc = mp.Process(target=_limited_child, args=(child, fn), daemon=True)
    start = time.monotonic()
    proc.start()
    child.close()
    try:
        if parent.poll(GUARD_SECONDS):
            result = parent.recv()
        else:
            result = {"outcome": "timeout", "codes": [], "detail": f"> {GUARD_SECONDS}s"}
    except EOFError:
        result = {"outcome": "died", "codes": [], "detail": "child died without a result"}
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    result["seconds"] = time.monotonic() - start
    return result


def guarded(source: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check, compile and render ``source`` under :func:`run_limited`."""
    ctx = realistic_context() if context is None else context

    def job() -> dict[str, Any]:
        out: dict[str, Any] = {"codes": sorted({p.code for p in check_template(source)})}
        template = compile_template(source)
        try:
            text = template.render(ctx)
        except TemplateProblem as exc:
            out["outcome"], out["detail"] = "problem", f"{exc.code}: {exc.message}"
        else:
            out["outcome"], out["detail"] = "text", text
        return out

    return run_limited(job)


def assert_contained(result: dict[str, Any], static: set[str] | None) -> None:
    """The contract for a hostile template.

    Either the static check rejects it with one of ``static`` codes, or
    rendering raises ``TemplateProblem``. In every case: no internals in the
    output, no hang, no gigabytes, no exception other than TemplateProblem.
    """
    outcome, detail = result["outcome"], result["detail"]
    assert outcome not in ("timeout", "died"), f"template hung or killed the process: {result}"
    assert outcome not in ("memory", "crash"), f"not contained: {result}"
    assert "MemoryError" not in detail, f"only the guard's memory ceiling stopped it: {result}"
    assert result["rss_growth_kb"] < GUARD_MAX_RSS_GROWTH_KB, f"allocated too much: {result}"
    if outcome == "text":
        for leak in LEAKS:
            assert leak not in detail, f"rendered internals ({leak!r}): {detail!r}"
    rejected = bool(static) and bool(set(result["codes"]) & static)
    assert rejected or outcome == "problem", (
        f"neither rejected at validate time (codes {result['codes']}, wanted one of {static})"
        f" nor refused at render time: {result}"
    )


# --- the payloads ----------------------------------------------------------------------

UNSAFE = {"template-unsafe"}
UNKNOWN = {"template-unknown-name"}
INCLUDE = {"template-include"}
RUNTIME: set[str] = set()  # passes the static check: the sandbox must refuse it at render time

# (id, source, validate-time codes accepted as a rejection)
SSTI: list[tuple[str, str, set[str]]] = [
    ("mro-subclasses", "{{ ''.__class__.__mro__[1].__subclasses__() }}", UNSAFE),
    ("self-context", "{{ self._TemplateReference__context }}", UNSAFE),
    ("cycler-popen", "{{ cycler.__init__.__globals__.os.popen('id').read() }}", UNSAFE | UNKNOWN),
    ("lipsum-os", "{{ lipsum.__globals__['os'].popen('id') }}", UNSAFE | UNKNOWN),
    ("config-items", "{{ config.items() }}", UNKNOWN),
    ("request-globals", "{{ request.application.__globals__ }}", UNSAFE | UNKNOWN),
    ("attr-class", "{{ ''|attr('__class__') }}", RUNTIME),
    ("attr-hex-escaped", r"{{ user|attr('\x5f\x5fclass\x5f\x5f') }}", RUNTIME),
    ("item-hex-escaped", r"{{ user['\x5f\x5fclass\x5f\x5f'] }}", UNSAFE),
    ("item-class", "{{ message['__class__'] }}", UNSAFE),
    ("attr-concat", "{{ user|attr('_' ~ '_class__') }}", RUNTIME),
    ("attr-self-context", "{{ self|attr('_TemplateReference__context') }}", RUNTIME),
    ("attr-now-class", "{{ now|attr('__class__') }}", RUNTIME),
    (
        "for-subclasses",
        "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
        UNSAFE,
    ),
    ("namespace-globals", "{{ namespace.__init__.__globals__ }}", UNSAFE | UNKNOWN),
    ("joiner-globals", "{{ joiner.__init__.__globals__ }}", UNSAFE | UNKNOWN),
    ("format-globals", "{{ user.name.format.__globals__ }}", UNSAFE),
    ("format-filter-class", '{{ "%s"|format(user.__class__) }}', UNSAFE),
    ("concat-class", "{{ (user.name ~ '').__class__ }}", UNSAFE),
    ("set-class", "{% set x = user.name.__class__ %}{{ x }}", UNSAFE),
    ("append-self", "{{ [].append.__self__ }}", UNSAFE),
    ("str-format-class", "{{ '{0.__class__}'.format(user) }}", RUNTIME),
    ("str-format-globals", "{{ '{0.__init__.__globals__}'.format(message) }}", RUNTIME),
    ("format-map-class", "{{ '{x.__class__}'.format_map({'x': user}) }}", RUNTIME),
    ("range-globals", "{{ range.__globals__ }}", UNSAFE),
    ("attr-range-globals", "{{ range|attr('__globals__') }}", RUNTIME),
    ("loop-var-class", "{% for l in history %}{{ l.__class__ }}{% endfor %}", UNSAFE),
    ("macro-globals", "{% macro m() %}{{ m.__globals__ }}{% endmacro %}{{ m() }}", UNSAFE),
    ("method-self", "{{ now.utcoffset.__self__ }}", UNSAFE),
    ("message-subclasses", "{{ message.__class__.__base__.__subclasses__() }}", UNSAFE),
    ("list-mutation", "{{ history.append(user) }}", RUNTIME),
    ("list-pop", "{{ groups.pop() }}", RUNTIME),
    ("dict-mutation", "{{ user.update({'rank': 255}) }}", UNKNOWN),
    ("open-builtin", "{{ open('/etc/passwd').read() }}", UNKNOWN),
    ("import-builtin", "{{ __import__('os').popen('id').read() }}", UNKNOWN),
    ("include-passwd", "{% include '/etc/passwd' %}", INCLUDE),
    ("import-os", "{% import 'os' as os %}{{ os.popen('id') }}", INCLUDE),
    ("from-import", "{% from '/etc/passwd' import root %}", INCLUDE),
    ("extends-passwd", "{% extends '/etc/passwd' %}", INCLUDE),
    ("include-dynamic", "{% include message %}", INCLUDE),
    ("range-huge-list", "{{ range(10**9)|list }}", RUNTIME),
    ("range-huge-loop", "{% for i in range(10**9) %}{% endfor %}", RUNTIME),
]


def test_enough_payloads() -> None:
    assert len(SSTI) >= 12
    assert len({name for name, _, _ in SSTI}) == len(SSTI)


@pytest.mark.parametrize(("source", "static"), [p[1:] for p in SSTI], ids=[p[0] for p in SSTI])
def test_ssti_payload_is_contained(source: str, static: set[str]) -> None:
    assert_contained(guarded(source), static)


@pytest.mark.parametrize(
    ("source", "static"),
    [p[1:] for p in SSTI if p[2]],
    ids=[p[0] for p in SSTI if p[2]],
)
def test_ssti_payload_rejected_at_validate_time(source: str, static: set[str]) -> None:
    codes = {p.code for p in check_template(source)}
    assert codes & static, f"expected one of {static}, got {codes}"


# Resource abuse: a moderator may shape the bot, not freeze or exhaust the service.
# Each of these passes check_template today and is stopped only by the guard.
_FOLD = (
    "constant folding: Jinja evaluates constant arithmetic while generating code, which "
    "check_template does too (meta.find_undeclared_variables, templates.py:137) as does "
    "compile_template (templates.py:211); nothing intercepts '*' or '**' (_Env, "
    "templates.py:59), so validate builds a 1 GB string or never returns"
)
_SIZE = (
    "no size limit at render time: the output is cut to MAX_OUTPUT_CHARS only after the "
    "whole string was built (templates.py:205); '*', '%'-format and str.format widths, "
    "center/indent widths allocate gigabytes"
)
_CPU = (
    "no CPU budget: each range() is capped at MAX_RANGE (templates.py:70) but nested loops "
    "multiply, and render has no deadline (templates.py:197)"
)
DOS = [
    pytest.param(
        "{{ 'a' * 10**9 }}",
        id="const-string-times",
    ),
    pytest.param(
        "{{ 10 ** (10 ** 10) }}",
        id="const-power",
    ),
    pytest.param(
        "{{ user.name * 1000000000 }}",
        id="var-string-times",
    ),
    pytest.param(
        "{{ '%1000000000s'|format(user.name) }}",
        id="percent-format-width",
    ),
    pytest.param(
        "{{ '{0:>1000000000}'.format(user.name) }}",
        id="str-format-width",
    ),
    pytest.param(
        "{{ user.name|center(1000000000) }}",
        id="center-width",
    ),
    pytest.param(
        "{{ message|indent(1000000000, true) }}",
        id="indent-width",
    ),
    pytest.param(
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        id="nested-ranges",
    ),
]


@pytest.mark.parametrize("source", DOS)
def test_resource_abuse_is_contained(source: str) -> None:
    assert_contained(guarded(source), {"template-unsafe"})


def test_guard_accepts_a_harmless_template() -> None:
    """The guard itself: a normal template renders, quickly and small."""
    result = guarded("{{ user.name }} asked about {{ media.title }}")
    assert result["outcome"] == "text", result
    assert result["detail"] == "alice asked about Lady Reporter"
    assert result["codes"] == []
    assert result["seconds"] < GUARD_SECONDS


def test_range_is_limited_but_usable() -> None:
    assert compile_template("{{ range(3)|join(',') }}").render({}) == "0,1,2"
    with pytest.raises(TemplateProblem) as exc:
        compile_template("{{ range(100000)|list|length }}").render({})
    assert exc.value.code == "template-unsafe"
    assert "range" in exc.value.message


# --- through a real rule file ---------------------------------------------------------


def _rule_file(tmp_path: Path, template: str, key: str = "prompt") -> tuple[Path, int]:
    """A rule file whose rule holds ``template`` as a block scalar; returns (path, line)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    body = textwrap.dedent(
        """\
        kryten_rules: 1
        rules:
          - id: hostile
            match: {regex: ['^!x\\b']}
            %s: |
              %s
        """
    ) % (key, template)
    path = rules / "hostile.yaml"
    path.write_text(body, encoding="utf-8")
    line = body.splitlines().index("      " + template) + 1
    return path, line


FILE_PAYLOADS = [p for p in SSTI if p[2]]


@pytest.mark.parametrize(
    ("source", "static"),
    [p[1:] for p in FILE_PAYLOADS],
    ids=[p[0] for p in FILE_PAYLOADS],
)
def test_rule_file_payload_reported_with_position(
    tmp_path: Path, source: str, static: set[str]
) -> None:
    path, line = _rule_file(tmp_path, source)
    checked = check_paths([path])
    assert not checked.ok
    hits = [d for d in checked.diagnostics if d.code in static]
    assert hits, [str(d.span) + " " + d.code for d in checked.diagnostics]
    text = path.read_text(encoding="utf-8").splitlines()
    for d in hits:
        assert d.is_error
        assert Path(d.span.file) == path
        assert d.span.line == line, f"{d.span} should be on line {line}"
        assert 1 <= d.span.column <= len(text[line - 1])
        assert str(d.span) == f"{path}:{line}:{d.span.column}"
        assert "hostile" in d.message  # says which rule


def test_rule_file_points_at_the_private_attribute(tmp_path: Path) -> None:
    path, line = _rule_file(tmp_path, "Hi {{ user.name.__class__ }}", key="reply")
    (diag,) = [d for d in check_paths([path]).diagnostics if d.code == "template-unsafe"]
    column = path.read_text().splitlines()[line - 1].index("__class__") + 1
    assert (diag.span.line, diag.span.column) == (line, column)


def test_rule_file_inline_payload_position(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    path = rules / "inline.yaml"
    path.write_text(
        "kryten_rules: 1\n"
        "rules:\n"
        "  - id: dbg\n"
        "    match: {regex: ['^!dbg']}\n"
        '    reply: "{{ cycler.__init__.__globals__ }}"\n',
        encoding="utf-8",
    )
    diags = check_paths([path]).diagnostics
    spans = {(d.code, d.span.line, d.span.column) for d in diags}
    line = path.read_text().splitlines()[4]
    assert ("template-unsafe", 5, line.index("__init__") + 1) in spans
    assert ("template-unsafe", 5, line.index("__globals__") + 1) in spans
    assert ("template-unknown-name", 5, line.index("cycler") + 1) in spans


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "{{ 'a' * 10**9 }}",
            id="const-string-times",
        ),
        pytest.param(
            "{{ 10 ** (10 ** 10) }}",
            id="const-power",
        ),
    ],
)
def test_rule_file_resource_abuse_rejected(tmp_path: Path, source: str) -> None:
    path, _ = _rule_file(tmp_path, source)

    def job() -> dict[str, Any]:
        checked = check_paths([path])
        codes = sorted({d.code for d in checked.diagnostics})
        return {"outcome": "checked", "codes": codes, "ok": checked.ok}

    result = run_limited(job)
    assert result["outcome"] == "checked", f"validate itself hung or blew up: {result}"
    assert not result["ok"], f"validate accepts a template that exhausts the service: {result}"


# --- files, undefined names, strictness -------------------------------------------------


def test_environment_cannot_load_templates() -> None:
    env = environment()
    assert env.loader is None
    assert set(env.globals) == {"range"}
    for src in ("{% include 'x.j2' %}", "{% extends 'x.j2' %}", "{% import 'x.j2' as x %}"):
        with pytest.raises(TemplateProblem) as exc:
            compile_template(src).render(realistic_context())
        assert "no loader" in exc.value.message


def test_templates_cannot_read_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    for src in (
        f"{{% include '{secret}' %}}",
        f"{{% extends '{secret}' %}}",
        f"{{% import '{secret}' as s %}}",
        f"{{{{ open('{secret}').read() }}}}",
        f"{{{{ lipsum.__globals__.__builtins__.open('{secret}').read() }}}}",
    ):
        assert check_template(src), src
        result = guarded(src)
        assert result["outcome"] in ("problem", "text"), result
        assert "TOPSECRET" not in result["detail"]


def test_strict_undefined_attribute_at_render_time() -> None:
    # `user` is a known name, but the value handed in lacks the attribute.
    with pytest.raises(TemplateProblem) as exc:
        compile_template("{{ user.nickname }}").render(realistic_context())
    assert exc.value.code == "template-render"
    assert "nickname" in exc.value.message
    assert "cannot render" in exc.value.message


def test_strict_undefined_none_media() -> None:
    ctx = realistic_context() | {"media": None}
    with pytest.raises(TemplateProblem) as exc:
        compile_template("Now playing: {{ media.title }}").render(ctx)
    assert exc.value.code == "template-render"
    assert "'None' has no attribute 'title'" in exc.value.message


def test_strict_undefined_missing_name_and_index() -> None:
    with pytest.raises(TemplateProblem) as exc:
        compile_template("{{ nobody }}").render(realistic_context())
    assert "'nobody' is undefined" in exc.value.message
    with pytest.raises(TemplateProblem) as exc:
        compile_template("{{ groups[5] }}").render(realistic_context())
    assert "no element 5" in exc.value.message
    # Not an empty string: even in a condition or a concatenation.
    with pytest.raises(TemplateProblem):
        compile_template("{{ 'x' ~ nobody }}").render(realistic_context())


def test_unknown_names_are_validate_time_errors() -> None:
    (p,) = check_template("Hi {{ usr.name }}")
    assert p.code == "template-unknown-name"
    assert p.hint == "did you mean 'user'?"
    (p,) = check_template("line one\n{{ user.nmae }}")
    assert (p.code, p.line) == ("template-unknown-name", 2)
    assert "name" in (p.hint or "")
    (p,) = check_template("{{ media.titel }}")
    assert p.code == "template-unknown-name"


def test_other_render_failures_are_template_problems() -> None:
    ctx = realistic_context()
    for src in ("{{ 1 / 0 }}", "{{ user.name + 1 }}", "{{ user.rank|truncate(3) }}x{{ 1 // 0 }}"):
        with pytest.raises(TemplateProblem) as exc:
            compile_template(src).render(ctx)
        assert exc.value.code == "template-render", src


def test_long_output_is_capped() -> None:
    out = compile_template("{% for i in range(1000) %}{{ message }}{% endfor %}").render(
        realistic_context()
    )
    assert len(out) <= 20_000


# --- everything docs/rules.md promises works ---------------------------------------------------

ALL_VARIABLES = """\
{{ user.name }}|{{ user.rank }}|{{ user.rank_name }}
{{ message }}|{{ text }}|{{ match }}|{{ groups[0] }}
{{ media.title }}|{{ media.duration }}|{{ media.type }}|{{ media.id }}
{% for line in history %}{{ line.user }}: {{ line.text }};{% endfor %}.
{{ persona.name }}|{{ channel }}|{{ rule.id }}|{{ rule.description }}
{{ now.strftime('%Y-%m-%d %H:%M') }}|{{ now.year }}"""


def test_all_rules_md_variables_pass_the_static_check() -> None:
    assert check_template(ALL_VARIABLES) == []
    # and each name of VARIABLES alone
    for name, attrs in VARIABLES.items():
        assert check_template("{{ " + name + " }}") == [], name
        for attr in attrs or ():
            assert check_template(f"{{{{ {name}.{attr} }}}}") == [], (name, attr)


def test_all_rules_md_variables_render() -> None:
    out = compile_template(ALL_VARIABLES).render(realistic_context())
    assert out.splitlines() == [
        "alice|1|registered",
        "who did the stunts in this one?|cynthia, who did the stunts in this one?|stunts|stunts",
        "Lady Reporter|5700.0|yt|abc123",
        "bob: kung fu rules;carol: best kick ever;.",
        "Cynthia|420grindhouse|mention|Answer whoever addresses the bot",
        "2024-05-17 21:30|2024",
    ]


def test_media_is_optional_with_if() -> None:
    src = '{{ user.name }}{% if media %} while "{{ media.title }}" plays{% endif %}.'
    assert check_template(src) == []
    ctx = realistic_context()
    assert compile_template(src).render(ctx) == 'alice while "Lady Reporter" plays.'
    assert compile_template(src).render(ctx | {"media": None}) == "alice."


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ user.name|upper }}", "ALICE"),
        ("{{ message|truncate(20) }}", "who did the..."),
        ("{{ media.title|truncate(50) }}", "Lady Reporter"),
        ("{{ history|map(attribute='user')|join(', ') }}", "bob, carol"),
        ("{{ groups|join(', ') }}", "stunts"),
        ("{{ media.title|default('x') }}", "Lady Reporter"),
        ("{{ persona.aliases|join('/') }}", "cynthia/rothbot"),
        ("{{ (media.duration // 60)|int }} min", "95 min"),
        ("{{ message|length }}", "31"),
        (
            "{{ user.name|title }} {{ text|lower|replace('cynthia', 'C') }}",
            "Alice C, who did the stunts in this one?",
        ),
        ("{{ '%s is %d'|format(user.name, user.rank) }}", "alice is 1"),
        ("{{ '{} here'.format(user.name) }}", "alice here"),
        ("{% if user.rank >= 2 %}mod{% else %}pleb{% endif %}", "pleb"),
        (
            "{{ history|length }} lines, last: {{ history[-1].text }}",
            "2 lines, last: best kick ever",
        ),
    ],
)
def test_filters_work(source: str, expected: str) -> None:
    assert check_template(source) == []
    assert compile_template(source).render(realistic_context()) == expected


def test_default_filter_covers_missing_media() -> None:
    src = "{{ media.title|default('nothing') }}"
    assert check_template(src) == []
    assert compile_template(src).render(realistic_context() | {"media": None}) == "nothing"


# --- the context the engine really builds ---------------------------------------------------


def test_engine_context_renders_every_variable(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        textwrap.dedent(
            """\
            kryten_rules: 1
            persona: {name: Cynthia, aliases: [cynthia]}
            rules:
              - id: stunts
                description: Talk about stunts
                match: {regex: ['\\b(stunt)s?\\b']}
                prompt: |
            %s
            """
        )
        % textwrap.indent(ALL_VARIABLES, " " * 6),
        encoding="utf-8",
    )
    ruleset = load_ruleset(rules, bot_name="kryten")
    engine = Engine(ruleset, clock=VirtualClock(), seed=0, bot_name="kryten", channel="grind")
    engine.evaluate(ChatEvent("changemedia", media=Media("Lady Reporter", 5700.0, "yt", "abc")))
    engine.evaluate(ChatEvent(user="bob", text="kung fu rules", rank=1))
    decision = engine.evaluate(ChatEvent(user="alice", text="cynthia, who did the stunts?"))
    assert decision.fired == "stunts"
    assert decision.context is not None
    assert set(decision.context) == set(VARIABLES)
    out = decision.rule.prompt.render(decision.context)  # type: ignore[union-attr]
    lines = out.splitlines()
    assert lines[0] == "alice|0|guest"
    assert lines[1] == "who did the stunts?|cynthia, who did the stunts?|stunts|stunt"
    assert lines[2] == "Lady Reporter|5700.0|yt|abc"
    assert lines[3] == "bob: kung fu rules;."
    assert lines[4] == "Cynthia|grind|stunts|Talk about stunts"
    assert lines[5].startswith("1970-01-01 00:00|1970")


# --- issue 9 item 6: what validate accepted and hung the bot or took gigabytes ---------------

# The payloads of the field report, each rejected by validate with a code.
FIELD_PAYLOADS = [
    pytest.param("{{ '%*s'|format(999999999, 'x') }}", id="percent-star-width"),
    pytest.param("{{ '%.999999999f'|format(1.0) }}", id="percent-huge-precision"),
    pytest.param("{{ '%*s' % (999999999, 'x') }}", id="percent-operator-star"),
    pytest.param("{{ '1'.zfill(999999999) }}", id="zfill"),
    pytest.param("{{ 'x'.ljust(999999999) }}", id="ljust"),
    pytest.param("{{ 'x'.rjust(999999999) }}", id="rjust"),
    pytest.param("{{ 'x'.center(999999999) }}", id="center-method"),
    pytest.param("{{ user.name.center(user.rank + 999999999) }}", id="center-computed-width"),
    pytest.param("{{ user.name|center(999999999) }}", id="center-filter"),
    pytest.param("{{ '{:{}}'.format('x', 999999999) }}", id="str-format-nested-width"),
    pytest.param("{{ '{x:{w}}'.format_map({'x': 'a', 'w': 999999999}) }}", id="format-map"),
    pytest.param("{{ ('x'*20000).replace('x', 'x'*20000) }}", id="replace-method"),
    pytest.param("{{ ('x'*20000)|replace('x', 'x'*20000) }}", id="replace-filter"),
    pytest.param("{{ ('\t'*20000).expandtabs(20000) }}", id="expandtabs"),
    pytest.param("{{ (((((9**64)**64)**64)**64)**64) }}", id="pow-tower"),
    pytest.param("{{ ((user.rank ** 64) ** 64) ** 64 }}", id="pow-tower-computed"),
    pytest.param("{{ 2 ** (999999 ** 64) }}", id="float-overflow-exponent"),
    pytest.param(
        "{% for a in 'x' * 20000 %}{% for b in 'x' * 20000 %}{% endfor %}{% endfor %}",
        id="nested-loops",
    ),
    pytest.param(
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        id="nested-ranges-static",
    ),
]


@pytest.mark.parametrize("source", FIELD_PAYLOADS)
def test_field_payload_rejected_by_validate(source: str) -> None:
    def job() -> dict[str, Any]:
        problems = check_template(source)
        return {"outcome": "checked", "codes": sorted({p.code for p in problems}),
                "detail": [p.message for p in problems]}

    result = run_limited(job)  # validate itself must neither hang nor crash on them
    assert result["outcome"] == "checked", result
    assert "template-unsafe" in result["codes"], result


def test_a_pow_tower_is_one_diagnostic() -> None:
    problems = check_template("{{ (((((9**64)**64)**64)**64)**64) }}")
    assert [p.code for p in problems] == ["template-unsafe"]
    assert "power of a power" in problems[0].message


# The same operations fed computed arguments pass validate (nothing there is a
# literal); the sandbox sizes them at render time and refuses before allocating.
RUNTIME_CONTEXT: dict[str, Any] = {
    "n": 999999999,
    "nine": 9,
    "tabs": "\t" * 20000,
    "xs": "x" * 20000,
    "star": "%*s",
    "nested": "{:{}}",
    "chat": "ab" * 150,
}
RUNTIME_NAMES: dict[str, frozenset[str] | None] = dict.fromkeys(RUNTIME_CONTEXT)
RUNTIME_PAYLOADS = [
    pytest.param("{{ star|format(n, 'x') }}", id="percent-star-from-a-variable"),
    pytest.param("{{ star % (n, 'x') }}", id="percent-operator-from-a-variable"),
    pytest.param("{{ (star|attr('zfill'))(n) }}", id="zfill-through-attr"),
    pytest.param("{{ nested.format('x', n) }}", id="str-format-from-a-variable"),
    pytest.param("{{ tabs.expandtabs(999) }}", id="expandtabs-of-a-variable"),
    pytest.param("{{ (xs|attr('replace'))('x', chat) }}", id="replace-growth"),
    pytest.param("{{ xs.join(xs) }}", id="str-join"),
    pytest.param("{{ ([xs] * 20000)|join }}", id="join-filter"),
    pytest.param("{{ xs|join(xs) }}", id="join-filter-separator"),
    pytest.param("{{ xs.translate({120: xs}) }}", id="translate"),
    pytest.param("{{ [1]|batch(n, 'x')|list|length }}", id="batch-fill"),
    pytest.param("{{ [1]|slice(n)|list|length }}", id="slice"),
    pytest.param(
        "{% set a = nine ** 64 %}{% set b = a ** 64 %}{% set c = b ** 64 %}{{ c ** 64 }}",
        id="pow-in-steps",
    ),
    pytest.param(
        "{% macro sq(k, d) %}{% if d < 40 %}{{ sq(k * k, d + 1) }}{% endif %}{% endmacro %}"
        "{{ sq(nine, 0) }}",
        id="recursive-squaring",
    ),
    pytest.param(
        "{% for a in chat %}{% for b in chat %}{% for c in chat %}{% for d in chat %}"
        "{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
        id="nested-loops-over-a-variable",
    ),
]


@pytest.mark.parametrize("source", RUNTIME_PAYLOADS)
def test_computed_arguments_are_refused_at_render_time(source: str) -> None:
    # nothing the static check can prove (it reports macro calls as unknown names)
    assert "template-unsafe" not in {p.code for p in check_template(source, RUNTIME_NAMES)}

    def job() -> dict[str, Any]:
        try:
            text = compile_template(source).render(RUNTIME_CONTEXT)
        except TemplateProblem as exc:
            return {"outcome": "problem", "code": exc.code, "detail": exc.message}
        return {"outcome": "text", "detail": text[:100]}

    result = run_limited(job)
    assert result["outcome"] == "problem", result
    assert result["code"] == "template-unsafe", result
    assert result["rss_growth_kb"] < GUARD_MAX_RSS_GROWTH_KB, result


def test_output_stops_at_the_cap_instead_of_building_megabytes() -> None:
    # 20,000 iterations of a 20,000-char line would be 400 MB before the cut
    source = "{% for a in xs %}{{ xs }}{% endfor %}"

    def job() -> dict[str, Any]:
        text = compile_template(source).render(RUNTIME_CONTEXT)
        return {"outcome": "text", "detail": str(len(text))}

    result = run_limited(job)
    assert result == result | {"outcome": "text", "detail": "20000"}
    assert result["rss_growth_kb"] < GUARD_MAX_RSS_GROWTH_KB, result


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("|{{ '{:>8}|'.format(user.name) }}", "|   alice|"),
        ("{{ '{0:.2f}'.format(media.duration / 60) }}", "95.00"),
        ("{{ '%-8s|%5.1f'|format(user.name, 2.25) }}", "alice   |  2.2"),
        ("{{ '%d%%'|format(50) }}", "50%"),
        ("{{ user.name.ljust(8) }}|{{ user.name.zfill(7) }}", "alice   |00alice"),
        ("|{{ user.name|center(9) }}|", "|  alice  |"),
        ("{{ message.replace('stunts', 'fights') }}", "who did the fights in this one?"),
        ("{{ text|replace(persona.name, 'C') }}", "cynthia, who did the stunts in this one?"),
        ("{{ now.replace(year=2000).year }}", "2000"),
        ("{{ (2 ** 10) ** 2 }}|{{ 3 * 7 }}", "1048576|21"),
        ("{{ ', '.join(groups) }}", "stunts"),
        (
            "{% for h in history %}{% for g in groups %}{{ h.user }}/{{ g }} {% endfor %}"
            "{% endfor %}",
            "bob/stunts carol/stunts",
        ),
    ],
)
def test_bounded_operations_still_work(source: str, expected: str) -> None:
    assert check_template(source) == []
    assert compile_template(source).render(realistic_context()) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(3) %}{{ i }}{% endfor %}",  # docs/rules.md: range is available
        "{% macro hi(n) %}hi {{ n }}{% endmacro %}{{ hi(user.name) }}",
        "{% macro row(x) %}[{{ x }}]{% endmacro %}{% for h in history %}{{ row(h) }}{% endfor %}",
    ],
)
def test_range_and_the_templates_own_macros_are_known_names(source: str) -> None:
    assert check_template(source) == []  # they used to be template-unknown-name
    assert compile_template(source).render({"user": {"name": "bob"}, "history": ["a"]})


def test_an_unknown_name_beside_a_macro_is_still_reported() -> None:
    (problem,) = check_template("{% macro hi() %}hi{% endmacro %}{{ hi() }} {{ nobody }}")
    assert problem.code == "template-unknown-name" and "nobody" in problem.message
