#!/usr/bin/env python3
"""Build the shipped LoRA adapter ``checkpoints/gpt-kjv-lora`` and the README's fine-tuning table.

The shipped ``gpt`` (trained on Shakespeare) is fine-tuned on the second built-in corpus, ``kjv``,
by the project's own command line (RECIPE below). Its character vocabulary has no token for the
digits and brackets of the verse numbers, so ``--drop-unknown`` drops them (about 3 % of the text).

Rows of the table, all from the same base, corpus, steps, batch and seed:

- ``base``: the shipped ``gpt`` untouched;
- ``LoRA r=4, 8, 16``: adapters on every matrix of every block (query, key, value, attention
  output, MLP; the head is tied to the embedding and stays as it is), alpha = 2r (the same scale,
  2, for every rank, so that the ranks differ in capacity only); r=8 is the shipped adapter;
- ``full fine-tune``: every weight trained (``--full``), at the base's own peak learning rate,
  since the adapters' higher rate would wreck a full model.

For each row: trainable parameters, the size of what must be stored (the adapter file, or the
whole ``model.safetensors``), val loss over the whole val split of the new corpus and of
Shakespeare (``python -m babygpt eval``), and the training time from ``metrics.json`` (evaluations
included). Runs go one after the other, never in parallel. Results go to
``checkpoints/adapters.json`` and into README.md between the fine-tune table markers.

Usage::

    python -m scripts.build_adapter             # all rows, about 12 minutes on 2 cores
    python -m scripts.build_adapter --dry-run   # print the commands

Rebuilding ``checkpoints/gpt`` changes its weights, and the shipped adapter then refuses to load
(its config holds the sha256 of the weights it was trained on): run this script again after it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from babygpt.machine import load_averages
from scripts.build_checkpoints import format_bytes, format_seconds, machine

REPO = Path(__file__).resolve().parent.parent

CHECKPOINTS = REPO / "checkpoints"
SHIPPED = CHECKPOINTS / "gpt-kjv-lora"
RESULTS = CHECKPOINTS / "adapters.json"
MAIN_README = REPO / "README.md"
TABLE_START = "<!-- fine-tune table: written by scripts/build_adapter.py -->"
TABLE_END = "<!-- end of fine-tune table -->"
BASE, CORPUS = "gpt", "kjv"
RECIPE = ["--max-iters", "1000", "--eval-interval", "100", "--batch-size", "12", "--seed", "1337"]
LORA_RATE, FULL_RATE = "3e-3", "1e-3"
TARGETS = "q,k,v,o,mlp"
RANKS = (4, 8, 16)
SHIPPED_RANK = 8
RESUME_FILES = ("training_state.safetensors", "training_state.json")
EVAL_LINE = re.compile(r"val loss (?P<loss>[\d.]+) nats/token")


def finetune_command(out: Path, rank: int | None) -> list[str]:
    method = (["--lora-r", str(rank), "--lora-alpha", str(2 * rank), "--lora-targets", TARGETS,
               "--learning-rate", LORA_RATE] if rank else ["--full", "--learning-rate", FULL_RATE])
    return [sys.executable, "-m", "babygpt", "finetune", "--base", BASE, "--data", CORPUS, "--drop-unknown",
            *method, *RECIPE, "--out", str(out)]


def eval_command(checkpoint: str, corpus: str) -> list[str]:
    return [sys.executable, "-m", "babygpt", "eval", checkpoint, "--data", corpus, "--drop-unknown"]


def show(command: list[str]) -> str:
    return shlex.join(["python", *command[1:]]).replace(str(REPO) + "/", "")


def full_split_loss(checkpoint: str, corpus: str) -> float:
    result = subprocess.run(eval_command(checkpoint, corpus), cwd=REPO, check=True, capture_output=True, text=True)
    return float(EVAL_LINE.search(result.stdout)["loss"])


def row(name: str, checkpoint: str, stored: Path, metrics: dict | None, command: list[str] | None, load: tuple) -> dict:
    return {
        "name": name,
        "trainable_parameters": metrics["trainable_parameters"] if metrics else 0,
        "parameters": metrics["parameters"] if metrics else None,
        "stored_bytes": stored.stat().st_size,
        "stored_file": stored.name,
        "val_loss_kjv": full_split_loss(checkpoint, CORPUS),
        "val_loss_shakespeare": full_split_loss(checkpoint, "shakespeare"),
        "train_seconds": metrics["train_seconds"] if metrics else None,
        "load_before": load[0], "load_after": load[1],
        "command": show(command) if command else None,
    }


def train(out: Path, rank: int | None) -> tuple[dict, tuple]:
    if out.exists():
        shutil.rmtree(out)
    before = load_averages()
    subprocess.run(finetune_command(out, rank), cwd=REPO, check=True)
    after = load_averages()
    for filename in RESUME_FILES:
        (out / filename).unlink(missing_ok=True)
    return json.loads((out / "metrics.json").read_text()), (before[0], after[0])


def render_table(rows: list[dict]) -> list[str]:
    lines = ["| model | trainable parameters | stored | val loss, kjv | val loss, Shakespeare | training time (2 "
             "cores) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = f" ({100 * r['trainable_parameters'] / r['parameters']:.2f} %)" if r["parameters"] else ""
        time_text = format_seconds(r["train_seconds"]) if r["train_seconds"] is not None else "—"
        lines.append(f"| {r['name']} | {r['trainable_parameters']:,}{share} | {format_bytes(r['stored_bytes'])} "
                     f"(`{r['stored_file']}`) | {r['val_loss_kjv']:.4f} | {r['val_loss_shakespeare']:.4f} | "
                     f"{time_text} |")
    return lines


def update_readme(results: dict) -> None:
    text = MAIN_README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    m = results["machine"]
    footer = (f"\nMeasured on {m['cpu']}, {m['logical cpus']} cores, torch {m['torch']}, on {results['date']}; "
              "load average before → after each run is in `checkpoints/adapters.json`.\n")
    MAIN_README.write_text(text[:start] + "\n" + "\n".join(render_table(results["rows"])) + "\n" + footer + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands and change nothing")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.gettempdir(), "babygpt-adapters") if args.dry_run else Path(
        tempfile.mkdtemp(prefix="babygpt-adapters-"))
    plan = [(f"LoRA r={r}", r, SHIPPED if r == SHIPPED_RANK else scratch / f"lora-r{r}") for r in RANKS]
    plan.append(("full fine-tune", None, scratch / "full"))
    if args.dry_run:
        for _, rank, out in plan:
            print(show(finetune_command(out, rank)))
        return 0
    started = time.perf_counter()
    rows = [row(f"base (`{BASE}`, no fine-tune)", BASE, CHECKPOINTS / BASE / "model.safetensors", None, None,
                (None, None))]
    for name, rank, out in plan:
        print(f"=== {name}: {show(finetune_command(out, rank))}", flush=True)
        metrics, load = train(out, rank)
        stored = out / ("adapter_model.safetensors" if rank else "model.safetensors")
        rows.append(row(name + (" (shipped: `gpt-kjv-lora`)" if out == SHIPPED else ""), str(out), stored, metrics,
                        finetune_command(out, rank), load))
        print(render_table(rows)[-1], flush=True)
    results = {"machine": machine(), "date": datetime.date.today().isoformat(), "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    update_readme(results)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"done in {format_seconds(time.perf_counter() - started)}; table in README.md and {RESULTS.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
