# requires: pip install chitchat-dataset==0.9.0   (the project's .venv has it)
# peer:     kryten-llm in its own venv, /tmp/peer-venv (created here if missing;
#           see benchmarks/peer_kryten_llm.py for the exact install commands)
"""Engine throughput: real chat lines against 10, 100 and 1,000 generated rules.

Run from the repository root with the project's venv::

    python benchmarks/engine_bench.py                # 20,000 lines, 10/100/1000 rules
    python benchmarks/engine_bench.py --lines 5000 --sizes 10,1000 --no-peer
    python benchmarks/engine_bench.py --profile      # cProfile of our engine at 1,000 rules

What is measured
----------------
* Lines: the first ``--lines`` (20,000) utterances of the Chit-Chat corpus
  (``benchmarks/corpus.py``), real typed chat, as ``chatmsg`` events from 50
  users, one every 2 s of virtual time.
* Rules: ``n`` rules of 3 patterns each, drawn from the corpus vocabulary with a
  fixed seed: mostly single words (60 %) and 2-word phrases (30 %) taken from
  words/bigrams past the 100 commonest (so some lines match, most rules stay
  quiet on most lines, as in a real channel; frequency rank log-uniform
  between 150 and ~6,000), and some RE2 regexes (10 %:
  ``\\bstem\\w*`` or ``\\bw1\\s+(\\w+\\s+)?w2\\b``). Probability 1, no
  cooldowns or limits, a fixed ``reply`` (no model). Written as YAML into a
  temporary directory and loaded with ``load_ruleset`` as a moderator's files
  would be.
* Ours: ``Engine.evaluate`` per line (candidate evaluation, as the service
  runs it), on a ``VirtualClock``; best of ``--repeat`` runs on fresh engines.
* Peer: kryten-llm 0.11.1's ``TriggerEngine.check_triggers`` (via
  ``benchmarks/peer_kryten_llm.py``) with one trigger per rule and the same
  three patterns (a regex is given to the peer as its literal stem/phrase,
  since the peer only does substring tests). It runs in a subprocess of
  ``/tmp/peer-venv/bin/python`` (kryten-llm and kryten-py cannot share our
  venv); rules and lines are handed over as JSON files and the subprocess
  prints its lines/s as JSON.

Targets: at 1,000 rules ours >= 20x the peer, and our 1,000-rule speed within 2x
of our 10-rule speed. The two engines do not fire on the same lines (whole-word
RE2 matching vs. plain substrings): this compares speed, not decisions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER_VENV = Path("/tmp/peer-venv")
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_PACKAGES = [
    ["--no-deps", "kryten-llm==0.11.1", "kryten-py==0.17.5"],
    [
        "aiohttp==3.14.5",
        "nats-py==2.16.0",
        "pydantic==2.14.4",
        "pydantic-settings==2.16.3",
        "emoji==2.16.0",
        "jinja2==3.1.6",
    ],
]
SEED = 20240611
USERS = 50
STEP = 2.0  # seconds of virtual time between lines

_WORD = re.compile(r"[a-z][a-z']*[a-z]|[a-z]")


# --------------------------------------------------------------------------- rules


def vocabulary(lines: list[str]) -> tuple[list[str], list[str]]:
    """Words and 2-word phrases of middling frequency (not stop words, not hapaxes)."""
    words: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    for line in lines:
        toks = _WORD.findall(line.lower())
        words.update(toks)
        bigrams.update(f"{a} {b}" for a, b in itertools.pairwise(toks))
    ranked_words = [w for w, _ in words.most_common() if len(w) >= 3]
    ranked_bigrams = [b for b, _ in bigrams.most_common()]
    # skip the ~100 commonest (the, and, you ...): a rule on "you" fires on every line
    return ranked_words[100:6100], ranked_bigrams[100:4100]


def _log_uniform(rng: random.Random, items: list[str], lo: int) -> str:
    """An item whose frequency rank is log-uniform in ``[lo, len(items))``: as many
    picks among ranks 150-300 as among 3,000-6,000, like a moderator's topical words."""
    return items[min(int(lo * (len(items) / lo) ** rng.random()), len(items) - 1)]


