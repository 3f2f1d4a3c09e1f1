"""Data-parallel training throughput: ``torchrun`` with 2 processes against 1 process.

What it measures
----------------
Training tokens per second (the trainer's own per-step figure, the global batch over the step's
wall time, median over the timed steps) of a preset on the built-in corpus, launched three ways:

- ``1 process x 2 threads``: ``python -m babygpt train`` as a user runs it on a 2-core machine;
- ``1 process x 1 thread``: what each DDP process has to work with;
- ``torchrun 2 processes x 1 thread``: ``torch.distributed.run --standalone --nproc_per_node 2``,
  gloo, each process on half of the same global batch, gradients all-reduced every step.

Presets: ``gpt`` (nanoGPT's CPU recipe: 4 layers, 128 wide, block 64, batch 12) and
``gpt-shakespeare-char`` (6 layers, 384 wide, block 256, batch 64; dropout off here, so the
runs do the same work). Every launch is a fresh process; the launches of a preset alternate in
order over rounds (3 for ``gpt``, 1 for the big preset, ``--repeats`` to change) and the table
shows medians.

Usage: ``python -m bench.ddp_speed`` (about 4 minutes on 2 cores), ``--quick`` (``gpt`` only, one
round), ``--presets gpt``, ``--json PATH``. Stdout carries the markdown report; progress goes to
stderr. Run as ``--worker`` it is one launch (what torchrun starts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from babygpt.machine import describe, load_average, log

ROOT = Path(__file__).resolve().parent.parent

# preset -> (untimed steps, timed steps, rounds): a step of the big preset takes seconds
PRESETS = {"gpt": (20, 150, 3), "gpt-shakespeare-char": (1, 3, 1)}
LAUNCHES = ("1 process x 2 threads", "1 process x 1 thread", "torchrun 2 processes x 1 thread")


def worker(preset: str, threads: int, warmup: int, steps: int, out: Path) -> None:
    """One launch: train ``warmup + steps`` steps and (on rank 0) write the timed steps' tokens/s."""
    import torch

    from babygpt.cli import init_distributed, shutdown_distributed
    from babygpt.runs import new_run

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        init_distributed("cpu")
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        trainer = new_run("shakespeare", preset=preset, model={"dropout": 0.0},
                          train={"max_iters": warmup + steps, "eval_interval": 10**6, "eval_iters": 1,
                                 "sample_tokens": 0, "threads": threads, "device": "cpu"},
                          out_dir=Path(folder) / "run")
        rates = [event.tokens_per_sec for event in trainer.run() if event.kind == "step"][warmup:]
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps({"tokens_per_s": rates, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}))
    if distributed:
        shutdown_distributed()


def launch(how: str, preset: str, warmup: int, steps: int) -> float:
    """Median tokens/s of one fresh launch."""
    threads = 2 if how.startswith("1 process x 2") else 1
    command = [sys.executable]
    if how.startswith("torchrun"):
        command += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rates.json"
        command += [str(Path(__file__).resolve()), "--worker", "--presets", preset, "--threads", str(threads),
                    "--warmup", str(warmup), "--steps", str(steps), "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"{how} failed:\n{result.stdout}\n{result.stderr}")
        return statistics.median(json.loads(out.read_text())["tokens_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the gpt preset, one round, few steps")
    parser.add_argument("--presets", default=None, help=f"comma-separated, from {', '.join(PRESETS)}")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of the three launches (default: 3 for gpt, 1 for the big preset)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.presets.split(",") if args.presets else (["gpt"] if args.quick else list(PRESETS))
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if args.worker:
        worker(names[0], args.threads, args.warmup, args.steps, Path(args.out))
        return 0

    env = describe()
    rows = []
    for preset in names:
        warmup, steps, repeats = PRESETS[preset]
        repeats = args.repeats or (1 if args.quick else repeats)
        if args.quick:
            warmup, steps = min(warmup, 2), min(steps, 8)
        speeds = {how: [] for how in LAUNCHES}
        for round_ in range(repeats):
            for how in (LAUNCHES if round_ % 2 == 0 else LAUNCHES[::-1]):
                speeds[how].append(launch(how, preset, warmup, steps))
                log(f"{preset}, {how}: {speeds[how][-1]:,.0f} tokens/s")
        reference = statistics.median(speeds[LAUNCHES[0]])
        for how in LAUNCHES:
            rows.append({"preset": preset, "launch": how, "rounds": repeats,
                         "tokens_per_s": statistics.median(speeds[how]),
                         "every_round": speeds[how], "vs_one_process": statistics.median(speeds[how]) / reference})
    env["load average at the end"] = load_average()

    print("# babygpt data-parallel training throughput (CPU, gloo)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print("- tokens/s is the global batch over the step time; the median of the launches\n")
    print("| preset | launch | launches | tokens/s | vs 1 process x 2 threads |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['preset']} | {row['launch']} | {row['rounds']} | {row['tokens_per_s']:,.0f} | "
              f"{row['vs_one_process']:.2f}x |")
    goals = [{"goal": f"torchrun 2 processes, {row['preset']}: measured (no target; vs 1 process)", "status": "INFO",
              "value": row["vs_one_process"], "threshold": None,
              "shown": f"{row['tokens_per_s']:,.0f} tokens/s, {row['vs_one_process']:.2f}x"}
             for row in rows if row["launch"].startswith("torchrun")]
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows, "goals": goals}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
