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

Hook points (``run_with_cache``), as gpt's but for positions and the MLP: ``embed``; per block i
``blocks.{i}.resid_pre``, ``norm1``, ``attn.q`` (B, n_head, T, hs) and ``attn.k`` / ``attn.v``
(B, n_kv_head, T, hs) before RoPE, ``attn.q_rot`` / ``attn.k_rot`` after it, ``attn.scores``,
``attn.pattern`` (B, n_head, T, T), ``attn.z``, ``attn_out``, ``resid_mid``, ``norm2``, ``mlp.pre``
(the gate before SiLU), ``mlp.up``, ``mlp.post`` (silu(gate) * up), ``mlp_out``, ``resid_post``;
then ``final_norm`` and ``logits``.
"""

from __future__ import annotations

import math
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
from .causal_attention import KVCache, LayerCache, attend, attention_flops, saved_by_attention
from .stages import (
    Figure,
    InsideView,
    Stage,
    attention_cards,
    embedding_card,
    logits_card,
    masked_scores,
    mlp_card,
    norm,
    norm_card,
    residual_card,
    stream_card,
)


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

    form_fields = ("n_layer", "n_head", "n_embd", "block_size", "dropout")

    @classmethod
    def from_form(cls, preset: dict, form: dict) -> dict:
        settings = super().from_form(preset, form)
        if settings.get("n_head", 4) % settings.get("n_kv_head", cls.n_kv_head):
            settings["n_kv_head"] = settings["n_head"]  # the form has no n_kv_head: one per head then
        return settings

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

    def in_words(self) -> str:
        sharing = (f", {self.n_head // self.n_kv_head} query heads sharing each key/value head"
                   if self.n_kv_head < self.n_head else "")
        return (f"the last {self.block_size} tokens through {self.n_layer} blocks of {self.n_head} attention heads"
                f"{sharing}, positions as rotations (RoPE), RMSNorm and a gated SwiGLU MLP")


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


def rms_norm_spelled(x: torch.Tensor, module: RMSNorm) -> torch.Tensor:
    """RMSNorm written out: x / sqrt(mean(x²) + eps) * weight."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + module.eps) * module.weight


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
    def __init__(self, config: LlamaConfig, index: int):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        self.dropout = config.dropout
        hook = lambda name: HookPoint(f"blocks.{index}.attn.{name}")  # noqa: E731
        self.hook_q, self.hook_k, self.hook_v = hook("q"), hook("k"), hook("v")
        self.hook_q_rot, self.hook_k_rot = hook("q_rot"), hook("k_rot")
        self.hook_scores, self.hook_pattern, self.hook_z = hook("scores"), hook("pattern"), hook("z")

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerCache | None = None,
                last_query_only: bool = False):
        B, T, _ = x.shape
        q = self.hook_q(self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2))  # (B, nh, T, hs)
        k = self.hook_k(self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2))  # (B, n_kv, T, hs)
        v = self.hook_v(self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2))
        q, k = self.hook_q_rot(apply_rope(q, cos, sin)), self.hook_k_rot(apply_rope(k, cos, sin))
        start = 0
        if cache is not None:  # keys are cached already rotated to their positions
            start = cache.start
            k, v = cache.store(k, v)
        if last_query_only:  # every key and value is still needed (and cached), but one query
            q, start, T = q[:, :, -1:], start + T - 1, 1  # (B, nh, 1, hs), at the last position
        y = attend(q, k, v, start, self.hook_scores, self.hook_pattern, dropout=self.dropout if self.training else 0.0)
        y = self.hook_z(y).transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.o_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, config: LlamaConfig, index: int):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.hidden_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.hidden_size, bias=False)
        self.down_proj = nn.Linear(config.hidden_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        hook = lambda name: HookPoint(f"blocks.{index}.mlp.{name}")  # noqa: E731
        self.hook_pre, self.hook_up, self.hook_post = hook("pre"), hook("up"), hook("post")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = F.silu(self.hook_pre(self.gate_proj(x))) * self.hook_up(self.up_proj(x))  # (B, T, hidden)
        return self.dropout(self.down_proj(self.hook_post(gated)))


class Block(nn.Module):
    def __init__(self, config: LlamaConfig, index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = Attention(config, index)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config, index)
        hook = lambda name: HookPoint(f"blocks.{index}.{name}")  # noqa: E731
        self.hook_resid_pre, self.hook_norm1, self.hook_attn_out = hook("resid_pre"), hook("norm1"), hook("attn_out")
        self.hook_resid_mid, self.hook_norm2, self.hook_mlp_out = hook("resid_mid"), hook("norm2"), hook("mlp_out")
        self.hook_resid_post = hook("resid_post")

    def forward(self, x, cos, sin, cache: LayerCache | None = None, last_position_only: bool = False):
        """``last_position_only``: the block's output at the last position only, (B, 1, C)."""
        x = self.hook_resid_pre(x)
        attended = self.self_attn(self.hook_norm1(self.input_layernorm(x)), cos, sin, cache,
                                  last_query_only=last_position_only)
        if last_position_only:
            x = x[:, -1:]
        x = self.hook_resid_mid(x + self.hook_attn_out(attended))
        x = x + self.hook_mlp_out(self.mlp(self.hook_norm2(self.post_attention_layernorm(x))))
        return self.hook_resid_post(x)


class Llama(LanguageModel):
    has_attention = True
    lora_targets = ("q", "k", "v", "o", "mlp", "head")
    transformers_model_types = ("llama",)

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.embed_tokens.weight = self.lm_head.weight
        self.hook_embed, self.hook_final_norm = HookPoint("embed"), HookPoint("final_norm")
        self.hook_logits = HookPoint("logits")
        cos, sin = rope_cos_sin(config)
        # Not persistent: derived from the config, so never stored in a checkpoint.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                into_residual = name.endswith(("o_proj.weight", "down_proj.weight"))
                std = 0.02 / math.sqrt(2 * config.n_layer) if into_residual else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                last_position_only: bool = False):
        start = cache.length if cache is not None else 0
        self.check_input(idx, start)
        end = start + idx.size(1)
        cos, sin = self.rope_cos[start:end], self.rope_sin[start:end]
        x = self.drop(self.hook_embed(self.embed_tokens(idx)))  # (B, T, C): positions enter in attention
        last = len(self.layers) - 1
        for i, block in enumerate(self.layers):
            x = block(x, cos, sin, cache.layer(i) if cache is not None else None, last_position_only and i == last)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.unembed(x)
        return logits, self.loss(logits, targets)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        return self.hook_logits(self.lm_head(self.hook_final_norm(self.norm(residual))))

    def new_cache(self, batch_size: int = 1) -> KVCache:
        weight = self.lm_head.weight
        # Grouped-query attention caches n_kv_head heads, not n_head: the point of GQA.
        return KVCache(self.config.n_layer, self.config.n_kv_head, self.config.head_dim, self.config.block_size,
                       batch_size, weight.device, weight.dtype)

    # --- inside, stage by stage ----------------------------------------------------------------

    def inside_choices(self) -> tuple[int, int]:
        return self.config.n_layer, self.config.n_head

    def inside_stages(self, view: InsideView) -> list[Stage]:
        c, i = self.config, view.layer
        b = f"blocks.{i}"
        group = c.n_head // c.n_kv_head
        stages = [embedding_card(view, c.vocab_size, c.n_embd, positions_note=(
            "There is no position table: positions enter inside attention, as rotations of the queries and keys "
            "(RoPE, shown there)."))]
        stages.append(norm_card(view, f"{b}.resid_pre", f"{b}.norm1", "RMSNorm", f"Block {i}: the first norm",
                                f"{b} norm1"))
        stages.append(self._rope_card(view))
        shared = [h for h in range(c.n_head) if h // group == view.head // group]
        gqa = (f"Grouped-query attention (n_kv_head {c.n_kv_head}): the {c.n_head} query heads share "
               f"{c.n_kv_head} key/value heads, {group} each; heads {', '.join(map(str, shared))} read key/value head "
               f"{view.head // group}." if group > 1 else
               f"Each of the {c.n_head} query heads has its own key/value head (n_kv_head = n_head).")
        stages += attention_cards(view, f"{b}.attn", c.n_head, c.head_dim, kv_group=group, extra=[gqa])
        stages.append(residual_card(view, f"{b}.resid_pre", f"{b}.attn_out", f"{b}.resid_mid", "attention",
                                    f"{b} attention residual", c.n_head, c.n_embd))
        stages.append(norm_card(view, f"{b}.resid_mid", f"{b}.norm2", "RMSNorm", f"Block {i}: the second norm",
                                f"{b} norm2"))
        gate, up = view.at(f"{b}.mlp.pre"), view.at(f"{b}.mlp.up")
        stages.append(mlp_card(view, b, c.n_embd, c.hidden_size, "as SwiGLU does: a gate, passed through SiLU, "
                               "multiplies an up projection number by number", gate > 0, f"{b} mlp",
                               f"Block {i}: the SwiGLU MLP",
                               [Figure("vector", "gate (before SiLU)", gate), Figure("vector", "up", up),
                                Figure("vector", "SiLU(gate) × up", view.at(f"{b}.mlp.post"))]))
        stages.append(residual_card(view, f"{b}.resid_mid", f"{b}.mlp_out", f"{b}.resid_post", "MLP",
                                    f"{b} mlp residual"))
        steps = [("embeddings", "blocks.0.resid_pre")]
        for k in range(c.n_layer):
            steps += [(f"block {k} attention", f"blocks.{k}.resid_mid"), (f"block {k} MLP", f"blocks.{k}.resid_post")]
        stages.append(stream_card(view, steps))
        stages.append(logits_card(view, "final_norm"))
        return stages

    def _rope_card(self, view: InsideView) -> Stage:
        c, h, p = self.config, view.head, view.position
        a = f"blocks.{view.layer}.attn"
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim))
        angles = p * inv_freq  # (head_dim / 2,): one angle per pair of dimensions
        q, q_rot = view.row(f"{a}.q")[h, p], view.row(f"{a}.q_rot")[h, p]
        return Stage(f"{a} rope", f"Rotary positions: q and k turned by the position (head {h})", [
            f"RoPE (rope_theta {c.rope_theta:g}) turns each of the {c.head_dim // 2} pairs of dimensions of every "
            f"query and key by an angle proportional to the token's position. At position {p} the first pair turns by "
            f"{float(angles[0]):.2f} rad, the last by {float(angles[-1]):.4f} rad.",
            f"A rotation keeps a vector's length (the query of head {h}: {norm(q):.2f} before, {norm(q_rot):.2f} "
            "after), and the dot product of two rotated vectors depends on how far apart their tokens are, not "
            "where they are.",
        ], [Figure("bars", f"angle of each pair at position {p} (rad)", angles,
                   x=[str(j) for j in range(c.head_dim // 2)]),
            Figure("vector", "query before RoPE", q), Figure("vector", "query after RoPE", q_rot)])

    @torch.no_grad()
    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        group = c.n_head // c.n_kv_head
        out = {}
        x = kept["embed"]  # (1, T, C)
        T = x.size(1)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for i, block in enumerate(self.layers):
            b, attn = f"blocks.{i}", block.self_attn
            out[f"{b}.resid_pre"] = x
            normed = out[f"{b}.norm1"] = rms_norm_spelled(x, block.input_layernorm)
            q = out[f"{b}.attn.q"] = attn.q_proj(normed).view(1, T, c.n_head, c.head_dim).transpose(1, 2)
            k = out[f"{b}.attn.k"] = attn.k_proj(normed).view(1, T, c.n_kv_head, c.head_dim).transpose(1, 2)
            v = out[f"{b}.attn.v"] = attn.v_proj(normed).view(1, T, c.n_kv_head, c.head_dim).transpose(1, 2)
            q, k = out[f"{b}.attn.q_rot"], out[f"{b}.attn.k_rot"] = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            # every query head reads its group's key/value head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            scores = out[f"{b}.attn.scores"] = masked_scores(q, k)
            pattern = out[f"{b}.attn.pattern"] = torch.softmax(scores, dim=-1)
            z = out[f"{b}.attn.z"] = pattern @ v
            attended = out[f"{b}.attn_out"] = attn.o_proj(z.transpose(1, 2).reshape(1, T, -1))
            x = out[f"{b}.resid_mid"] = x + attended
            normed = out[f"{b}.norm2"] = rms_norm_spelled(x, block.post_attention_layernorm)
            gate, up = out[f"{b}.mlp.pre"], out[f"{b}.mlp.up"] = block.mlp.gate_proj(normed), block.mlp.up_proj(normed)
            gated = out[f"{b}.mlp.post"] = gate * torch.sigmoid(gate) * up  # SiLU(gate) = gate * sigmoid(gate)
            added = out[f"{b}.mlp_out"] = block.mlp.down_proj(gated)
            x = out[f"{b}.resid_post"] = x + added
        out["final_norm"] = rms_norm_spelled(x, self.norm)
        out["logits"] = self.lm_head(out["final_norm"])
        return out

    # --- counting -------------------------------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"token embedding": [self.embed_tokens.weight]}
        for i, block in enumerate(self.layers):
            groups[f"block {i} attention"] = list(block.self_attn.parameters())
            groups[f"block {i} MLP"] = list(block.mlp.parameters())
            groups[f"block {i} norms"] = [block.input_layernorm.weight, block.post_attention_layernorm.weight]
        groups["final norm"] = [self.norm.weight]
        groups["output head"] = list(self.lm_head.parameters())
        return groups

    def attention_flops(self, context: int) -> int:
        return attention_flops(self.config.n_layer, context, self.config.n_head * self.config.head_dim)

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        config, c, f = self.config, bytes_per_value, 4
        C, width, drop = config.n_embd, config.n_head * config.head_dim, config.dropout > 0
        rows: dict[str, float] = {
            # RMSNorm keeps its input, 1/rms and the normalised x (all fp32)
            "norm inputs (residual stream, fp32)": 2 * C * f,
            "norm statistics and normalised x": 2 * (f + C * f),
            # q, k, v read the first norm's output; gate and up the second's (own bf16 copies under autocast)
            "matmul inputs (norm outputs)": (3 + 2 if c < 4 else 2) * C * c,
        }
        rows.update(saved_by_attention(config.n_head, width, 2 * config.n_kv_head * config.head_dim,
                                       config.block_size, c, fused=not drop, dropout=drop))
        rows["MLP hidden (gate, SiLU, up, product)"] = 4 * config.hidden_size * c
        if drop:
            rows["dropout masks"] = C * c
        outside = 8 + (C * c if drop else 0) + C * f + f + C * f  # ids, embedding dropout, final norm
        return SavedActivations(rows, config.n_layer, outside + head_and_loss_bytes(C, config.vocab_size, c))

    # --- LoRA and transformers ------------------------------------------------------------------

    def lora_sites(self, targets):
        for block in self.layers:
            for name in "qkvo":
                if name in targets:
                    yield block.self_attn, f"{name}_proj", None, False
            if "mlp" in targets:
                for name in ("gate_proj", "up_proj", "down_proj"):
                    yield block.mlp, name, None, False
        if "head" in targets:
            yield self, "lm_head", None, self.config.tie_weights

    def to_transformers(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Llama (``LlamaForCausalLM``): the names are transformers' already, under ``model.``; the
        RoPE convention (rotate-half) is the same."""
        c = self.config
        config = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
            "hidden_size": c.n_embd, "intermediate_size": c.hidden_size, "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head, "head_dim": c.head_dim,
            "max_position_embeddings": c.block_size, "rms_norm_eps": c.norm_eps, "hidden_act": "silu",
            "rope_parameters": {"rope_type": "default", "rope_theta": float(c.rope_theta)},
            "tie_word_embeddings": c.tie_weights, "attention_bias": False, "mlp_bias": False, "bos_token_id": None,
            "eos_token_id": None, "torch_dtype": "float32",
        }
        state = {}
        for name, value in self.state_dict().items():
            if c.tie_weights and name == "lm_head.weight":
                continue
            state[self.transformers_module_name(name)] = value
        return config, state

    def transformers_module_name(self, name: str) -> str:
        return name if name.startswith("lm_head") else f"model.{name}"

    @classmethod
    def config_from_transformers(cls, hf: dict) -> dict:
        """Llama's config.json as llama's settings; what Llama allows and llama does not is refused."""
        heads = hf["num_attention_heads"]
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        refused = [reason for reason, bad in (
            (f"the activation {hf.get('hidden_act')!r} (llama's MLP is SwiGLU, silu)",
             hf.get("hidden_act", "silu") != "silu"),
            ("biases in attention (attention_bias)", hf.get("attention_bias", False)),
            ("biases in the MLP (mlp_bias)", hf.get("mlp_bias", False)),
            (f"scaled RoPE ({rope_type!r}; llama rotates by plain RoPE)", rope_type != "default"),
            (f"a head size of {hf.get('head_dim')} (llama's is hidden_size / heads)",
             hf.get("head_dim") not in (None, hf["hidden_size"] // heads)),
            ("a sliding attention window", hf.get("sliding_window")),
        ) if bad]
        if refused:
            raise ValueError(f"llama cannot express this Llama's {', '.join(refused)}")
        return {"vocab_size": hf["vocab_size"], "block_size": hf.get("max_position_embeddings", 2048),
                "n_embd": hf["hidden_size"], "n_layer": hf["num_hidden_layers"], "n_head": heads,
                "n_kv_head": hf.get("num_key_value_heads") or heads, "mlp_hidden": hf["intermediate_size"],
                "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
                "norm_eps": hf.get("rms_norm_eps", 1e-6), "dropout": 0.0,
                "tie_weights": hf.get("tie_word_embeddings", False)}

    def state_from_transformers(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Llama's weights under llama's names: the same names without the ``model.`` prefix."""
        state = {name.removeprefix("model."): value for name, value in tensors.items()
                 if not name.endswith("rotary_emb.inv_freq")}
        if self.config.tie_weights:
            state["lm_head.weight"] = state["embed_tokens.weight"]
        return state


PRESETS = {
    # The same size and training as the "gpt" preset, so the two architectures compare.
    "llama": {
        "model": {"n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 64},
        "train": {"batch_size": 12, "learning_rate": 1e-3, "max_iters": 2000, "warmup_iters": 100},
        "builds_on": "gpt",
    },
    # The CPU speedrun (bench/speedrun.py, 130 s of wall clock on 2 cores): the llama block with
    # Muon for its hidden matrices, 2 blocks (at 130 s more updates beat more depth), a context of
    # 128, and a warmup-stable-decay schedule that follows the time budget, so it ends with the run
    # on any machine; max_iters only caps a machine fast enough to get there first
    # (bench/RESULTS.md has what each change bought).
    "speedrun-cpu": {
        "model": {"n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 128},
        "train": {"batch_size": 12, "learning_rate": 3e-3, "min_lr": 3e-5, "max_iters": 6000, "warmup_iters": 100,
                  "optimizer": "muon", "max_seconds": 130.0, "decay_by_clock": True, "stable_fraction": 0.4},
    },
}

FAMILY = Family("llama", LlamaConfig, Llama, PRESETS,
                "RMSNorm, rotary positions, SwiGLU, no biases, grouped-query attention")
