"""``kryten-rules test --format junit``: the results as JUnit XML, for CI systems.

The common JUnit schema (the one GitHub actions, GitLab and Jenkins read; the
attributes are those of Jenkins' XSD, so no ``file`` on a testcase, as pytest's
``xunit2``: ``classname`` carries the test file's path):
``<testsuites>`` holds one ``<testsuite>`` per test file and one
``<testcase>`` per case; a failed case has one ``<failure>`` whose
``message`` is its first failed expectation and whose text is every failed
event with its expectation and trace, as the text report prints them. Times
are wall-clock seconds. A test file that could not run (its rules or the file
itself has errors) is a suite with one ``<error>`` case, so a broken rule set
is red in the CI's test view too, not only in the log.

XML 1.0 cannot carry most control characters, not even as ``&#...;``; chat
text can. They are written as ``\\x1b``-style escapes instead, so a hostile
line in a test never makes the report unreadable.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import PurePath

from kryten_rules.diagnostics import Diagnostic, format_text
from kryten_rules.tools.ruletests import CaseResult, EventResult, Suite

# what XML 1.0 cannot hold: C0 controls but tab, LF, CR; surrogates; U+FFFE/U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _classname(file: str) -> str:
    """``tests/rules/default.test.yaml`` -> ``tests.rules.default``: Jenkins reads
    dots as packages, so the path's own dots must not be there."""
    path = PurePath(file)
    name = path.name.split(".")[0]
    parts = [p.replace(".", "_") for p in path.parent.parts if p not in ("/", ".", "..")]
    return xml_safe(".".join([*parts, name]))


def _event_report(ev: EventResult) -> list[str]:
    lines = [
        f"event {ev.index + 1}: {json.dumps(ev.event, ensure_ascii=False, default=str)}",
        f"  expected: {json.dumps(ev.expect, ensure_ascii=False, default=str)}",
    ]
    lines += [f"  - {f}" for f in ev.failures]
    lines.append("  trace:")
    for t in ev.decision.trace:
        detail = f" ({t.detail})" if t.detail else ""
        lines.append(f"    {t.rule:<24} {t.outcome:<8} {t.reason or ''}{detail}")
    if not ev.decision.trace:
        lines.append(f"    (no rule tried: {ev.decision.ignored or 'no rule matched'})")
    return lines


def _case(parent: ET.Element, case: CaseResult) -> None:
    el = ET.SubElement(
        parent,
        "testcase",
        name=xml_safe(case.name),
        classname=_classname(case.file),
        time=f"{case.seconds:.6f}",
    )
    failed = [ev for ev in case.events if ev.failures]
    if failed:
        first = failed[0]
        failure = ET.SubElement(
            el,
            "failure",
            message=xml_safe(f"event {first.index + 1}: {first.failures[0]}"),
            type="expectation",
        )
        failure.text = xml_safe("\n".join(line for ev in failed for line in _event_report(ev)))


def _suite(parent: ET.Element, file: str, cases: list[CaseResult]) -> None:
    el = ET.SubElement(
        parent,
        "testsuite",
        name=xml_safe(file),
        tests=str(len(cases)),
        failures=str(sum(1 for c in cases if not c.passed)),
        errors="0",
        skipped="0",
        time=f"{sum(c.seconds for c in cases):.6f}",
    )
    for case in cases:
        _case(el, case)


def _errors(parent: ET.Element, file: str, diags: list[Diagnostic]) -> None:
    el = ET.SubElement(
        parent,
        "testsuite",
        name=xml_safe(file),
        tests="1",
        failures="0",
        errors="1",
        skipped="0",
        time="0",
    )
    case = ET.SubElement(el, "testcase", name="load", classname=_classname(file), time="0")
    error = ET.SubElement(
        case,
        "error",
        message=xml_safe(f"{len(diags)} error(s): {diags[0].message}"),
        type="diagnostics",
    )
    error.text = xml_safe(format_text(diags, color=False))


def _by_file(diags: Iterable[Diagnostic]) -> dict[str, list[Diagnostic]]:
    out: dict[str, list[Diagnostic]] = {}
    for d in diags:
        if d.is_error:
            out.setdefault(os.path.normpath(d.span.file), []).append(d)
    return out


def format_junit(suite: Suite) -> str:
    """The whole report, with the XML declaration."""
    root = ET.Element("testsuites", name="kryten-rules")
    files: dict[str, list[CaseResult]] = {}
    for case in suite.cases:
        files.setdefault(case.file, []).append(case)
    for file, cases in files.items():
        _suite(root, file, cases)
    for file, diags in _by_file(suite.diagnostics).items():
        _errors(root, file, diags)
    suites = list(root)
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in suites):.6f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


__all__ = ["format_junit", "xml_safe"]
