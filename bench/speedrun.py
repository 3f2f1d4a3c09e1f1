"""CPU speedrun: the lowest val loss on Tiny Shakespeare in 130 seconds of wall clock on 2 cores.

The rule (issue "Performance, round two"): a fixed **130 s of wall clock** — a learner's two
minutes — for every recipe, whatever the machine; no budget is scaled by a matmul peak, which
predicts neither nanoGPT's time nor ours (a Xeon with twice the peak trained the ``gpt`` preset at
the EPYC's speed). nanoGPT's CPU recipe runs in the same bench as the reference: its val loss at
its own 2,000 iterations (uncapped: the time it takes is in the table) and at the full budget.
The CPU model heads the report. Goal: val ≤ 1.55.

Data: ``../shared/data/tinyshakespeare/input.txt`` (read from there, never copied; ``--data`` runs
the same recipes on another text, such as the repository's own ``data/shakespeare.txt``), a character
vocabulary, nanoGPT's split (first 90 % train, last 10 % val). The score is the loss over every
window of the val split (``babygpt.evaluation.split_loss``) of the best checkpoint, not the
trainer's 20-batch estimate. Every recipe runs with ``--seeds`` seeds (2), so a gain smaller than
the spread between seeds reads as noise.

Recipes, one change at a time, so the table shows what each change bought:

- ``reference``: the ``gpt`` preset, which is nanoGPT's recipe, its 2,000 iterations, uncapped;
- ``whole-budget``: the same model for the whole budget (4,000 iterations' schedule, cut at 130 s);
- ``llama-block``: RMSNorm, RoPE, SwiGLU and grouped-query attention at the same width, AdamW,
  3,800 iterations;
- ``muon``: + Muon for the hidden matrices (``babygpt.muon``: orthogonalised in bf16 where the CPU
  has bf16 instructions, in float32 where it would emulate them), learning rate 2e-3, 1,650
  iterations (a Muon step costs about twice an AdamW one on 2 cores, so the schedule is shortened
  to end in time): the previous ``speedrun-cpu``;
- ``clock-128``: + the decay spread over the time budget instead of a guessed step count
  (``decay_by_clock``: the schedule ends when the 130 s do, on a slow hour or a fast machine), and a
  context of 128 characters instead of 64 (the same tokens per step: batch 12 × 128);
- ``two-blocks``: + 2 blocks instead of 4, so nearly twice the steps fit the budget; at 130 s more
  updates beat more depth;
- ``speedrun`` = the ``speedrun-cpu`` preset: + a warmup-stable-decay schedule (the peak held for
  40 % of the budget, then a linear decay to 3e-5) and a peak learning rate of 3e-3.

Usage: ``python -m bench.speedrun`` (about 30 minutes on 2 cores), ``--recipes reference,speedrun``,
``--seeds N``, ``--json PATH``, ``--budget SECONDS`` (a quick check, not the contest). Stdout
carries the markdown table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from babygpt.checkpoint import load_checkpoint
from babygpt.data import Dataset
from babygpt.evaluation import split_loss
from babygpt.machine import cpu_model, load_average, log
from babygpt.runs import new_run

REPO = Path(__file__).resolve().parent.parent

TINY_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
BUDGET_SECONDS = 130.0
GOAL = 1.55
EVAL = {"eval_interval": 500, "eval_iters": 20, "sample_tokens": 0}

# name -> (label, preset, overrides of the model, of the training, capped by the budget)
BEFORE_CLOCK = {"n_layer": 4, "block_size": 64}
COSINE = {"learning_rate": 2e-3, "min_lr": 2e-4, "stable_fraction": 0.0}
RECIPES = {
    "reference": ("nanoGPT's CPU recipe (the gpt preset), its own 2,000 iterations", "gpt", {}, {}, False),
    "whole-budget": ("the same, for the whole budget (4,000 iterations' schedule)", "gpt", {}, {"max_iters": 4000},
                     True),
    "llama-block": ("+ llama block: RMSNorm, RoPE, SwiGLU, GQA, 3,800 iterations", "speedrun-cpu", BEFORE_CLOCK,
                    {"optimizer": "adamw", "learning_rate": 1e-3, "min_lr": 1e-4, "max_iters": 3800,
                     "decay_by_clock": False, "stable_fraction": 0.0}, True),
    "muon": ("+ Muon for the hidden matrices, lr 2e-3, 1,650 iterations", "speedrun-cpu", BEFORE_CLOCK,
             {**COSINE, "max_iters": 1650, "decay_by_clock": False}, True),
    "clock-128": ("+ the decay follows the clock; context 128", "speedrun-cpu", {"n_layer": 4}, COSINE, True),
    "two-blocks": ("+ 2 blocks instead of 4", "speedrun-cpu", {}, COSINE, True),
    "speedrun": ("+ warmup-stable-decay, lr 3e-3 (the speedrun-cpu preset)", "speedrun-cpu", {}, {}, True),
}
WINNER = "speedrun"


def run(data: Path, preset: str, model: dict, overrides: dict, budget: float | None, out_dir: Path) -> dict:
    train = {**EVAL, **overrides, "max_seconds": budget or 0.0}
    trainer = new_run(str(data), preset=preset, model=model, train=train, out_dir=out_dir)
    started = time.perf_counter()
    for event in trainer.run():
        if event.kind == "eval":
            log(f"  step {event.step}: val {event.val_loss:.4f} ({time.perf_counter() - started:.0f} s)")
    seconds = time.perf_counter() - started
    best = load_checkpoint(out_dir)
    text = data.read_text(encoding="utf-8")
    dataset = Dataset.from_text(text, best.tokenizer, best.model.config.block_size)
    full = split_loss(best.model, dataset, best.tokenizer, "val")["loss"]
    return {"preset": preset, "model": model, "overrides": overrides, "steps": trainer.step,
            "seconds": round(seconds, 1), "parameters": trainer.model.num_parameters(),
            "estimate": trainer.best_val_loss, "val_loss": full}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {','.join(RECIPES)}")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--budget", type=float, help=f"seconds per run instead of {BUDGET_SECONDS:.0f} (a quick check)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per recipe (2)")
    parser.add_argument("--data", type=Path, default=TINY_SHAKESPEARE,
                        help="the text to train and score on (default: Tiny Shakespeare from ../shared)")
    args = parser.parse_args(argv)
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    if not args.data.is_file():
        parser.error(f"{args.data} is missing: the benchmark reads Tiny Shakespeare from ../shared (or pass --data)")
    budget = args.budget or BUDGET_SECONDS
    log(f"budget {budget:.0f} s of wall clock per recipe, {args.seeds} seed(s) each")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            label, preset, model, overrides, capped = RECIPES[name]
            runs = []
            for seed in range(1337, 1337 + args.seeds):
                log(f"{name} seed {seed}: {label} (load average {load_average()})")
                # a quick check (--budget) caps every run; the contest leaves the reference its 2,000 steps
                cap = budget if capped or args.budget else None
                runs.append(run(args.data, preset, model, {**overrides, "seed": seed}, cap,
                                Path(folder) / f"{name}-{seed}"))
            losses = [r["val_loss"] for r in runs]
            results.append({"name": name, "label": label, "runs": runs, "val_loss": statistics.mean(losses),
                            "spread": max(losses) - min(losses), "parameters": runs[0]["parameters"]})
    print(table(results, budget, args))
    goals = [{"goal": f"speedrun: {r['name']}, val loss (mean of {args.seeds} seeds)",
              "shown": f"{r['val_loss']:.4f}" + (f" (goal ≤ {GOAL})" if r["name"] == WINNER else ""),
              "value": r["val_loss"], "threshold": GOAL if r["name"] == WINNER else None,
              "status": ("PASS" if r["val_loss"] <= GOAL else "MISS") if r["name"] == WINNER else "INFO"}
             for r in results]
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": budget, "data": str(args.data), "results": results,
                                               "goals": goals}, indent=2))
    return 0


def table(results: list[dict], budget: float, args) -> str:
    lines = [f"CPU speedrun on {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"{datetime.date.today()}, on {args.data.name}: {budget:.0f} s of wall clock per run, "
             f"{args.seeds} seed(s) per recipe.\n",
             "| recipe | parameters | steps | seconds | val loss per seed (whole val split) | mean | spread "
             f"| vs the row above | goal ≤ {GOAL} |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    previous = None
    for r in results:
        runs = r["runs"]
        change = "" if previous is None else f"{r['val_loss'] - previous['val_loss']:+.4f}" + (
            " (noise)" if abs(r["val_loss"] - previous["val_loss"]) < max(r["spread"], previous["spread"]) else "")
        steps = " / ".join(f"{x['steps']:,}" for x in runs)
        seconds = " / ".join(f"{x['seconds']:.0f}" for x in runs)
        losses = " / ".join(f"{x['val_loss']:.4f}" for x in runs)
        lines.append(f"| {r['label']} | {r['parameters']:,} | {steps} | {seconds} | {losses} | {r['val_loss']:.4f} | "
                     f"{r['spread']:.4f} | {change} | {'PASS' if r['val_loss'] <= GOAL else 'miss'} |")
        previous = r
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
