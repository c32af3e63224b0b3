"""Reply and chat-line cleaning: time per character at 1k, 10k and 100k characters.

Run from the repository root with the project's venv::

    python benchmarks/clean_bench.py                   # old code up to 10k (~1 min)
    python benchmarks/clean_bench.py --old-max 100000  # old code at 100k too (~5 min)
    python benchmarks/clean_bench.py --repeat 5 --sizes 1000,10000,100000

What is measured
----------------
* **Replies** (issue #9 item 7): ``clean_reply`` on hostile model replies (a unit
  such as ``"**a "`` repeated to the size) and on a normal one (ordinary model prose
  with some markdown, a speaker label and AI filler, repeated). "new" is
  ``kryten_rules.emit.clean.clean_reply`` *without* the cap, to show that the passes
  themselves are linear; "old" is the code before the fix, copied verbatim into
  ``tests/emit/baseline_cleaning.py`` (BASELINE, not used by the service). The last
  column is the service's real path, ``prepare_reply`` (cap, clean, neutralise,
  split) at CyTube's defaults (320 x 2 parts), in ms for the whole reply.
* **Chat lines** (item 14): ``kryten_rules.ruleformat.patterns.normalise`` (tag stripping and
  unescaping of what CyTube relays) against the old ``normalise`` from the same
  baseline file, on hostile lines and on a normal line with CyTube link tags. The
  engine reads at most 4,000 characters of a line; larger sizes show the trend.

Each figure is the fastest of ``--repeat`` runs (one run when a run takes over
2 s). Old-code runs above ``--old-max`` characters are skipped: at 100k the old
bold pattern alone takes ~80 s. Linear code shows a flat µs/char down a column.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules.emit.clean import clean_reply
from kryten_rules.emit.split import prepare_reply
from kryten_rules.ruleformat.patterns import normalise
from tests import baseline_cleaning as baseline

PERSONA = ["Cynthia", "CynthiaBot"]
NORMAL_REPLY = (
    "Cynthia: Great pick! **Blade Runner** is a classic. As an AI, I can't watch films, "
    "but the rain-soaked rooftop scene is famous for a reason. Try `The Thing` next? "
)
NORMAL_CHAT = (
    'check this out <a href="https://example.com/watch?v=abc" target="_blank" '
    'rel="noopener noreferrer">https://example.com/watch?v=abc</a> it&#39;s great &amp; '
)

REPLIES: dict[str, Callable[[int], str]] = {
    "normal reply": lambda n: (NORMAL_REPLY * (n // len(NORMAL_REPLY) + 1))[:n],
    "**a (bold)": lambda n: ("**a " * n)[:n],
    "Cynthia: (label)": lambda n: ("Cynthia: " * n)[:n],
    "As an AI (filler)": lambda n: ("As an AI " * n)[:n],
    "label + filler": lambda n: ("Cynthia: As an AI, " * n)[:n],
    "``` + blanks": lambda n: "```" + " " * (n - 4) + "x",
    "ANSI \\x1b[0": lambda n: ("\x1b[0" * n)[:n],
}
CHAT: dict[str, Callable[[int], str]] = {
    "normal chat + link": lambda n: (NORMAL_CHAT * (n // len(NORMAL_CHAT) + 1))[:n],
    "< * n": lambda n: "<" * n,
    "< * n + >": lambda n: "<" * (n - 1) + ">",
    "<& * n": lambda n: ("<&" * n)[:n],
}


def best_of(func: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        took = time.perf_counter() - t0
        best = min(best, took)
        if took > 2.0:
            break
    return best


def us_per_char(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:9.3f}"


def run(
    title: str,
    cases: dict[str, Callable[[int], str]],
    new: Callable[[str], object],
    old: Callable[[str], object],
    real: Callable[[str], object] | None,
    sizes: list[int],
    old_max: int,
    repeat: int,
) -> None:
    print(f"\n{title}")
    head = f"{'payload':22s} {'chars':>7s} {'old µs/char':>12s} {'new µs/char':>12s}"
    head += f" {'speed-up':>9s}"
    print(head + (f" {'prepare_reply ms':>17s}" if real else ""))
    for name, make in cases.items():
        for n in sizes:
            text = make(n)
            t_new = best_of(lambda: new(text), repeat)  # noqa: B023
            if n <= old_max:
                t_old = best_of(lambda: old(text), repeat)  # noqa: B023
                old_col, ratio = us_per_char(t_old, n), f"{t_old / t_new:8.1f}x"
            else:
                old_col, ratio = f"{'skipped':>9s}", f"{'':9s}"
            line = f"{name:22s} {n:7d}    {old_col}    {us_per_char(t_new, n)} {ratio}"
            if real is not None:
                t_real = best_of(lambda: real(text), repeat)  # noqa: B023
                line += f" {t_real * 1e3:17.2f}"
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--old-max", type=int, default=10_000, help="largest size to time old code at")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"python {sys.version.split()[0]}; fastest of {args.repeat}; old = BASELINE copy")
    run(
        "Replies: clean_reply (new: uncapped), and the service's prepare_reply (capped)",
        REPLIES,
        lambda t: clean_reply(t, PERSONA),
        lambda t: baseline.clean_reply(t, PERSONA),
        lambda t: prepare_reply(t, persona_names=PERSONA),
        sizes,
        args.old_max,
        args.repeat,
    )
    run(
        "Chat lines: patterns.normalise (tag stripping, unescaping)",
        CHAT,
        normalise,
        baseline.normalise_chat,
        None,
        sizes,
        args.old_max,
        args.repeat,
    )


if __name__ == "__main__":
    main()
