"""Bigram language model: a V x V table of next-token logits (Karpathy, "makemore" part 1).

Each row of the table is the logit vector for the token that follows a given token. It is the
simplest model that can be trained with the same loop as a transformer, and its loss floor is
the entropy of the corpus's bigram statistics.

Hook points: ``logits`` only; the table's row for a token *is* the logits of the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseConfig, Family, HookPoint, LanguageModel, SavedActivations, head_and_loss_bytes


@dataclass
class BigramConfig(BaseConfig):
    pass


class Bigram(LanguageModel):
    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.zeros_(self.table.weight)  # start from the uniform distribution
        self.hook_logits = HookPoint("logits")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        self.check_input(idx)
        logits = self.hook_logits(self.table(idx))  # (B, T, V): row idx[b, t] of the table
        return logits, self.loss(logits, targets)

    def parameter_groups(self):
        return {"bigram table": [self.table.weight]}

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        return SavedActivations({}, 0, 8 + head_and_loss_bytes(0, self.config.vocab_size, bytes_per_value))

    def to_transformers(self):
        raise ValueError("transformers has no bigram model: a table of next-token logits is no transformers "
                         "architecture (gpt and llama export)")


PRESETS = {
    # A table learns fast with a large learning rate; there is nothing to overfit but counts.
    "bigram": {"model": {"block_size": 8}, "train": {"learning_rate": 1e-1, "max_iters": 1000, "batch_size": 32}},
}

FAMILY = Family("bigram", BigramConfig, Bigram, PRESETS, "a V×V table of next-token logits (makemore part 1)")
