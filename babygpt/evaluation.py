"""Measuring a model: the one loss loop (training's evaluations, ``eval``, the quantization
report), loss and bits per character on a split, and addition accuracy."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

import torch

from .data import Dataset
from .models import evaluating
from .sampling import generate


@torch.no_grad()
def loss_over(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext) -> tuple[float, int]:
    """(total nats, tokens) of the model's cross-entropy over ``(x, y)`` batches, each moved to the
    model's device, in eval mode (the model's own mode again after); ``autocast`` makes the
    context each forward runs in (bf16 autocast, or nothing)."""
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    with evaluating(model):
        for x, y in batches:
            with autocast():
                _, loss = model(x.to(device), y.to(device))
            total += loss.item() * y.numel()
            tokens += y.numel()
    return total, tokens


def in_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def split_loss(model, dataset: Dataset, tokenizer, split: str = "val", batch_size: int = 32) -> dict:
    """Mean cross-entropy over every non-overlapping window of a split, and bits per character.

    Bits per character divides the total loss (in bits) by the characters those tokens spell, so
    a character model and a BPE model compare on the same scale.
    """
    x, y = dataset.windows(split, model.config.block_size)
    total_nats, tokens = loss_over(model, in_batches(x, y, batch_size))
    characters = len(tokenizer.decode(y.flatten().tolist()))
    return {
        "loss": total_nats / tokens,
        "bits_per_char": total_nats / math.log(2) / characters,
        "tokens": tokens,
        "characters": characters,
    }


def addition_accuracy(model, tokenizer, lines: list[str], max_problems: int = 500) -> float:
    """Exact-match accuracy: greedy-decode the answer of each ``a+b=c`` line."""
    lines = [line for line in lines if re.fullmatch(r"\d+\+\d+=\d+", line)][:max_problems]
    if not lines:
        raise ValueError("no a+b=c lines to evaluate")
    newline = tokenizer.encode("\n")
    correct = 0
    for line in lines:
        question, answer = line.split("=", 1)
        prompt = tokenizer.encode(question + "=")
        out = generate(model, prompt, max_new_tokens=len(answer) + 1, temperature=0.0, stop_ids=newline)
        correct += tokenizer.decode(out[len(prompt) :]).split("\n")[0] == answer
    return correct / len(lines)
