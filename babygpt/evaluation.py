"""Measuring a trained model: loss and bits per character on a split, and addition accuracy."""

from __future__ import annotations

import math
import re

import torch

from .data import Dataset
from .sampling import generate


@torch.no_grad()
def split_loss(model, dataset: Dataset, tokenizer, split: str = "val", batch_size: int = 32) -> dict:
    """Mean cross-entropy over every non-overlapping window of a split, and bits per character.

    Bits per character divides the total loss (in bits) by the characters those tokens spell, so
    a character model and a BPE model compare on the same scale.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    x, y = dataset.windows(split, model.config.block_size)
    total_nats = 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        _, loss = model(xb, yb)
        total_nats += loss.item() * yb.numel()
    tokens = y.numel()
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
