# requires: pip install chitchat-dataset==0.9.0   (as engine_bench.py)
"""CPU cost of this tree against an earlier revision, on the same input, in one run.

For a change that must not make the engine or validate slower (a refactor, a
new gate), on machines too busy for wall-clock figures: each measurement is
CPU time of this process (``time.process_time``) or of a child
(``resource.getrusage``), which other load on the machine inflates far less
than wall time, and the two trees take turns, ``--rounds`` times.

    python benchmarks/compare_revisions.py ff2fa34          # HEAD's tree vs ff2fa34
    python benchmarks/compare_revisions.py ff2fa34 --rounds 6

Per tree: the engine's CPU per chat line at 10 and 1,000 rules (engine_bench's
rule generator and the Chit-Chat corpus: 10,000 lines, best of 5 passes),
``load_ruleset`` of validate_bench's 1,000-rule set (best of 3), and the CPU of
a whole ``python -m kryten_rules validate DIR`` process (best of 3; imports
included). Inputs come from this tree's benchmarks/ for both sides, and only
the public API (``load_ruleset``, ``Engine``, ``ChatEvent``) is used, so the
same script measures both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
METRICS = ("engine_10_us", "engine_1000_us", "load_1000_s", "validate_cli_s")


def measure() -> dict[str, float]:
    """Run in a child whose PYTHONPATH is the tree under test."""
    sys.path.insert(1, str(HERE))
    import engine_bench as eb
    import validate_bench as vb
    from corpus import chat_lines

    from kryten_rules import ChatEvent, Engine, VirtualClock, load_ruleset

    lines = chat_lines(10_000)
    words, phrases = eb.vocabulary(lines)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        events = [
            ChatEvent(kind="chatmsg", user=f"u{i % 50}", text=t, at=i * 2.0, rank=1)
            for i, t in enumerate(lines)
        ]
        for n in (10, 1000):
            ruleset, _ = eb.load_rules(eb.generate_rules(n, words, phrases), Path(tmp))
            best = float("inf")
            for _ in range(5):
                clock = VirtualClock()
                engine = Engine(ruleset, clock=clock, seed=1)
                t0 = time.process_time()
                for ev in events:
                    clock.set(ev.at)
                    engine.evaluate(ev)
                best = min(best, time.process_time() - t0)
            out[f"engine_{n}_us"] = best / len(events) * 1e6
        home = Path(tmp) / "v"
        home.mkdir()
        rules = vb.generate(home, 1000, 10)
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            load_ruleset([rules])
            best = min(best, time.process_time() - t0)
        out["load_1000_s"] = best
        best = float("inf")
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(
                [sys.executable, "-m", "kryten_rules", "validate", str(rules)],
                check=True, capture_output=True,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            best = min(best, cpu)
        out["validate_cli_s"] = best
    return out


def run_tree(root: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure"],
        env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", nargs="?", help="the earlier revision (git rev)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return 0
    if not args.rev:
        ap.error("give the revision to compare against")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), args.rev],
                       check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(old, filter="data")
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for i in range(args.rounds):
            for side, root in (("old", old), ("new", REPO)):
                runs[side].append(run_tree(root))
                print(f"round {i + 1} {side}: " + json.dumps(
                    {k: round(v, 4) for k, v in runs[side][-1].items()}), flush=True)
    print(f"\n{'metric':<16} {args.rev[:10]:>12} {'this tree':>12} {'change':>8}")
    for key in METRICS:
        old_m = statistics.median(r[key] for r in runs["old"])
        new_m = statistics.median(r[key] for r in runs["new"])
        print(f"{key:<16} {old_m:>12.4f} {new_m:>12.4f} {new_m / old_m - 1:>+8.1%}")
    print("(medians over rounds of each side's best; engine in us of CPU per line, the rest s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
