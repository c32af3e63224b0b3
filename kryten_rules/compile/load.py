"""Stages 1-3 strung together: paths in, diagnostics and a ``RuleSet`` out.

``validate``, ``test``, ``explain``, ``replay`` and the running service all
come through here, so CI and production can never disagree about a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kryten_rules.compile.build import compile_rules, digest_of
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import ServiceConfig, config_from_plain
from kryten_rules.diagnostics import Diagnostic, RuleSetError, Span, error
from kryten_rules.gcpause import gc_paused
from kryten_rules.ruleformat.envexpand import expand_config
from kryten_rules.ruleformat.numbers import NUMBER_CODES, check_ranges
from kryten_rules.ruleformat.patterns import PatternSetError
from kryten_rules.ruleformat.resolve import RuleFile, RuleSetSpec, resolve
from kryten_rules.ruleformat.schema import check_schema, did_you_mean, file_kind
from kryten_rules.ruleformat.setchecks import check_config, check_rule_set, rule_ids
from kryten_rules.ruleformat.sources import Sources
from kryten_rules.ruleformat.tree import YAML_SUFFIXES, leads_out, outside_links
from kryten_rules.ruleformat.treewalk import MAX_DEPTH, files_under, short_path
from kryten_rules.ruleformat.yamlload import Node, load_file, seq


@dataclass(slots=True)
class Checked:
    """The outcome of loading and checking a set of paths."""

    rule_files: list[RuleFile] = field(default_factory=list)
    configs: list[tuple[Path, Node]] = field(default_factory=list)
    tests: list[tuple[Path, Node]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # every file this load read (rules and prompts), each once: checks, compile
    # and the digest all use these bytes
    sources: Sources = field(default_factory=Sources)
    # the rule files resolved (``resolve``), once: the checks and compile read it
    spec: RuleSetSpec | None = None

    @property
    def raw(self) -> dict[str, bytes]:
        """Name -> bytes of every file read: what the rule set's digest covers."""
        return self.sources.contents()

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def discover(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, Path]], list[Diagnostic]]:
    """Every YAML file under ``paths``, each with its rule-set home directory.

    A directory contributes all ``*.yaml``/``*.yml`` below it, in sorted order
    so that "ties keep file order" is the same on every machine.
    """
    found: list[tuple[Path, Path]] = []
    diags: list[Diagnostic] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            tree = p.resolve()
            listed, too_deep = files_under(p)
            if too_deep is not None:
                diags.append(
                    error(
                        "too-deep",
                        f"directories nested more than {MAX_DEPTH} levels under {str(p)!r} "
                        f"are not read: {short_path(too_deep)!r}",
                        Span(str(p)),
                        "keep rule files a few directories deep",
                    )
                )
            entries = sorted(listed)
            diags += outside_links(entries, tree)
            files = [
                f
                for f in entries
                if f.suffix in YAML_SUFFIXES and f.is_file() and not leads_out(f, tree)
            ]
            home = tree.parent
        elif p.is_file():
            tree = p.absolute().parent.resolve()
            if leads_out(p, tree):
                diags += outside_links([p], tree)
                continue
            files = [p]
            home = p.resolve().parent.parent
        else:
            diags.append(
                error("missing-path", f"no such file or directory: {str(p)!r}", Span(str(p)))
            )
            continue
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append((f, home))
    return found, diags


def check_paths(
    paths: Iterable[str | Path],
    *,
    config: ServiceConfig | None = None,
    kinds: Sequence[str] = ("rules", "config", "test"),
) -> Checked:
    """Load and check every file under ``paths``: all diagnostics, never an exception."""
    out = Checked()
    paths = list(paths)
    files, out.diagnostics = discover(paths)
    # A file named on its own must be of a kind asked for; one found in a directory
    # may be of another (rule tests beside the rules, a config beside both).
    named = {Path(p).resolve() for p in paths if Path(p).is_file()}
    for path, home in files:
        doc = load_file(path, out.sources)
        out.diagnostics.extend(doc.diagnostics)
        if doc.root is None:
            continue
        kind = file_kind(doc.root)
        if kind is not None and kind not in kinds and path.resolve() not in named:
            continue
        if kind is None or kind not in kinds:
            want = " or ".join(
                f"{k!r}" for k in ("kryten_rules", "kryten_rules_config", "kryten_rules_test")
            )
            out.diagnostics.append(
                error(
                    "unknown-file-kind",
                    "not a kryten-rules file: the first key should be " + want
                    if kind is None
                    else f"a {kind} file is not expected here",
                    doc.root.span,
                    "rule files start with `kryten_rules: 1`"
                    if kind is None
                    else f"this command reads {' and '.join(f'{k} files' for k in kinds)} here",
                )
            )
            continue
        # A value the loader refused (a NaN, a number out of range) is null in the
        # tree: its own diagnostic says why, the schema's "not null" would be noise.
        ranges = list(check_ranges(doc.root)) if kind in ("rules", "test") else []
        out.diagnostics.extend(ranges)
        if kind == "config":  # ${VAR} first: the schema checks the values in effect
            out.diagnostics.extend(expand_config(doc.root, os.environ))
        refused = {d.span for d in doc.diagnostics + ranges if d.code in NUMBER_CODES}
        schema_diags = [d for d in check_schema(doc.root, kind) if d.span not in refused]
        out.diagnostics.extend(schema_diags)
        if kind == "rules":
            # Semantic checks run even where the schema failed (they take any
            # shape), so one run reports everything; compile only runs when clean.
            out.rule_files.append(RuleFile(path, doc.root, home, out.sources))
        elif kind == "config":
            out.diagnostics.extend(check_config(doc.root))
            out.configs.append((path, doc.root))
        else:
            out.tests.append((path, doc.root))
    chains = None
    if config is not None:
        chains = config.chains
    elif len(out.configs) == 1 and not any(
        d.is_error for d in out.diagnostics if d.span.file == str(out.configs[0][0])
    ):
        chains = config_from_plain(out.configs[0][1].plain(), out.configs[0][0]).chains
    if out.rule_files:
        out.spec = resolve(out.rule_files)
        out.diagnostics.extend(check_rule_set(out.rule_files, chains, out.spec))
    for path, root in out.tests:
        out.diagnostics.extend(_check_test_refs(path, root))
    return out


