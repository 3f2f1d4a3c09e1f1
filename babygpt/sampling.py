"""Sampling from any family: temperature, top-k, top-p, a per-call seed, stop tokens.

Each new token re-runs the model on the last ``block_size`` tokens (no KV cache yet). Randomness
comes from a ``torch.Generator`` made for the call, so the global RNG is never touched and the
same seed always gives the same text.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import torch


def next_token_distribution(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Probabilities (V,) from the last position's logits (V,) after temperature, top-k and top-p."""
    # Subtract the maximum first: (logits - max) / temperature is never +inf, so even a tiny
    # temperature gives a valid (nearly one-hot) distribution instead of NaN.
    logits = (logits.float() - logits.max()) / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        # Nucleus sampling: keep the smallest set of likeliest tokens whose mass reaches top_p.
        sorted_probs, order = torch.sort(probs, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs[mass_before >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def check_settings(max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    if not (temperature >= 0) or math.isinf(temperature):  # also refuses NaN
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be 0 (off) or positive, got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must not be negative, got {max_new_tokens}")


@torch.no_grad()
def stream(
    model,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_ids: list[int] | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time. ``temperature=0`` is greedy."""
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token to continue from")
    check_settings(max_new_tokens, temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = list(prompt_ids)
    stop = set(stop_ids or ())
    try:
        for _ in range(max_new_tokens):
            context = torch.tensor([ids[-model.config.block_size :]], device=device)
            logits, _ = model(context)
            last = logits[0, -1]
            if temperature == 0:
                token = int(last.argmax())
            else:
                probs = next_token_distribution(last, temperature, top_k, top_p).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            ids.append(token)
            yield token
            if token in stop:
                break
    finally:
        model.train(was_training)


def generate(model, prompt_ids: list[int], max_new_tokens: int, **settings) -> list[int]:
    """The prompt followed by up to ``max_new_tokens`` new ids (settings as ``stream``)."""
    return list(prompt_ids) + list(stream(model, prompt_ids, max_new_tokens, **settings))


def sample_text(model, tokenizer, prompt: str, max_new_tokens: int, **settings) -> str:
    """Convenience: text in, prompt plus continuation out."""
    ids = generate(model, tokenizer.encode(prompt), max_new_tokens, **settings)
    return tokenizer.decode(ids)


def side_by_side(models: dict, prompt: str, max_new_tokens: int, **settings) -> Iterator[dict]:
    """Generate from several ``{name: (model, tokenizer)}`` at once, one token each in turn.

    Yields ``{name: {"text", "new_tokens", "tokens_per_sec", "done"}}`` after every round, so a UI
    can show all columns growing together. Each model's speed counts only its own time.
    """
    streams, state = {}, {}
    for name, (model, tokenizer) in models.items():
        streams[name] = stream(model, tokenizer.encode(prompt), max_new_tokens, **settings)
        state[name] = {"text": prompt, "new_tokens": 0, "tokens_per_sec": 0.0, "done": False, "_seconds": 0.0}
    while not all(s["done"] for s in state.values()):
        for name, (_, tokenizer) in models.items():
            entry = state[name]
            if entry["done"]:
                continue
            start = time.perf_counter()
            token = next(streams[name], None)
            entry["_seconds"] += time.perf_counter() - start
            if token is None:
                entry["done"] = True
                continue
            entry["new_tokens"] += 1
            entry["text"] += tokenizer.decode([token])
            entry["tokens_per_sec"] = entry["new_tokens"] / max(entry["_seconds"], 1e-9)
        yield {name: {k: v for k, v in entry.items() if not k.startswith("_")} for name, entry in state.items()}
