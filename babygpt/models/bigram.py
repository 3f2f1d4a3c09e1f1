"""Bigram language model: a V x V table of next-token logits (Karpathy, "makemore" part 1).

Each row of the table is the logit vector for the token that follows a given token. It is the
simplest model that can be trained with the same loop as a transformer, and its loss floor is
the entropy of the corpus's bigram statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseConfig, Family, LanguageModel


@dataclass
class BigramConfig(BaseConfig):
    pass


class Bigram(LanguageModel):
    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.zeros_(self.table.weight)  # start from the uniform distribution

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_attention: bool = False):
        self.check_input(idx)
        self.no_attention(return_attention)
        logits = self.table(idx)
        return logits, self.loss(logits, targets)


PRESETS = {
    # A table learns fast with a large learning rate; there is nothing to overfit but counts.
    "bigram": {"model": {"block_size": 8}, "train": {"learning_rate": 1e-1, "max_iters": 1000, "batch_size": 32}},
}

FAMILY = Family("bigram", BigramConfig, Bigram, PRESETS)