def _exists(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)``, where a name the OS cannot even look up (too long) is missing."""
    try:
        return test(path)
    except OSError:
        return False


def _check_test_refs(path: Path, root: Node) -> list[Diagnostic]:
    """A rule-test file's paths exist, and the rules it expects are in its rule set."""
    diags: list[Diagnostic] = []
    rules = root.get("rules")
    targets = [rules] if rules is not None and not rules.is_seq else (rules.value if rules else [])
    rule_paths = []
    for node in targets:
        if not isinstance(node.value, str):
            continue  # the schema reports it
        p = path.parent / node.value
        if not _exists(p, Path.exists):
            diags.append(
                error("missing-path", f"rules path {str(node.value)!r} does not exist", node.span)
            )
        else:
            rule_paths.append(p)
    cfg = root.get("config")
    if (
        cfg is not None
        and isinstance(cfg.value, str)
        and not _exists(path.parent / cfg.value, Path.is_file)
    ):
        diags.append(error("missing-path", f"config {str(cfg.value)!r} does not exist", cfg.span))
    if diags or not rule_paths:
        return diags
    checked = check_paths(rule_paths, kinds=("rules",))
    if not checked.ok:
        return diags  # the rule files report their own errors when validated
    ids = rule_ids(checked.rule_files)
    for case in seq(root.get("cases")):
        for ev in seq(case.get("events")):
            exp = ev.get("expect")
            fires = exp.get("fires") if exp is not None else None
            if fires is not None and isinstance(fires.value, str) and fires.value not in ids:
                diags.append(
                    error(
                        "unknown-rule",
                        f"no rule {fires.value!r} in the rule set",
                        fires.span,
                        did_you_mean(fires.value, sorted(ids)),
                    )
                )
    return diags


def load_config(path: str | Path) -> ServiceConfig:
    """Load and check a service config; raises :class:`RuleSetError` on any error."""
    p = Path(path)
    doc = load_file(p)
    diags = list(doc.diagnostics)
    if doc.root is not None:
        if file_kind(doc.root) != "config":
            diags.append(
                error(
                    "unknown-file-kind",
                    "not a service config: it should start with `kryten_rules_config: 1`",
                    doc.root.span,
                )
            )
        else:
            diags.extend(expand_config(doc.root, os.environ))
            refused = {d.span for d in diags if d.code in NUMBER_CODES}
            diags.extend(d for d in check_schema(doc.root, "config") if d.span not in refused)
            diags.extend(check_config(doc.root))
    if doc.root is None or any(d.is_error for d in diags):
        raise RuleSetError(diags)
    return config_from_plain(doc.root.plain(), p)


def build_ruleset(
    paths: Iterable[str | Path], config: ServiceConfig | None = None, *, bot_name: str | None = None
) -> tuple[RuleSet | None, list[Diagnostic]]:
    """Load, check and compile; the rule set is ``None`` when any error was found.

    The cycle collector is paused throughout (``gcpause``): a reload runs
    beside the event loop, and each full collection the build's allocations
    would trigger holds the GIL for every object in the process (0.2 s with
    LiteLLM loaded), stalling commands and shutdown.
    """
    with gc_paused():
        return _build_ruleset(paths, config, bot_name)


def _build_ruleset(
    paths: Iterable[str | Path], config: ServiceConfig | None, bot_name: str | None
) -> tuple[RuleSet | None, list[Diagnostic]]:
    checked = check_paths(paths, config=config, kinds=("rules",))
    diags = checked.diagnostics
    if not checked.rule_files and checked.ok:
        diags.append(error("no-rules", "no rule files found", Span(str(next(iter(paths), "")))))
    if not checked.ok:
        return None, diags
    name = bot_name if bot_name is not None else (config.bot_name if config else "")
    raw = checked.raw
    try:
        ruleset = compile_rules(
            checked.spec or resolve(checked.rule_files),
            bot_name=name,
            digest=digest_of(raw),
            sources=tuple(sorted(raw)),
        )
    except PatternSetError as exc:  # the budget check should make this unreachable
        first = checked.rule_files[0].root.span
        diags.append(error("regex-set-too-large", str(exc), first))
        return None, diags
    return ruleset, diags


def load_ruleset(
    paths: Iterable[str | Path] | str | Path,
    config: ServiceConfig | str | Path | None = None,
    *,
    bot_name: str | None = None,
) -> RuleSet:
    """Load, check and compile rule files into a :class:`RuleSet`.

    ``paths`` are rule files or directories; ``config`` is a
    :class:`ServiceConfig` or the path of one (it names the chains rules may
    use and the bot's username, which ``match.mention`` answers to). Raises
    :class:`RuleSetError` carrying every diagnostic when anything is wrong.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    paths = list(paths)
    if isinstance(config, str | Path):
        config = load_config(config)
    ruleset, diags = build_ruleset(paths, config, bot_name=bot_name)
    if ruleset is None:
        raise RuleSetError(diags)
    return ruleset
