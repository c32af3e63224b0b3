"""Issue #9 item 13: what 400 ``\\pL{1000}`` regexes cost ``validate`` and a reload.

Generates a rule file of ``--patterns`` rules, each with the regex
``x<i>\\pL{1000}``, in a temporary directory. Then:

1. runs ``kryten-rules validate DIR`` as a subprocess and prints its wall time
   and the codes it reported (each pattern is now ``regex-too-large``);
2. builds the rule set in a thread, as a reload does, while the main thread
   sleeps 1 ms at a time, and prints the longest time the main thread could
   not run: that is how long the service's event loop (commands, SIGTERM)
   would have waited.

Run: ``python benchmarks/regex_reload_bench.py [--patterns 400]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def rules(n: int) -> str:
    body = "".join(
        f"  - id: r{i}\n    match: {{regex: ['x{i}\\pL{{1000}}']}}\n    reply: hi\n"
        for i in range(n)
    )
    return "kryten_rules: 1\nrules:\n" + body


def longest_stall(directory: Path) -> tuple[float, float]:
    """(build seconds, longest main-thread stall) of building the rule set in a thread."""
    from kryten_rules.compile.load import build_ruleset

    done = threading.Event()
    took: list[float] = []

    def build() -> None:
        t0 = time.perf_counter()
        build_ruleset([directory])
        took.append(time.perf_counter() - t0)
        done.set()

    worker = threading.Thread(target=build)
    last = time.perf_counter()
    worst = 0.0
    worker.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    worker.join()
    return took[0], worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rules"
        directory.mkdir()
        (directory / "main.yaml").write_text(rules(args.patterns))
        exe = Path(sys.executable).parent / "kryten-rules"
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(exe), "validate", "--format", "json", str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        codes = collections.Counter(d["code"] for d in json.loads(out.stdout or "[]"))
        print(f"validate, {args.patterns} x \\pL{{1000}}: {wall:.2f} s wall, codes {dict(codes)}")
        build, stall = longest_stall(directory)
        print(f"build in a thread: {build:.2f} s; longest main-thread stall {stall * 1000:.0f} ms")


if __name__ == "__main__":
    main()
