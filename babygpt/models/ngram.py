"""N-gram MLP language model (Bengio et al. 2003; Karpathy, "makemore" part 2).

The previous ``n - 1`` tokens are embedded, concatenated and passed through one tanh hidden
layer to predict the next token. Positions earlier than ``n - 1`` see a padding token, so the
model returns a prediction at every position like the other families do.

Hook points: ``embed`` (B, T, (n-1) * n_embd: the context's embeddings side by side),
``hidden.pre`` and ``hidden.post`` (B, T, n_hidden: before and after tanh) and ``logits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    BaseConfig,
    Family,
    HookPoint,
    LanguageModel,
    SavedActivations,
    check_fraction,
    check_int,
    head_and_loss_bytes,
)
from .stages import Figure, InsideView, Stage, logits_card, norm, per_cent, shown


@dataclass
class NGramConfig(BaseConfig):
    n: int = field(default=4, metadata={"help": "n-gram order: the model sees the previous n-1 tokens"})
    n_embd: int = field(default=24, metadata={"help": "embedding width per context token"})
    n_hidden: int = field(default=256, metadata={"help": "width of the tanh hidden layer"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the hidden layer"})

    form_fields = ("block_size", "dropout")

    def validate(self) -> None:
        super().validate()
        check_int(self, "n", minimum=2)
        check_int(self, "n_embd", minimum=1)
        check_int(self, "n_hidden", minimum=1)
        check_fraction(self, "dropout")

    def in_words(self) -> str:
        return (f"the last {self.n - 1} tokens, each embedded in {self.n_embd} numbers, joined and passed through "
                f"one hidden layer of {self.n_hidden}")


class NGram(LanguageModel):
    def __init__(self, config: NGramConfig):
        super().__init__()
        self.config = config
        context = config.n - 1
        # One extra embedding row is the padding token for positions before the text starts.
        self.embedding = nn.Embedding(config.vocab_size + 1, config.n_embd)
        self.hidden = nn.Linear(context * config.n_embd, config.n_hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.n_hidden, config.vocab_size)
        self.hook_embed, self.hook_logits = HookPoint("embed"), HookPoint("logits")
        self.hook_pre, self.hook_post = HookPoint("hidden.pre"), HookPoint("hidden.post")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None,
                last_position_only: bool = False):
        self.check_input(idx)
        context = self.config.n - 1
        padded = F.pad(idx, (context, 0), value=self.config.vocab_size)
        # windows[b, t] holds the n-1 tokens before position t+1, i.e. up to and including t.
        windows = padded.unfold(dimension=1, size=context, step=1)[:, 1:]  # (B, T, n-1)
        if last_position_only:
            windows = windows[:, -1:]  # (B, 1, n-1)
        x = self.hook_embed(self.embedding(windows).flatten(start_dim=2))  # (B, T, (n-1) * n_embd)
        x = self.dropout(self.hook_post(torch.tanh(self.hook_pre(self.hidden(x)))))
        logits = self.hook_logits(self.head(x))
        return logits, self.loss(logits, targets)

    # --- inside, stage by stage ----------------------------------------------------------------

    def window(self, view: InsideView) -> list[str]:
        """The n-1 tokens the prediction at the chosen position reads, oldest first ('·' before the text)."""
        context, p = self.config.n - 1, view.position
        return ["·" if p - j < 0 else shown(view.tokens[p - j]) for j in range(context - 1, -1, -1)]

    def inside_stages(self, view: InsideView) -> list[Stage]:
        c = self.config
        context = c.n - 1
        window = self.window(view)
        embedded = view.at("embed").view(context, c.n_embd)
        padded = sum(w == "·" for w in window)
        stages = [Stage("embedding", f"The last {context} tokens, embedded side by side", [
            f"A {c.n}-gram model reads only the {context} tokens up to {shown(view.token)}: "
            f"{' '.join(window)}. Each is looked up in the {c.vocab_size} × {c.n_embd} embedding table and the "
            f"{context} rows are laid side by side, {context * c.n_embd} numbers in all (norm "
            f"{norm(embedded):.2f}).",
            *([f"{padded} of them {'comes' if padded == 1 else 'come'} before the text starts: a padding row "
               "stands in."] if padded else []),
        ], [Figure("heatmap", "the window's embeddings (row: token)", embedded, y=window)])]
        pre, post = view.at("hidden.pre"), view.at("hidden.post")
        stages.append(Stage("hidden", "The hidden layer (tanh)", [
            f"One matrix maps the {context * c.n_embd} numbers to {c.n_hidden}; tanh squashes each into (−1, 1). "
            f"At {shown(view.token)}, {per_cent(float((post.abs() > 0.97).float().mean()))} of the units are "
            f"saturated (|tanh| above 0.97) and the layer's output has norm {norm(post):.2f}.",
        ], [Figure("vector", "before tanh", pre), Figure("vector", "after tanh", post)]))
        stages.append(logits_card(view, None))
        return stages

    @torch.no_grad()
    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pre = self.hidden(kept["embed"])
        post = torch.tanh(pre)
        return {"hidden.pre": pre, "hidden.post": post, "logits": self.head(post)}

    def parameter_groups(self):
        return {"token embedding": [self.embedding.weight], "hidden layer": list(self.hidden.parameters()),
                "output head": list(self.head.parameters())}

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        config, c = self.config, bytes_per_value
        context, hidden = config.n - 1, config.n_hidden
        # window ids, the hidden layer's input, and with dropout its mask and output (the tanh
        # output is the head's input, counted with the head)
        outside = context * 8 + context * config.n_embd * c + (2 * hidden * c if config.dropout > 0 else 0)
        return SavedActivations({}, 0, outside + head_and_loss_bytes(hidden, config.vocab_size, c))

    def to_transformers(self):
        raise ValueError("transformers has no ngram model: an MLP over a fixed window of embeddings is no "
                         "transformers architecture (gpt and llama export)")


PRESETS = {
    "ngram": {"model": {"n": 4, "block_size": 32}, "train": {"learning_rate": 3e-3, "max_iters": 2000,
                                                             "batch_size": 32}, "builds_on": "bigram"},
}

FAMILY = Family("ngram", NGramConfig, NGram, PRESETS, "MLP over the previous n−1 token embeddings (Bengio et al. 2003)")
