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
from .stages import InsideView, Stage, shown, top_bars


@dataclass
class BigramConfig(BaseConfig):
    def in_words(self) -> str:
        return f"only the last token: a table of {self.vocab_size}×{self.vocab_size} next-token scores"


class Bigram(LanguageModel):
    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.zeros_(self.table.weight)  # start from the uniform distribution
        self.hook_logits = HookPoint("logits")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None,
                last_position_only: bool = False):
        self.check_input(idx)
        if last_position_only:  # each position reads its own token only
            idx = idx[:, -1:]
        logits = self.hook_logits(self.table(idx))  # (B, T, V): row idx[b, t] of the table
        return logits, self.loss(logits, targets)

    def inside_stages(self, view: InsideView) -> list[Stage]:
        V, token = self.config.vocab_size, view.ids[view.position]
        row = view.logits[view.position]
        best = int(row.argmax())
        probs = row.softmax(-1)
        return [Stage("logits", "The table's row is the logits", [
            f"A bigram model has no layers: {shown(view.token)} (id {token}) picks row {token} of its {V} × {V} table, "
            f"and that row is the score of every next token. No earlier token matters.",
            f"The row scores {shown(view.vocab[best])} highest ({float(row[best]):.2f}): after {shown(view.token)} "
            f"the training text had it {100 * float(probs[best]):.0f} % of the time, as far as the table learned.",
        ], [top_bars(row, [shown(t) for t in view.vocab], 10, f"row {token} of the table: the 10 highest")])]

    @torch.no_grad()
    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.table.weight[ids]}  # row ids[t] of the table, for every t

    def parameter_groups(self):
        return {"bigram table": [self.table.weight]}

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        return SavedActivations({}, 0, 8 + head_and_loss_bytes(0, self.config.vocab_size, bytes_per_value))

    def to_transformers(self):
        raise ValueError("transformers has no bigram model: a table of next-token logits is no transformers "
                         "architecture (gpt and llama export)")


PRESETS = {
    # A table learns fast with a large learning rate; there is nothing to overfit but counts.
    # The first rung of Start here's ladder ("builds_on": the rung a preset adds one idea to).
    "bigram": {"model": {"block_size": 8}, "train": {"learning_rate": 1e-1, "max_iters": 1000, "batch_size": 32},
               "builds_on": None},
}

FAMILY = Family("bigram", BigramConfig, Bigram, PRESETS, "a V×V table of next-token logits (makemore part 1)")
