"""GPT: a decoder-only transformer in the style of nanoGPT's ``model.py``.

Token and learned position embeddings -> ``n_layer`` pre-LayerNorm blocks (causal self-attention,
then a GELU MLP, each added to the residual stream) -> final LayerNorm -> a head tied to the token
embedding. Module names follow nanoGPT (and so GPT-2), which makes weights easy to map onto
``transformers.GPT2LMHeadModel``.

Three switches turn the same code into the rungs of the "GPT from scratch" ladder:
``n_head`` (one head or many), ``feed_forward`` and ``layer_norm``. Two attention options come from
the seed projects:

- ``time_weighting`` (MyGPT): each head learns a positive weight for every distance ``i - j``; the
  attention matrix is multiplied by it and each row renormalised so it stays a distribution.
  Multiplying ``softmax(s)`` by ``w`` and renormalising equals ``softmax(s + log w)``, so the weight
  is stored as its logarithm and the fast path hands it to ``scaled_dot_product_attention`` as an
  additive mask.
- ``attn_rank`` (BabyGPT's low-rank attention): queries, keys and values are projected to ``r``
  dimensions per head instead of ``n_embd / n_head``, and the output projection maps back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import BaseConfig, Family, LanguageModel, check_choice, check_fraction, check_int
from .kv_cache import KVCache, LayerCache, causal_mask, sdpa_causality
from .linear import Linear


@dataclass
class GPTConfig(BaseConfig):
    n_layer: int = field(default=4, metadata={"help": "number of transformer blocks"})
    n_head: int = field(default=4, metadata={"help": "attention heads per block"})
    n_embd: int = field(default=128, metadata={"help": "width of the residual stream"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability (0 for small data on CPU)"})
    bias: bool = field(default=True, metadata={"help": "biases in Linear and LayerNorm, as GPT-2"})
    feed_forward: bool = field(default=True, metadata={"help": "an MLP after attention in each block"})
    layer_norm: bool = field(default=True, metadata={"help": "pre-LayerNorm in each block and before the head"})
    activation: str = field(default="gelu", metadata={"help": "MLP activation: gelu (exact) or gelu_tanh"})
    tie_weights: bool = field(default=True, metadata={"help": "share the token embedding with the output head"})
    time_weighting: bool = field(default=False, metadata={"help": "learned per-head weight for each distance (MyGPT)"})
    attn_rank: int = field(default=0, metadata={"help": "low-rank attention: q/k/v size per head (0 = n_embd/n_head)"})

    def validate(self) -> None:
        super().validate()
        for name in ("n_layer", "n_head", "n_embd"):
            check_int(self, name, minimum=1)
        check_int(self, "attn_rank", minimum=0)
        check_fraction(self, "dropout")
        check_choice(self, "activation", ("gelu", "gelu_tanh"))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.attn_rank > self.n_embd // self.n_head:
            raise ValueError(
                f"attn_rank ({self.attn_rank}) must not exceed the head size n_embd/n_head "
                f"({self.n_embd // self.n_head})"
            )

    @property
    def head_dim(self) -> int:
        return self.attn_rank or self.n_embd // self.n_head


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        inner = config.n_head * config.head_dim
        self.c_attn = Linear(config.n_embd, 3 * inner, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = Linear(inner, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.time_weighting:
            # log(1) = 0: at initialisation the weights change nothing.
            self.log_time_weight = nn.Parameter(torch.zeros(config.n_head, config.block_size))
        else:
            self.log_time_weight = None

    def score_bias(self, start: int, T: int, S: int, device: torch.device) -> torch.Tensor:
        """Additive (n_head, T, S) mask: -inf on future keys, the log time weight of the distance elsewhere."""
        allowed = causal_mask(start, T, S, device)
        distance = (torch.arange(start, start + T, device=device)[:, None] - torch.arange(S, device=device)[None, :])
        bias = self.log_time_weight[:, distance.clamp(min=0)]
        return bias.masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor, return_attention: bool = False, cache: LayerCache | None = None):
        B, T, _ = x.shape
        # (B, T, 3 * n_head * head_dim) -> q, k, v, each (B, n_head, T, head_dim)
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        start = 0
        if cache is not None:  # the new positions follow the cached ones; attend over all of them
            start = cache.start
            k, v = cache.store(k, v)
        S = k.size(2)
        bias = self.score_bias(start, T, S, x.device) if self.log_time_weight is not None else None
        dropout = self.dropout if self.training else 0.0
        attention = None
        if return_attention:
            # The slow path spells out what the fused kernel computes, and keeps the weights.
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if bias is None:
                scores = scores.masked_fill(~causal_mask(start, T, S, x.device), float("-inf"))
            else:
                scores = scores + bias
            attention = F.softmax(scores, dim=-1)
            y = F.dropout(attention, dropout, self.training) @ v
        elif bias is None:
            mask, is_causal = sdpa_causality(start, T, S, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.resid_dropout(self.c_proj(y)), attention


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


def layer_norm(config: GPTConfig) -> nn.Module:
    return nn.LayerNorm(config.n_embd, bias=config.bias) if config.layer_norm else nn.Identity()


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = layer_norm(config)
        self.attn = CausalSelfAttention(config)
        if config.feed_forward:
            self.ln_2 = layer_norm(config)
            self.mlp = MLP(config)
        else:
            self.mlp = None

    def forward(self, x: torch.Tensor, return_attention: bool = False, cache: LayerCache | None = None):
        attended, attention = self.attn(self.ln_1(x), return_attention, cache)
        x = x + attended
        if self.mlp is not None:
            x = x + self.mlp(self.ln_2(x))
        return x, attention


class GPT(LanguageModel):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=layer_norm(config),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections into the residual stream by 1/sqrt(2 * n_layer) so its
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int = 1) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.config.n_layer, self.config.n_head, self.config.head_dim, self.config.block_size,
                       batch_size, weight.device, weight.dtype)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_attention: bool = False,
                cache: KVCache | None = None):
        start = cache.length if cache is not None else 0
        self.check_input(idx, start)
        pos = torch.arange(start, start + idx.size(1), device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        attentions = []
        for i, block in enumerate(self.transformer.h):
            x, attention = block(x, return_attention, cache.layer(i) if cache is not None else None)
            attentions.append(attention)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = self.loss(logits, targets)
        if return_attention:
            return logits, loss, torch.stack(attentions, dim=1)  # (B, n_layer, n_head, T, start + T)
        return logits, loss


# The ladder of "Let's build GPT": each rung adds one thing at the same width and context, so
# their losses compare. The last rung is nanoGPT's CPU recipe for Shakespeare (val 1.88 there).
# The attention-only rungs have their own output head, as in the video: with no MLP or norm in
# between, a head tied to the embedding scores token pairs symmetrically (e_i . e_j) and cannot
# even learn a bigram table (val 2.66 tied against the bigram's 2.52).
_LADDER = {"n_embd": 128, "block_size": 64, "dropout": 0.0}
_ATTENTION_ONLY = {"n_layer": 1, "feed_forward": False, "layer_norm": False, "tie_weights": False}
_CPU_TRAINING = {"batch_size": 12, "learning_rate": 1e-3, "max_iters": 2000, "warmup_iters": 100}

PRESETS = {
    "gpt-single-head": {"model": {**_LADDER, **_ATTENTION_ONLY, "n_head": 1}, "train": _CPU_TRAINING},
    "gpt-multi-head": {"model": {**_LADDER, **_ATTENTION_ONLY, "n_head": 4}, "train": _CPU_TRAINING},
    "gpt-block": {"model": {**_LADDER, "n_layer": 1, "n_head": 4}, "train": _CPU_TRAINING},
    "gpt": {"model": {**_LADDER, "n_layer": 4, "n_head": 4}, "train": _CPU_TRAINING},
    "gpt-time-weighted": {
        "model": {**_LADDER, "n_layer": 4, "n_head": 4, "time_weighting": True},
        "train": _CPU_TRAINING,
    },
    "gpt-low-rank": {"model": {**_LADDER, "n_layer": 4, "n_head": 4, "attn_rank": 8}, "train": _CPU_TRAINING},
    # nanoGPT's shakespeare_char GPU recipe: ~10.7M parameters, minutes on a GPU, hours on a CPU.
    "gpt-shakespeare-char": {
        "model": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.2},
        "train": {"batch_size": 64, "learning_rate": 1e-3, "max_iters": 5000, "warmup_iters": 100},
    },
}

FAMILY = Family("gpt", GPTConfig, GPT, PRESETS)
