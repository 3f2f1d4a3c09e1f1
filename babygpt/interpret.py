"""Looking inside a trained transformer: the logit lens and what each attention head does.

**Logit lens** (nostalgebraist 2020): the residual stream after each layer is read out as if it
were the last one, through the final norm and the output head. The rows show how the model's
guess for the next token forms layer by layer; the last row is the model's real prediction.

**Head roles**, scored as TransformerLens' head detector does, as the share of a head's attention
that follows a pattern (0 = never, 1 = always), averaged over the positions where the pattern
exists:

- *previous token*: position t attends to t - 1;
- *first token*: position t attends to position 0 (a "resting" position many heads park on);
- *induction*: on a random sequence repeated twice, position t of the second copy attends to the
  token right after the earlier occurrence of its own token (t - n + 1 for a copy of length n):
  the head that lets a model continue a pattern it has seen once in its context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import attention_weights, encode_tail
from .models import FAMILIES, LanguageModel, evaluating, family_of

ROLES = ("previous token", "first token", "induction")


def residual_names(model: LanguageModel) -> list[str]:
    """The residual stream's hook points, as the logit lens reads it: entering the first block, then
    after every block."""
    if not model.has_attention:
        readable = ", ".join(family.name for family in FAMILIES.values() if family.has_attention)
        raise ValueError(f"the logit lens reads the layers of {readable} models, not of a {family_of(model.config)} "
                         f"model")
    after = [name for name in model.hook_points() if name.startswith("blocks.") and name.endswith(".resid_post")]
    return ["blocks.0.resid_pre", *after]


@dataclass
class LogitLens:
    tokens: list[str]  # the input, one string per token
    layers: list[str]  # row names: "embeddings", "layer 0", ..., the last being the model's output
    top_tokens: list[list[str]]  # [row][position]: the likeliest next token read from that row
    top_probabilities: torch.Tensor  # (rows, positions): its probability
    target_probabilities: torch.Tensor | None  # (rows, positions - 1): probability of the actual next token


@torch.no_grad()
def logit_lens(model, tokenizer, text: str) -> LogitLens:
    """Read the residual stream after the embeddings and after every block through the final norm
    and head, for the last ``block_size`` tokens of ``text``."""
    names = residual_names(model)
    ids, _ = encode_tail(model, tokenizer, text)
    device = next(model.parameters()).device
    with evaluating(model):
        logits, kept = model.run_with_cache(torch.tensor([ids], device=device), names)
        rows = [model.unembed(kept[name])[0] for name in names]
    if not torch.allclose(rows[-1], logits[0], atol=1e-4):
        raise RuntimeError("the last row of the logit lens must be the model's own output")
    probs = torch.stack([row.float().softmax(-1) for row in rows]).cpu()  # (rows, T, V)
    top_p, top_id = probs.max(dim=-1)
    target_p = None
    if len(ids) > 1:
        targets = torch.tensor(ids[1:]).view(1, -1, 1).expand(probs.size(0), -1, 1)
        target_p = probs[:, :-1].gather(-1, targets)[..., 0]
    layers = ["embeddings"] + [f"layer {i}" for i in range(len(names) - 1)]
    return LogitLens([tokenizer.decode([i]) for i in ids], layers,
                     [[tokenizer.decode([i]) for i in row.tolist()] for row in top_id], top_p, target_p)


def pattern_score(weights: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Share of attention on ``pattern`` per head: ``weights`` (..., layers, heads, T, T), ``pattern``
    (T, T) with 1 where the role says a query should look; queries without a 1 are skipped."""
    rows = pattern.sum(-1) > 0
    on_pattern = (weights * pattern).sum(-1)[..., rows]  # (..., layers, heads, queries with a target)
    return on_pattern.mean(-1)


def role_patterns(length: int, repeat_from: int | None = None) -> dict[str, torch.Tensor]:
    """The (T, T) target patterns of each role; induction only when the second half repeats the first."""
    previous = torch.zeros(length, length)
    previous[torch.arange(1, length), torch.arange(length - 1)] = 1
    first = torch.zeros(length, length)
    first[1:, 0] = 1  # position 0 can only look at itself: no evidence either way
    patterns = {"previous token": previous, "first token": first}
    if repeat_from is not None:
        n = repeat_from
        induction = torch.zeros(length, length)
        queries = torch.arange(n, length)
        induction[queries, queries - n + 1] = 1
        patterns["induction"] = induction
    return patterns


@torch.no_grad()
def head_roles(model, seed: int = 0, copies_of: int | None = None) -> dict:
    """Per head, the previous-token, first-token and induction scores, measured on random token
    sequences repeated twice (8 of them; the repeat is what the induction score needs).

    Returns ``{"scores": {role: tensor (n_layer, n_head)}, "length": half length}``."""
    residual_names(model)  # attention families only
    n = copies_of or model.config.block_size // 2
    if not 2 <= n <= model.config.block_size // 2:
        raise ValueError(f"the repeated half must be 2 to {model.config.block_size // 2} tokens, got {n}")
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(0, model.config.vocab_size, (8, n), generator=generator)
    ids = torch.cat([half, half], dim=1)
    weights = attention_weights(model, ids.to(next(model.parameters()).device))  # (B, layers, heads, T, T)
    weights = weights.float().cpu().mean(0)
    patterns = role_patterns(2 * n, repeat_from=n)
    return {"scores": {role: pattern_score(weights, patterns[role]) for role in ROLES}, "length": n}
