"""Attention maps: what each head of a model attends to for a piece of text, read from the
``blocks.{i}.attn.pattern`` hook points every attention family names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import LanguageModel, evaluating, family_of


@dataclass
class AttentionMaps:
    tokens: list[str]  # the text as the model saw it, one string per token
    weights: torch.Tensor  # (n_layer, n_head, T, T): row t = how position t spreads its attention
    cut: bool = False  # the text was longer than the context: these are its last block_size tokens

    def head_average(self, layer: int) -> torch.Tensor:
        return self.weights[layer].mean(dim=0)


def pattern_names(model: LanguageModel) -> list[str]:
    """The hook points of every layer's attention pattern, first layer first."""
    if not model.has_attention:
        raise ValueError(f"a {family_of(model.config)} model has no attention to look at")
    return [name for name in model.hook_points() if name.startswith("blocks.") and name.endswith(".attn.pattern")]


@torch.no_grad()
def attention_weights(model: LanguageModel, idx: torch.Tensor) -> torch.Tensor:
    """Every head's attention for ids ``(B, T)``, in eval mode: ``(B, n_layer, n_head, T, T)``."""
    names = pattern_names(model)
    with evaluating(model):
        _, kept = model.run_with_cache(idx, names)
    return torch.stack([kept[name] for name in names], dim=1)


def encode_tail(model: LanguageModel, tokenizer, text: str) -> tuple[list[int], bool]:
    """(the ids the model sees of ``text``: its last ``max_context`` tokens, whether it was cut)."""
    if not text:
        raise ValueError("the text is empty: give at least one character")
    all_ids = tokenizer.encode(text)
    ids = all_ids[-model.max_context:] if model.max_context else all_ids
    if not ids:
        raise ValueError("the text encodes to no tokens")
    return ids, len(ids) < len(all_ids)


def attention_maps(model: LanguageModel, tokenizer, text: str) -> AttentionMaps:
    """Run ``text`` (its last ``block_size`` tokens) through ``model`` and keep every head's weights."""
    pattern_names(model)  # refuse a model without attention before encoding anything
    ids, cut = encode_tail(model, tokenizer, text)
    device = next(model.parameters()).device
    weights = attention_weights(model, torch.tensor([ids], device=device))
    return AttentionMaps([tokenizer.decode([i]) for i in ids], weights[0].float().cpu(), cut)