def generate_rules(n: int, words: list[str], phrases: list[str], seed: int = SEED) -> list[dict]:
    """``n`` rules of 3 patterns: ``{"id", "any": [...], "regex": [...], "peer": [...]}``.

    ``peer`` is what the peer gets for the same 3 patterns (a regex's literal form).
    """
    rng = random.Random(seed + n)
    rules = []
    for i in range(n):
        any_: list[str] = []
        regex: list[str] = []
        peer: list[str] = []
        while len(peer) < 3:
            kind = rng.random()
            if kind < 0.6:
                w = _log_uniform(rng, words, 50)
                if w in any_:
                    continue
                any_.append(w)
                peer.append(w)
            elif kind < 0.9:
                p = _log_uniform(rng, phrases, 50)
                if p in any_:
                    continue
                any_.append(p)
                peer.append(p)
            elif rng.random() < 0.5:
                w = _log_uniform(rng, words, 50)
                stem = w[: max(3, len(w) - 2)]
                regex.append(rf"\b{re.escape(stem)}\w*")
                peer.append(stem)
            else:
                a, b = _log_uniform(rng, phrases, 50).split(" ", 1)
                regex.append(rf"\b{re.escape(a)}\s+(\w+\s+)?{re.escape(b)}\b")
                peer.append(f"{a} {b}")
        rules.append({"id": f"r{i:04d}", "any": any_, "regex": regex, "peer": peer})
    return rules


def rules_yaml(rules: list[dict]) -> str:
    out = ["kryten_rules: 1", "rules:"]
    for r in rules:
        match = []
        if r["any"]:
            match.append(f"any: [{', '.join(json.dumps(w) for w in r['any'])}]")
        if r["regex"]:
            match.append(f"regex: [{', '.join(json.dumps(x) for x in r['regex'])}]")
        out.append(f"  - id: {r['id']}")
        out.append(f"    match: {{{', '.join(match)}}}")
        out.append('    reply: "{{ user.name }}: {{ match }}"')
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- ours


def load_rules(rules: list[dict], tmp: Path) -> tuple[Any, float]:
    from kryten_rules import load_ruleset

    path = tmp / f"rules-{len(rules)}" / "bench.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rules_yaml(rules), encoding="utf-8")
    t0 = time.perf_counter()
    rs = load_ruleset([path], bot_name="benchbot")
    return rs, time.perf_counter() - t0


def _events(lines: list[str]) -> list[Any]:
    """The lines as chatmsg events from USERS users, STEP seconds apart."""
    from kryten_rules import ChatEvent

    users = [f"user{i}" for i in range(USERS)]
    return [
        ChatEvent(kind="chatmsg", user=users[i % USERS], text=line, at=i * STEP, rank=1)
        for i, line in enumerate(lines)
    ]


def run_ours(ruleset: Any, lines: list[str], match: Any = None) -> tuple[float, int]:
    """(lines/s, lines on which a rule fired) for one pass on a fresh engine.

    ``match`` replaces the engine's RE2 set match (bytes -> pattern indices).
    """
    from kryten_rules import VirtualClock
    from kryten_rules.engine.evaluate import Engine

    clock = VirtualClock()
    engine = Engine(ruleset, clock=clock, seed=1)
    if match is not None:
        engine._match = match
    events = _events(lines)
    fired = 0
    evaluate = engine.evaluate
    t0 = time.perf_counter()
    for ev in events:
        clock.set(ev.at)
        if evaluate(ev).fired is not None:
            fired += 1
    elapsed = time.perf_counter() - t0
    return len(lines) / elapsed, fired


def scan_split(ruleset: Any, lines: list[str], repeat: int = 3) -> tuple[float, float]:
    """(us per line as run, us per line with the RE2 set scan answered from a table).

    The same engine and events; only ``Engine._match`` (the RE2 set's match)
    is swapped for a dict lookup of answers computed beforehand, so the
    difference is what the scan costs inside the engine loop, where the
    interpreter's own work competes with the DFA for the CPU caches.
    """
    from kryten_rules.ruleformat.patterns import normalise

    match = ruleset.match_bytes
    if match is None:
        return (1e6 / max(run_ours(ruleset, lines)[0] for _ in range(repeat)),) * 2
    answers = {}
    for line in lines:
        key = normalise(line).encode("utf-8")
        answers[key] = match(key)
    best = {False: 0.0, True: 0.0}
    for _ in range(repeat):
        for tabled in (False, True):
            lps, _ = run_ours(ruleset, lines, answers.__getitem__ if tabled else None)
            best[tabled] = max(best[tabled], lps)
    return 1e6 / best[False], 1e6 / best[True]


