"""Wall time of ``kryten-rules validate`` on a 1,000-rule set, as CI runs it.

Generates a rule set in a temporary directory: a persona file plus ``--files``
rule files holding ``--rules`` rules in all, each with three patterns (a word,
a phrase and an RE2 regex) and an inline Jinja template. Then:

1. runs the ``kryten-rules validate DIR`` console script as a whole subprocess
   ``--runs`` times and prints min/median wall time (target: under 1 s);
2. runs it once under ``python -X importtime`` and checks that no ``litellm``
   or ``nats`` module is imported (``validate`` must not load the runtime);
3. times ``load_ruleset`` (load, check and compile) of the same set in-process.

Run: ``python benchmarks/validate_bench.py [--rules 1000] [--files 10] [--runs 5]``.
Exit status 1 when the import check fails, or with ``--enforce`` when the
time target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
HEAVY = ("litellm", "nats")
TOPICS = [
    "kung fu",
    "karate",
    "giallo",
    "slasher",
    "kaiju",
    "western",
    "noir",
    "zombie",
    "heist",
    "samurai",
    "wuxia",
    "mecha",
    "vampire",
    "space opera",
    "cyberpunk",
    "grindhouse",
]


def script_path() -> Path:
    """The installed ``kryten-rules`` console script beside this interpreter."""
    path = Path(sys.executable).with_name("kryten-rules")
    if not path.exists():
        sys.exit(f"console script not found at {path}: pip install -e . first")
    return path


def rule_yaml(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (
        f"  - id: topic-{i:04d}\n"
        f"    description: Chime in on {topic} talk, variant {i}\n"
        f"    priority: {i % 7}\n"
        f"    match:\n"
        f'      any: [word{i}, "{topic} number {i}"]\n'
        f"      regex: ['\\bcode{i}[-_ ]?(?:x|y)\\d{{1,3}}\\b']\n"
        f"      none: [spoiler]\n"
        f"    when: {{rank: {{min: registered}}}}\n"
        f"    probability: 0.{(i % 9) + 1}\n"
        f"    cooldown: {{rule: {(i % 10) + 1}m, user_rule: 30s}}\n"
        f"    limit: {{per_hour: {(i % 5) + 2}}}\n"
        f"    prompt: |\n"
        f"      {{{{ user.name }}}} ({{{{ user.rank_name }}}}) brought up {{{{ match }}}}"
        f'{{% if media %}} while "{{{{ media.title }}}}" plays{{% endif %}}.\n'
        f"      They said: {{{{ message }}}}\n"
        f"      Answer as {{{{ persona.name }}}} in one line about {topic} (rule {i}).\n"
    )


def generate(home: Path, n_rules: int, n_files: int) -> Path:
    rules = home / "rules"
    rules.mkdir()
    (rules / "persona.yaml").write_text(
        "kryten_rules: 1\n\n"
        "persona:\n"
        "  name: Cynthia\n"
        "  aliases: [cynthia, rothbot]\n"
        "  system_prompt: |\n"
        "    You are {{ persona.name }}, a film buff in the CyTube channel {{ channel }}.\n"
        "    Keep answers to one short chat line.\n\n"
        "ranks:\n"
        "  - {min: moderator, cooldown: 0.5, limit: 2.0}\n"
        "  - {max: guest, cooldown: 2.0, limit: 0.5}\n\n"
        "limits:\n"
        "  global: {cooldown: 5s, per_minute: 6, per_hour: 60}\n"
        "  user: {cooldown: 20s, per_hour: 12}\n",
        encoding="utf-8",
    )
    per_file = -(-n_rules // n_files)
    for f in range(n_files):
        ids = range(f * per_file, min(n_rules, (f + 1) * per_file))
        body = "".join(rule_yaml(i) for i in ids)
        text = f"kryten_rules: 1\n\ndefaults:\n  chain: default\n\nrules:\n{body}"
        (rules / f"topics_{f:02d}.yaml").write_text(text, encoding="utf-8")
    return rules


def time_cli(script: Path, rules: Path, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run(
            [str(script), "validate", str(rules)], capture_output=True, text=True, check=False
        )
        samples.append(time.perf_counter() - t0)
        if res.returncode != 0:
            sys.exit(f"validate failed (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    print(f"  output: {res.stdout.strip()}")
    return samples


def imported_modules(script: Path, rules: Path) -> tuple[str, list[str]]:
    """How ``validate`` was started under ``python -X importtime``, and the modules it imported.

    ``python -m kryten_rules`` is preferred (``kryten_rules/__main__.py`` runs the
    command line); where that does not work, fall back to the console script file.
    """
    for how, argv in (
        ("python -X importtime -m kryten_rules", ["-m", "kryten_rules"]),
        (f"python -X importtime {script}", [str(script)]),
    ):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", *argv, "validate", str(rules)],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            sys.exit(f"{how} validate failed:\n{res.stdout}{res.stderr}")
        modules = [
            line.rsplit("|", 1)[1].strip()
            for line in res.stderr.splitlines()
            if line.startswith("import time:") and "|" in line and "imported package" not in line
        ]
        if "kryten_rules.ruleformat.checks" in modules and res.stdout.startswith("ok:"):
            return how, modules
    sys.exit("could not run validate under -X importtime")


def time_load_ruleset(rules: Path, runs: int) -> tuple[list[float], int]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from kryten_rules import load_ruleset

    samples = []
    count = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        ruleset = load_ruleset(rules, bot_name="CynthiaRothbot")
        samples.append(time.perf_counter() - t0)
        count = len(ruleset.rules)
    return samples, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000, help="rules in all (default 1000)")
    parser.add_argument("--files", type=int, default=10, help="rule files (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--enforce", action="store_true", help="exit 1 when over the target")
    args = parser.parse_args()

    script = script_path()
    failed = False
    with tempfile.TemporaryDirectory(prefix="kryten-validate-bench-") as tmp:
        rules = generate(Path(tmp), args.rules, args.files)
        size = sum(p.stat().st_size for p in rules.iterdir())
        print(
            f"rule set: {args.rules} rules x 3 patterns + inline template, "
            f"{args.files} files + persona, {size / 1024:.0f} KiB"
        )

        print(f"\n[1] `kryten-rules validate` as a subprocess, {args.runs} runs")
        samples = time_cli(script, rules, args.runs)
        best, median = min(samples), statistics.median(samples)
        verdict = "OK" if median < TARGET_S else "OVER TARGET"
        print(
            f"  wall time: min {best:.3f} s, median {median:.3f} s "
            f"(target < {TARGET_S:.1f} s: {verdict})"
        )
        if median >= TARGET_S and args.enforce:
            failed = True

        print("\n[2] imports of `validate` (python -X importtime)")
        how, modules = imported_modules(script, rules)
        print(f"  ran: {how} validate DIR")
        heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
        print(
            f"  {len(modules)} modules imported; litellm/nats among them: "
            f"{', '.join(heavy) if heavy else 'none'}"
        )
        if heavy:
            print("  FAIL: validate must not import the runtime")
            failed = True

        print(f"\n[3] load_ruleset (load + check + compile) in-process, {args.runs} runs")
        samples, count = time_load_ruleset(rules, args.runs)
        print(
            f"  {count} rules compiled: min {min(samples):.3f} s, "
            f"median {statistics.median(samples):.3f} s"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
