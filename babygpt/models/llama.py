"""LLaMA-style decoder, as in lit-llama / litgpt and ``transformers.LlamaForCausalLM``.

What differs from GPT:

- RMSNorm instead of LayerNorm: divide by the root mean square, no mean subtraction, no bias.
- Rotary position embeddings (RoPE) instead of learned positions: queries and keys are rotated by
  an angle proportional to their position, so their dot product depends on the distance.
- A SwiGLU MLP: ``down(silu(gate(x)) * up(x))``.
- No biases anywhere.
- Grouped-query attention: ``n_kv_head`` key/value heads are shared by ``n_head`` query heads,
  which shrinks the KV cache by ``n_head / n_kv_head``.

Module names follow ``transformers`` (``self_attn.q_proj``, ``mlp.gate_proj``, ``input_layernorm``…).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import BaseConfig, Family, LanguageModel, check_fraction, check_int
from .kv_cache import KVCache, LayerCache, causal_mask, sdpa_causality
from .linear import Linear


@dataclass
class LlamaConfig(BaseConfig):
    n_layer: int = field(default=4, metadata={"help": "number of transformer blocks"})
    n_head: int = field(default=4, metadata={"help": "query heads per block"})
    n_kv_head: int = field(default=2, metadata={"help": "key/value heads (grouped-query attention; = n_head for MHA)"})
    n_embd: int = field(default=128, metadata={"help": "width of the residual stream"})
    mlp_hidden: int = field(default=0, metadata={"help": "SwiGLU hidden width (0 = 8/3 n_embd rounded up to 32)"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base: the slowest rotation's wavelength"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of RMSNorm"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability"})
    tie_weights: bool = field(default=False, metadata={"help": "share the token embedding with the output head"})

    def validate(self) -> None:
        super().validate()
        for name in ("n_layer", "n_head", "n_kv_head", "n_embd"):
            check_int(self, name, minimum=1)
        check_int(self, "mlp_hidden", minimum=0)
        check_fraction(self, "dropout")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.n_kv_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE needs an even head size; n_embd/n_head is {self.n_embd // self.n_head}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 1):
            raise ValueError(f"rope_theta must be a number above 1, got {self.rope_theta!r}")
        if not (isinstance(self.norm_eps, (int, float)) and self.norm_eps > 0):
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_size(self) -> int:
        return self.mlp_hidden or 32 * math.ceil(8 * self.n_embd / 3 / 32)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 even under bf16 autocast: the mean of squares loses precision fast.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_cos_sin(config: LlamaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle for every (position, dimension), each (block_size, head_dim).

    Dimension pair (i, i + head_dim/2) rotates at frequency theta^(-2i/head_dim): the first pairs
    turn fast and see nearby positions, the last turn slowly and see far ones.
    """
    d = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    angles = torch.outer(torch.arange(config.block_size).float(), inv_freq)  # (T, d/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, d): the same angle for both halves of a pair
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + d/2]) of the last dimension by its angle."""
    first, second = x.chunk(2, dim=-1)
    rotated_by_90 = torch.cat((-second, first), dim=-1)
    return x * cos + rotated_by_90 * sin


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, return_attention: bool = False,
                cache: LayerCache | None = None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = 0
        if cache is not None:  # keys are cached already rotated to their positions
            start = cache.start
            k, v = cache.store(k, v)
        S = k.size(2)
        dropout = self.dropout if self.training else 0.0
        attention = None
        if return_attention:
            # Each group of n_head / n_kv_head query heads reads the same key/value head.
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            causal = causal_mask(start, T, S, x.device)
            attention = F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
            y = F.dropout(attention, dropout, self.training) @ v
        else:
            mask, is_causal = sdpa_causality(start, T, S, x.device)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal,
                enable_gqa=self.n_kv_head != self.n_head,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.o_proj(y), attention


class SwiGLU(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.gate_proj = Linear(config.n_embd, config.hidden_size, bias=False)
        self.up_proj = Linear(config.n_embd, config.hidden_size, bias=False)
        self.down_proj = Linear(config.hidden_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, return_attention: bool = False, cache: LayerCache | None = None):
        attended, attention = self.self_attn(self.input_layernorm(x), cos, sin, return_attention, cache)
        x = x + attended
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, attention


class Llama(LanguageModel):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.embed_tokens.weight = self.lm_head.weight
        cos, sin = rope_cos_sin(config)
        # Not persistent: derived from the config, so never stored in a checkpoint.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def new_cache(self, batch_size: int = 1) -> KVCache:
        weight = self.lm_head.weight
        # Grouped-query attention caches n_kv_head heads, not n_head: the point of GQA.
        return KVCache(self.config.n_layer, self.config.n_kv_head, self.config.head_dim, self.config.block_size,
                       batch_size, weight.device, weight.dtype)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_attention: bool = False,
                cache: KVCache | None = None):
        start = cache.length if cache is not None else 0
        self.check_input(idx, start)
        end = start + idx.size(1)
        cos, sin = self.rope_cos[start:end], self.rope_sin[start:end]
        x = self.drop(self.embed_tokens(idx))
        attentions = []
        for i, block in enumerate(self.layers):
            x, attention = block(x, cos, sin, return_attention, cache.layer(i) if cache is not None else None)
            attentions.append(attention)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.lm_head(self.norm(x))
        loss = self.loss(logits, targets)
        if return_attention:
            return logits, loss, torch.stack(attentions, dim=1)  # (B, n_layer, n_head, T, start + T)
        return logits, loss


PRESETS = {
    # The same size and training as the "gpt" preset, so the two architectures compare.
    "llama": {
        "model": {"n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 64},
        "train": {"batch_size": 12, "learning_rate": 1e-3, "max_iters": 2000, "warmup_iters": 100},
    },
    # The CPU speedrun (bench/speedrun.py): the llama block for 3,800 steps, which end within
    # nanoGPT's CPU-recipe budget on 2 cores (about 130 s); val 1.62 on Tiny Shakespeare where that
    # recipe gets 1.89. Twice the learning rate bought nothing (1.63).
    "speedrun-cpu": {
        "model": {"n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 64},
        "train": {"batch_size": 12, "learning_rate": 1e-3, "max_iters": 3800, "warmup_iters": 100},
    },
}

FAMILY = Family("llama", LlamaConfig, Llama, PRESETS)
