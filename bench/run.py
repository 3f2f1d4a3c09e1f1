"""Every benchmark, one after another, and one markdown report of what they measured.

``python -m bench`` (or ``python -m bench.run``) runs each benchmark script in its own process,
in the order below, with ``--json`` so its goals can be gathered. The report (``--out``, default
``bench/RESULTS.md``) starts with the machine it was measured on and a table of every goal with
its status, then holds each benchmark's own markdown report in full. Ratios inside a report are
against a reference measured in the same run (transformers, the uncached sampler, the command
line, one process), so a busy machine slows both sides alike; absolute figures are this
machine's. Nothing else should run while it does: it wants both cores.

A goal's status is PASS or MISS against the issue's target, INFO for a figure with no target,
SKIP for what this machine cannot measure (the GPU rows, without CUDA), and FAIL for a check that
failed or a benchmark that did not finish.

Usage: ``python -m bench`` (about 45 minutes on 2 cores), ``--quick`` (every benchmark's smoke
run, a few minutes), ``--only train_speed,app_speed``, ``--out PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from babygpt.machine import describe, load_average, log

ROOT = Path(__file__).resolve().parent.parent

# name -> (what it measures, arguments for a full run, arguments for --quick)
BENCHMARKS = {
    "train_speed": ("training step vs transformers GPT-2, MFU", [], ["--quick"]),
    "generate_speed": ("sampling with the KV cache vs transformers generate", [], ["--quick"]),
    # --quick is a smoke run: on the repository's own text, which every clone has (../shared may be missing)
    "speedrun": ("CPU speedrun on Tiny Shakespeare", [],
                 ["--recipes", "reference,speedrun", "--budget", "5", "--seeds", "1",
                  "--data", "data/shakespeare.txt"]),
    "app_speed": ("the app: start, Compare, heatmaps, memory", [], ["--quick", "--train-seconds", "3"]),
    "ddp_speed": ("torchrun data-parallel throughput", [], ["--quick"]),
    "ablation_speed": ("an ablation of 3 values × 20 s through the app's queue", [], ["--seconds", "2"]),
    "import_gpt2": ("GPT-2 small (124M) loaded from a Hub into the app, and its tabs", [], ["--rounds", "1",
                                                                                              "--tokens", "5"]),
    "load_test": ("16 sessions at once while trainings queue, crowd after crowd for 10 minutes",
                  ["--minutes", "10", "--idle-seconds", "180"],
                  ["--sessions", "4", "--requests", "1", "--idle-seconds", "15"]),
}


def run_one(name: str, arguments: list[str], folder: Path) -> dict:
    """Run ``bench/<name>.py``: its stdout report, its goals, and how long it took."""
    out = folder / f"{name}.json"
    started = time.perf_counter()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", *arguments, "--json", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not out.is_file():
        return {"report": result.stdout, "seconds": seconds,
                "goals": [{"goal": f"{name} ran", "status": "FAIL", "shown": f"exit status {result.returncode}"}]}
    return {"report": result.stdout, "seconds": seconds, "goals": json.loads(out.read_text()).get("goals", [])}


def gpu_goals(facts: dict) -> list[dict]:
    """The issue's GPU rows: measured only where CUDA is, and said so where it is not."""
    if facts["GPU"] != "none":
        return []
    return [{"goal": "GPU path of training and sampling (bf16, fused AdamW, SDPA flash)", "status": "SKIP",
             "shown": "no CUDA device on this machine"}]


def report(facts: dict, results: dict, quick: bool) -> str:
    lines = ["# BabyGPT benchmarks" + (" (--quick: smoke runs, not figures to quote)" if quick else ""), ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += ["", "| benchmark | goal | measured | status |", "|---|---|---|---|"]
    for name, result in results.items():
        for goal in result["goals"]:
            lines.append(f"| {name} | {goal['goal']} | {goal.get('shown', goal.get('value'))} | {goal['status']} |")
    lines += ["", "| benchmark | what it measures | minutes |", "|---|---|---:|"]
    lines += [f"| {name} | {BENCHMARKS[name][0] if name in BENCHMARKS else ''} | {r['seconds'] / 60:.1f} |"
              for name, r in results.items() if "report" in r]
    for name, result in results.items():
        if result.get("report"):
            lines += ["", f"## {name}", "", result["report"].strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's smoke run (a few minutes in all)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="where to write the report")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    facts = describe()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            _, full, quick = BENCHMARKS[name]
            log(f"== {name} (load average {load_average()})")
            results[name] = run_one(name, quick if args.quick else full, Path(folder))
    facts["load average at the end"] = load_average()
    gpu = gpu_goals(facts)
    if gpu:
        results["gpu"] = {"goals": gpu, "seconds": 0.0}
    text = report(facts, results, args.quick)
    Path(args.out).write_text(text)
    summary = text.split("\n## ", 1)[0]
    print(summary + f"\n(the whole report, with every benchmark's tables: {args.out})")
    return 1 if any(g["status"] == "FAIL" for r in results.values() for g in r["goals"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
