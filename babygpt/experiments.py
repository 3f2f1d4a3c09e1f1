"""Runs side by side: several checkpoints' training curves on one chart, and a table to read them by.

Every checkpoint keeps its training history in ``metrics.json`` (step, tokens seen, seconds, train
and val loss at each evaluation). Overlaying two runs is only fair when their losses are on the
same scale: a loss is nats per *token*, so two tokenizers or two corpora give numbers that cannot
be compared. Bits per character divides out the tokenizer (a BPE token spells several characters),
so char and BPE models on the same text do compare on it.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from babygpt.checkpoint import Checkpoint, load_checkpoint
from babygpt.data import Dataset, is_builtin, load_text
from babygpt.stats import flops_per_token
from babygpt.tokenizer import tokenizer_from_dict

X_AXES = {"step": "step", "tokens": "tokens seen", "flops": "training FLOPs", "seconds": "training seconds"}


@dataclass
class Run:
    """One checkpoint's training, as read back from its files."""

    name: str
    history: list[dict]
    parameters: int
    best_val_loss: float | None
    train_seconds: float
    tokens_seen: int
    corpus: str
    tokenizer: str
    training_flops_per_token: float
    characters_per_token: float | None  # on the corpus's val split; None when the corpus is not here

    @property
    def bits_per_char(self) -> float | None:
        if self.best_val_loss is None or self.characters_per_token is None:
            return None
        return self.best_val_loss / math.log(2) / self.characters_per_token

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else None

    def x_values(self, x_axis: str) -> list[float]:
        if x_axis == "flops":
            return [point["tokens"] * self.training_flops_per_token for point in self.history]
        key = {"step": "step", "tokens": "tokens", "seconds": "elapsed"}[x_axis]
        return [point[key] for point in self.history]


def characters_per_token(tokenizer, corpus: str, block_size: int) -> float | None:
    """How many characters one token spells on ``corpus``'s val split (1 for characters)."""
    if tokenizer.kind == "char":
        return 1.0
    if not is_builtin(corpus):
        return None
    # Encoding a whole corpus takes seconds: remember it per tokenizer (by its contents) and corpus.
    return _characters_per_token(json.dumps(tokenizer.to_dict(), sort_keys=True), corpus, block_size)


@functools.lru_cache(maxsize=32)
def _characters_per_token(tokenizer_json: str, corpus: str, block_size: int) -> float:
    tokenizer = tokenizer_from_dict(json.loads(tokenizer_json))
    val = Dataset.from_text(load_text(corpus), tokenizer, block_size).val
    return len(tokenizer.decode(val.tolist())) / len(val)


def run_of(name: str, checkpoint: Checkpoint) -> Run:
    """The run behind a loaded checkpoint (a model or an adapter)."""
    metrics, model_config = checkpoint.metrics, checkpoint.model.config
    corpus = checkpoint.config.get("corpus", "unknown")
    val_losses = [p["val_loss"] for p in metrics.get("history", []) if p.get("val_loss") is not None]
    best = min(val_losses, default=metrics.get("val_loss"))
    return Run(
        name=name,
        history=list(metrics.get("history", [])),
        parameters=sum(p.numel() for p in checkpoint.model.parameters()),
        best_val_loss=best,
        train_seconds=float(metrics.get("train_seconds", 0.0)),
        tokens_seen=int(metrics.get("tokens_seen", 0)),
        corpus=corpus,
        tokenizer=f"{checkpoint.tokenizer.kind}-{checkpoint.tokenizer.vocab_size}",
        training_flops_per_token=flops_per_token(model_config)["training"],
        characters_per_token=characters_per_token(checkpoint.tokenizer, corpus, model_config.block_size),
    )


def read_run(name: str, directory: str | Path) -> Run:
    """The run behind a checkpoint (a model or an adapter) directory."""
    return run_of(name, load_checkpoint(directory))


def smoothed(values: list[float], weight: float) -> list[float]:
    """An exponential moving average, debiased at the start (TensorBoard's smoothing): 0 leaves the
    curve as it is, 0.9 averages over about the last ten points."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
    average, out = 0.0, []
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def comparable_groups(runs: list[Run]) -> dict[str, list[str]]:
    """Run names by what their losses are measured on: a loss compares only within one group."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        groups.setdefault(f"{run.corpus}, {run.tokenizer}", []).append(run.name)
    return groups


def overlay_figure(runs: list[Run], x_axis: str = "step", smoothing: float = 0.0) -> go.Figure:
    """Every run's train (dashed) and val (solid) loss against ``x_axis``, one colour per run."""
    if x_axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")
    figure = go.Figure()
    for colour, run in enumerate(runs):
        x = run.x_values(x_axis)
        line = {"color": f"hsl({(colour * 137) % 360}, 65%, 45%)"}
        for split, dash in (("val", "solid"), ("train", "dash")):
            points = [(xi, p[f"{split}_loss"]) for xi, p in zip(x, run.history) if p.get(f"{split}_loss") is not None]
            if points:
                xs, ys = zip(*points)
                figure.add_scatter(x=list(xs), y=smoothed(list(ys), smoothing), mode="lines",
                                   name=f"{run.name} {split}", line={**line, "dash": dash}, legendgroup=run.name)
    groups = comparable_groups(runs)
    title = "loss (nats per token)" + ("" if len(groups) <= 1 else " — not comparable across corpora or tokenizers")
    figure.update_layout(xaxis_title=X_AXES[x_axis], yaxis_title=title, margin={"t": 30}, height=420)
    return figure


TABLE_HEADERS = ["model", "parameters", "best val loss", "bits per character", "tokens/s", "training seconds",
                 "corpus", "tokenizer"]


def comparison_rows(runs: list[Run]) -> list[list]:
    """One row per run, in TABLE_HEADERS order (None where a figure cannot be had)."""
    return [[
        run.name, run.parameters,
        None if run.best_val_loss is None else round(run.best_val_loss, 4),
        None if run.bits_per_char is None else round(run.bits_per_char, 4),
        None if run.tokens_per_second is None else round(run.tokens_per_second),
        round(run.train_seconds, 1), run.corpus, run.tokenizer,
    ] for run in runs]


def comparability_note(runs: list[Run]) -> str:
    """What may be compared with what, in words, for the runs on the chart."""
    groups = comparable_groups(runs)
    if len(groups) <= 1:
        return "All these runs share one corpus and one tokenizer: their losses compare directly."
    listed = "; ".join(f"{', '.join(names)} ({key})" for key, names in groups.items())
    corpora = {run.corpus for run in runs}
    across = ("Bits per character compares them all: it divides out the tokenizer." if len(corpora) == 1 else
              "Bits per character compares runs on the same corpus across tokenizers, never across corpora.")
    return f"Losses are per token and compare only within a group of the same corpus and tokenizer: {listed}. {across}"
