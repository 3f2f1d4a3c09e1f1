"""Sampling from any family: temperature, top-k, a per-call seed, stop tokens.

Each new token re-runs the model on the last ``block_size`` tokens (no KV cache yet). Randomness
comes from a ``torch.Generator`` made for the call, so the global RNG is never touched and the
same seed always gives the same text.
"""

from __future__ import annotations

import torch


def next_token_distribution(logits: torch.Tensor, temperature: float, top_k: int = 0) -> torch.Tensor:
    """Probabilities (V,) from the last position's logits (V,) after temperature and top-k."""
    # Subtract the maximum first: (logits - max) / temperature is never +inf, so even a tiny
    # temperature gives a valid (nearly one-hot) distribution instead of NaN.
    logits = (logits.float() - logits.max()) / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def generate(
    model,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    stop_ids: list[int] | None = None,
) -> list[int]:
    """The prompt followed by up to ``max_new_tokens`` new ids. ``temperature=0`` is greedy."""
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token to continue from")
    if not (temperature >= 0):  # also refuses NaN
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be 0 (off) or positive, got {top_k}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must not be negative, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = list(prompt_ids)
    stop = set(stop_ids or ())
    for _ in range(max_new_tokens):
        context = torch.tensor([ids[-model.config.block_size :]], device=device)
        logits, _ = model(context)
        last = logits[0, -1]
        if temperature == 0:
            token = int(last.argmax())
        else:
            probs = next_token_distribution(last, temperature, top_k).cpu()
            token = int(torch.multinomial(probs, 1, generator=generator))
        ids.append(token)
        if token in stop:
            break
    model.train(was_training)
    return ids


def sample_text(model, tokenizer, prompt: str, max_new_tokens: int, **settings) -> str:
    """Convenience: text in, prompt plus continuation out."""
    ids = generate(model, tokenizer.encode(prompt), max_new_tokens, **settings)
    return tokenizer.decode(ids)