def cost_split(ruleset: Any, lines: list[str]) -> tuple[float, float, float]:
    """(share of lines that fire, median us of a line that fires, of one that does not)."""
    from statistics import median

    from kryten_rules import VirtualClock
    from kryten_rules.engine.evaluate import Engine

    clock = VirtualClock()
    engine = Engine(ruleset, clock=clock, seed=1)
    fire: list[float] = []
    quiet: list[float] = []
    pc = time.perf_counter
    for ev in _events(lines):
        clock.set(ev.at)
        t0 = pc()
        d = engine.evaluate(ev)
        (fire if d.fired is not None else quiet).append(pc() - t0)
    return (
        len(fire) / len(lines),
        median(fire) * 1e6 if fire else 0.0,
        median(quiet) * 1e6 if quiet else 0.0,
    )


def profile_ours(ruleset: Any, lines: list[str], top: int = 25) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    run_ours(ruleset, lines)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats("kryten_rules", top)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# --------------------------------------------------------------------------- peer


def ensure_peer_venv() -> str | None:
    """Create /tmp/peer-venv with kryten-llm if needed; returns a reason when it cannot."""
    check = [str(PEER_PYTHON), "-c", "import kryten_llm.components.trigger_engine"]
    if PEER_PYTHON.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return None
    print(f"setting up the peer venv in {PEER_VENV} (kryten-llm 0.11.1) ...", file=sys.stderr)
    steps = [] if PEER_PYTHON.exists() else [[sys.executable, "-m", "venv", str(PEER_VENV)]]
    steps += [[str(PEER_VENV / "bin" / "pip"), "install", "-q", *pkgs] for pkgs in PEER_PACKAGES]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            from peer_kryten_llm import INSTALL  # the module only imports the stdlib here

            return (
                f"`{' '.join(cmd)}` failed:\n{proc.stderr.strip()[-2000:]}\n"
                f"Install the peer by hand, then rerun:\n    {INSTALL}"
            )
    if subprocess.run(check, capture_output=True).returncode != 0:
        return "kryten-llm is installed but its TriggerEngine does not import"
    return None


