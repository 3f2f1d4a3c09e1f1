#!/usr/bin/env python3
"""Rebuild the pretrained checkpoints shipped in ``checkpoints/``.

One checkpoint per preset (MODELS below), each trained on the built-in ``shakespeare`` corpus
by the project's own command line, with the preset's own training settings and nothing else::

    python -m babygpt train --preset NAME --data shakespeare --out checkpoints/NAME --sample-tokens 0

(``gpt-block`` also with ``--attention-snapshots``: its heads' attention at every evaluation, for
the Attention tab's replay of heads forming; that changes no weight.) For each model the script then

1. deletes the resume files ``training_state.safetensors`` and ``training_state.json`` (shipped
   checkpoints are for sampling and evaluation, not for resuming, and must stay small);
2. runs ``python -m babygpt eval checkpoints/NAME`` and parses the loss over the whole val split
   and the bits per character from its output;
3. records those figures with the ones from ``metrics.json`` (parameters, best val loss, steps,
   training seconds), the directory's size and the load average (``/proc/loadavg``) just before
   and just after training, so a reader can tell whether the machine was shared meanwhile.

Everything is written to ``checkpoints/index.json``, and ``checkpoints/README.md`` (including its
table) is generated from that file. Models are trained one after the other, never in parallel.

Rebuilding ``gpt`` changes the weights that the shipped LoRA adapter ``gpt-kjv-lora`` was
trained on (its config holds their sha256, and it then refuses to load): run
``scripts/build_adapter.py`` after it.

Usage::

    python -m scripts.build_checkpoints                        # rebuild all (about 7-10 min on 2 cores)
    python -m scripts.build_checkpoints --only gpt,llama       # rebuild some; keep the others' entries
    python -m scripts.build_checkpoints --dry-run              # print the commands, change nothing
    python -m scripts.build_checkpoints --readme-only          # regenerate README.md from index.json

Standard library and babygpt only.
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
import time
from pathlib import Path

from babygpt.machine import describe, load_averages
from babygpt.models import PRESETS, config_from_json
from babygpt.stats import flops_per_token

REPO = Path(__file__).resolve().parent.parent

CHECKPOINTS = REPO / "checkpoints"
INDEX = CHECKPOINTS / "index.json"
README = CHECKPOINTS / "README.md"
MAIN_README = REPO / "README.md"
TABLE_START = "<!-- checkpoint table: written by scripts/build_checkpoints.py -->"
TABLE_END = "<!-- end of checkpoint table -->"
CORPUS = "shakespeare"

# The shipped models, in the order of the table: one checkpoint per preset, named after it.
MODELS = [
    "bigram",
    "ngram",
    "lstm",
    "gpt-single-head",
    "gpt-multi-head",
    "gpt-block",
    "gpt",
    "gpt-time-weighted",
    "gpt-low-rank",
    "llama",
]

RESUME_FILES = ("training_state.safetensors", "training_state.json")

# The line `python -m babygpt eval` prints, e.g.
# "val loss 1.9512 nats/token, 2.8150 bits/char over 150,000 tokens (150,000 characters) of shakespeare"
EVAL_LINE = re.compile(r"val loss (?P<loss>[\d.]+) nats/token, (?P<bpc>[\d.]+) bits/char")


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

# Trained keeping every head's attention at each evaluation, so that the Attention tab (and Start
# here's step 4) can replay heads forming on a shipped model; the snapshots change no weight.
WITH_ATTENTION_SNAPSHOTS = {"gpt-block"}


def train_command(name: str) -> list[str]:
    out = f"checkpoints/{name}"
    snapshots = ["--attention-snapshots"] if name in WITH_ATTENTION_SNAPSHOTS else []
    return [sys.executable, "-m", "babygpt", "train", "--preset", name, "--data", CORPUS, "--out", out,
            "--sample-tokens", "0", *snapshots]


def eval_command(name: str) -> list[str]:
    return [sys.executable, "-m", "babygpt", "eval", f"checkpoints/{name}"]


def show(command: list[str]) -> str:
    """The command as one would type it (``python`` rather than the interpreter's full path)."""
    return shlex.join(["python", *command[1:]])


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------

def directory_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def machine() -> dict:
    """The machine the checkpoints were built on (``babygpt.machine.describe``, the load average aside:
    each entry has its own)."""
    return {key: value for key, value in describe().items() if key != "load average"}


# --------------------------------------------------------------------------
# Building one checkpoint
# --------------------------------------------------------------------------

def build(name: str) -> dict:
    """Train, strip, evaluate and measure one checkpoint; return its index entry."""
    out = CHECKPOINTS / name
    if out.exists():
        shutil.rmtree(out)  # start clean: no file of an older build may survive

    load_before = load_averages()
    started = time.perf_counter()
    subprocess.run(train_command(name), cwd=REPO, check=True)
    wall = time.perf_counter() - started
    load_after = load_averages()

    for filename in RESUME_FILES:
        (out / filename).unlink(missing_ok=True)

    result = subprocess.run(eval_command(name), cwd=REPO, check=True, capture_output=True, text=True)
    print(result.stdout, end="")
    match = EVAL_LINE.search(result.stdout)
    if match is None:
        raise RuntimeError(f"could not read the val loss from the eval output of {name}:\n{result.stdout}")

    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "name": name,
        "family": PRESETS[name][0],
        "preset": name,
        "corpus": CORPUS,
        "parameters": metrics["parameters"],
        "val_loss": metrics["val_loss"],
        "full_val_loss": float(match["loss"]),
        "bits_per_char": float(match["bpc"]),
        "steps": metrics["steps"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(wall, 1),
        "size_bytes": directory_bytes(out),
        "load_before": load_before,
        "load_after": load_after,
        "date": datetime.date.today().isoformat(),
        "command": show(train_command(name)),
    }


# --------------------------------------------------------------------------
# index.json and README.md
# --------------------------------------------------------------------------

def read_index() -> dict:
    if INDEX.exists():
        return json.loads(INDEX.read_text())
    return {"checkpoints": []}


def write_index(index: dict) -> None:
    INDEX.write_text(json.dumps(index, indent=2) + "\n")


def format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def format_bytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def forward_flops_per_token(name: str) -> float:
    """Analytic forward FLOPs per token at full context, from the checkpoint's own config."""
    config = json.loads((CHECKPOINTS / name / "config.json").read_text())
    return flops_per_token(config_from_json(config["model"]))["forward"]


def render_table(entries: list[dict]) -> list[str]:
    rows = [
        "| name | family | parameters | FLOPs/token (forward) | val loss (best, training) | val loss (full split) "
        "| bits/char | training time | size | load avg before → after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        rows.append(
            f"| `{e['name']}` | {e['family']} | {e['parameters']:,} | {forward_flops_per_token(e['name']):,.0f} "
            f"| {e['val_loss']:.4f} | {e['full_val_loss']:.4f} "
            f"| {e['bits_per_char']:.3f} | {format_seconds(e['train_seconds'])} | {format_bytes(e['size_bytes'])} "
            f"| {e['load_before'][0]:.2f} → {e['load_after'][0]:.2f} |"
        )
    return rows


def update_main_readme(index: dict) -> None:
    """Put the same table into the project README, between its checkpoint-table markers."""
    text = MAIN_README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    MAIN_README.write_text(text[:start] + "\n" + "\n".join(render_table(index["checkpoints"])) + "\n" + text[end:])


def render_readme(index: dict) -> str:
    entries = index["checkpoints"]
    rows = render_table(entries)
    # Flag any model that scores worse than the bigram table: it learned less than counting pairs.
    baseline = next((e for e in entries if e["family"] == "bigram"), None)
    worse = [e["name"] for e in entries
             if baseline and e is not baseline and e["full_val_loss"] > baseline["full_val_loss"]]
    note = (
        f"\nNote: {', '.join(f'`{n}`' for n in worse)} ended above the bigram's val loss "
        f"({baseline['full_val_loss']:.4f}) with the preset's settings.\n"
        if worse else ""
    )
    m = index["machine"]
    dates = sorted({e["date"] for e in entries})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    total = sum(e["size_bytes"] for e in entries)
    return f"""# Pretrained checkpoints

Ready-to-sample BabyGPT models, one per preset, each trained by the project's own command line on
the built-in `shakespeare` corpus (character tokenizer) with the preset's own training settings:

```bash
python -m babygpt train --preset NAME --data shakespeare --out checkpoints/NAME --sample-tokens 0
```

`gpt-block` is trained with `--attention-snapshots` too: `attention_snapshots.safetensors` keeps its
heads' attention at every evaluation, so that the app's Attention tab replays the heads forming.

Each directory is an ordinary checkpoint (`config.json`, `tokenizer.json`, `model.safetensors`
with the weights of the best val loss, `metrics.json`) without the resume files
(`training_state.*`): these are for sampling and evaluation, not for resuming.

```bash
python -m babygpt sample checkpoints/gpt --prompt "ROMEO:" --max-new-tokens 300
python -m babygpt eval checkpoints/gpt
```

## Rebuilding

One command retrains them all, one after the other, and regenerates `index.json` and this file:

```bash
python -m scripts.build_checkpoints
```

`--only gpt,llama` rebuilds some (keeping the others' entries), `--dry-run` prints the commands.

## The models

"Val loss (best, training)" is the best of the trainer's periodic estimates (20 random batches),
whose weights were saved; "val loss (full split)" and bits per character are from
`python -m babygpt eval` over every window of the val split (the last 10 % of the corpus), in nats
per token. Load average is the 1-minute figure from `/proc/loadavg` just before and just after
training; the training itself adds up to about {m['logical cpus']} (one per core) once it has run for a
minute or so, so clearly more than that after training means other work shared the machine and
the training time is inflated.

{chr(10).join(rows)}
{note}
Total size: {format_bytes(total)}. Figures per checkpoint, including steps, wall time and the
1/5/15-minute load averages, are in `index.json`.

Trained on {m['cpu']}, {m['logical cpus']} cores, torch {m['torch']}, Python {m['python']}, on {when}.

## The LoRA adapter

`gpt-kjv-lora` is not a model but a LoRA adapter on `gpt` (only its `adapter_model.safetensors`
and `adapter_config.json`, which names the base and the sha256 of the base's weights): the
Shakespeare model fine-tuned on the King James Bible. It loads wherever a checkpoint does
(`python -m babygpt sample checkpoints/gpt-kjv-lora --prompt "And God said"`). It is built, with
the table comparing it to other ranks and a full fine-tune, by `python -m scripts.build_adapter`
(figures in `adapters.json` and in the project README), and must be rebuilt after `gpt` is.
"""


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated models to rebuild (default all: {','.join(MODELS)})")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and change nothing")
    parser.add_argument("--readme-only", action="store_true",
                        help="regenerate README.md from index.json; train nothing")
    args = parser.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
        args.names = [n for n in MODELS if n in names]
    else:
        args.names = list(MODELS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        for name in args.names:
            print(show(train_command(name)))
            print("rm -f " + " ".join(f"checkpoints/{name}/{f}" for f in RESUME_FILES))
            print(show(eval_command(name)))
        return 0

    if args.readme_only:
        README.write_text(render_readme(read_index()))
        update_main_readme(read_index())
        return 0

    CHECKPOINTS.mkdir(exist_ok=True)
    index = read_index()
    entries = {e["name"]: e for e in index["checkpoints"]}
    started = time.perf_counter()
    for i, name in enumerate(args.names, 1):
        print(f"=== [{i}/{len(args.names)}] {name}: {show(train_command(name))}", flush=True)
        entries[name] = build(name)
        # Write after every model, so an interrupted build keeps what it finished.
        index = {"machine": machine(), "checkpoints": [entries[n] for n in MODELS if n in entries]}
        write_index(index)
        README.write_text(render_readme(index))
        update_main_readme(index)
    print(f"built {len(args.names)} checkpoint(s) in {format_seconds(time.perf_counter() - started)}; "
          f"{format_bytes(directory_bytes(CHECKPOINTS))} in checkpoints/")
    if "gpt" in args.names:
        print("gpt was rebuilt: run python -m scripts.build_adapter, or the shipped adapter will refuse its new base")
    return 0


if __name__ == "__main__":
    sys.exit(main())
