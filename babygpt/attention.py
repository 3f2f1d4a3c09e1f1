"""Attention maps: what each head of a model attends to for a piece of text."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMaps:
    tokens: list[str]  # the text as the model saw it, one string per token
    weights: torch.Tensor  # (n_layer, n_head, T, T): row t = how position t spreads its attention
    cut: bool = False  # the text was longer than the context: these are its last block_size tokens

    def head_average(self, layer: int) -> torch.Tensor:
        return self.weights[layer].mean(dim=0)


@torch.no_grad()
def attention_maps(model, tokenizer, text: str) -> AttentionMaps:
    """Run ``text`` (its last ``block_size`` tokens) through ``model`` and keep every head's weights."""
    if not text:
        raise ValueError("the text is empty: give at least one character")
    all_ids = tokenizer.encode(text)
    ids = all_ids[-model.config.block_size :]
    if not ids:
        raise ValueError("the text encodes to no tokens")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        _, _, weights = model(torch.tensor([ids], device=device), return_attention=True)
    finally:
        model.train(was_training)
    return AttentionMaps([tokenizer.decode([i]) for i in ids], weights[0].float().cpu(), len(all_ids) > len(ids))