def run_peer(rules: list[dict], lines: list[str], tmp: Path) -> tuple[float, int]:
    """Run :func:`peer_worker` in the peer venv; (lines/s, lines on which a trigger fired)."""
    rules_file = tmp / f"peer-rules-{len(rules)}.json"
    lines_file = tmp / "peer-lines.json"
    rules_file.write_text(json.dumps([[r["id"], r["peer"]] for r in rules]))
    if not lines_file.exists():
        lines_file.write_text(json.dumps(lines))
    proc = subprocess.run(
        [str(PEER_PYTHON), str(Path(__file__).resolve()), "--peer-worker", rules_file, lines_file],
        capture_output=True,
        text=True,
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peer failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["lines_per_s"], result["fired"]


def peer_worker(rules_file: str, lines_file: str) -> None:
    """Runs inside /tmp/peer-venv: no kryten_rules import here."""
    sys.path.insert(0, str(HERE))
    from peer_kryten_llm import build_peer

    rules = [(rid, list(phrases)) for rid, phrases in json.loads(Path(rules_file).read_text())]
    lines = json.loads(Path(lines_file).read_text())
    check = build_peer(rules)
    users = [f"user{i}" for i in range(USERS)]
    fired = 0
    t0 = time.perf_counter()
    for i, line in enumerate(lines):
        if check(users[i % USERS], line):
            fired += 1
    elapsed = time.perf_counter() - t0
    print(json.dumps({"lines_per_s": len(lines) / elapsed, "fired": fired}))


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of ours")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile ours at the largest size")
    ap.add_argument("--peer-worker", nargs=2, metavar=("RULES_JSON", "LINES_JSON"))
    args = ap.parse_args()
    if args.peer_worker:
        peer_worker(*args.peer_worker)
        return 0

    sys.path.insert(0, str(HERE))
    from corpus import chat_lines

    sizes = [int(s) for s in args.sizes.split(",")]
    lines = chat_lines(args.lines)
    words, phrases = vocabulary(lines)
    print(
        f"{len(lines)} chat lines (chitchat-dataset), vocabulary {len(words)} words, "
        f"{len(phrases)} phrases; rules of 3 patterns, probability 1, no cooldowns"
    )
    peer_problem = None if not args.no_peer else "--no-peer"
    if peer_problem is None:
        peer_problem = ensure_peer_venv()
        if peer_problem:
            print(f"peer skipped: {peer_problem}", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as d:
        tmp = Path(d)
        rulesets: dict[int, Any] = {}
        for n in sizes:
            rules = generate_rules(n, words, phrases)
            ruleset, load_s = load_rules(rules, tmp)
            best, fired = 0.0, 0
            for _ in range(max(1, args.repeat)):
                lps, fired = run_ours(ruleset, lines)
                best = max(best, lps)
            peer_lps = peer_fired = None
            if not peer_problem:
                peer_lps, peer_fired = run_peer(rules, lines, tmp)
            rows.append((n, best, fired, peer_lps, peer_fired, load_s, len(ruleset.patterns)))
            rulesets[n] = ruleset
            print(
                f"  {n:>5} rules: ours {best:,.0f} lines/s ({fired} fired, load {load_s:.2f}s, "
                f"{len(ruleset.patterns)} patterns)"
                + (f"; peer {peer_lps:,.0f} lines/s ({peer_fired} fired)" if peer_lps else ""),
                flush=True,
            )

        print()
        print(f"{'rules':>6} | {'ours lines/s':>13} | {'peer lines/s':>13} | {'ratio':>7}")
        print(f"{'-' * 6}-+-{'-' * 13}-+-{'-' * 13}-+-{'-' * 7}")
        for n, ours, _, peer, _, _, _ in rows:
            ratio = f"{ours / peer:6.1f}x" if peer else "    n/a"
            peer_s = f"{peer:13,.0f}" if peer else f"{'skipped':>13}"
            print(f"{n:>6} | {ours:13,.0f} | {peer_s} | {ratio:>7}")
        by_n = {n: (ours, peer) for n, ours, _, peer, _, _, _ in rows}
        ok = True
        if min(by_n) != max(by_n):
            small, large = min(by_n), max(by_n)
            rel = by_n[large][0] / by_n[small][0]
            good = rel >= 0.5
            ok &= good
            print(
                f"\nours at {large} rules = {rel:.2f}x ours at {small} rules "
                f"(target >= 0.50): {'met' if good else 'NOT met'}"
            )
        if 1000 in by_n and by_n[1000][1]:
            ratio = by_n[1000][0] / by_n[1000][1]
            good = ratio >= 20
            ok &= good
            print(
                f"ours / peer at 1000 rules = {ratio:.1f}x (target >= 20x): "
                f"{'met' if good else 'NOT met'}"
            )
        print("\nwhere our time goes (median per line, one pass, fresh engine):")
        print(f"{'rules':>6} | {'lines firing':>12} | {'firing line':>11} | {'quiet line':>10}")
        for n, ruleset in rulesets.items():
            share, fire_us, quiet_us = cost_split(ruleset, lines)
            print(f"{n:>6} | {share:11.0%} | {fire_us:9.1f}us | {quiet_us:8.1f}us")
        print("\nthe RE2 set scan inside the engine loop (us per line, best of 3):")
        head = ("rules", "patterns", "as run", "scan from a table", "scan")
        print("{:>6} | {:>8} | {:>7} | {:>17} | {:>5}".format(*head))
        split = {}
        for n, ruleset in rulesets.items():
            run_us, tabled_us = scan_split(ruleset, lines)
            split[n] = (run_us, tabled_us)
            print(
                f"{n:>6} | {len(ruleset.patterns):>8} | {run_us:7.2f} | {tabled_us:17.2f} | "
                f"{run_us - tabled_us:5.2f}"
            )
        if min(split) != max(split):
            small, large = min(split), max(split)
            print(
                f"without the scan, ours at {large} rules = "
                f"{split[small][1] / split[large][1]:.2f}x ours at {small} rules"
            )
        if args.profile or not ok:
            n = max(rulesets)
            print(f"\ncProfile of ours at {n} rules (cumulative in kryten_rules, then tottime):")
            print(profile_ours(rulesets[n], lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
