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

Hook points (``run_with_cache``), shapes for batch B, T tokens, width C, nh heads of hs:
``embed`` and ``pos_embed`` (B, T, C) and (T, C); per block i ``blocks.{i}.resid_pre``, ``norm1``,
``attn.q`` / ``attn.k`` / ``attn.v`` (B, nh, T, hs), ``attn.scores`` (q·k/√hs, -inf above the
diagonal), ``attn.weighted_scores`` (plus log w, time weighting only), ``attn.pattern`` (B, nh, T, T),
``attn.z`` (the weighted sum of v, B, nh, T, hs), ``attn_out``, ``resid_mid``, then with the MLP
``norm2``, ``mlp.pre`` (B, T, 4C), ``mlp.post`` (after GELU), ``mlp_out``, and ``resid_post``;
finally ``final_norm`` and ``logits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import (
    BaseConfig,
    Family,
    HookPoint,
    LanguageModel,
    SavedActivations,
    check_choice,
    check_fraction,
    check_int,
    head_and_loss_bytes,
)
from .causal_attention import KVCache, LayerCache, attend, attention_flops, causal_mask, saved_by_attention
from .stages import (
    Figure,
    InsideView,
    Stage,
    attention_cards,
    embedding_card,
    layer_norm_spelled,
    logits_card,
    masked_scores,
    mlp_card,
    norm_card,
    residual_card,
    shown,
    stream_card,
)


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

    form_fields = ("n_layer", "n_head", "n_embd", "block_size", "dropout")

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

    def in_words(self) -> str:
        heads = "1 attention head" if self.n_head == 1 else f"{self.n_head} attention heads"
        if not self.feed_forward and not self.layer_norm:
            words = f"the last {self.block_size} tokens through {heads}, and nothing else (no MLP, no norm)"
        else:
            blocks = "1 block" if self.n_layer == 1 else f"{self.n_layer} blocks"
            words = (f"the last {self.block_size} tokens through {blocks} of {heads}"
                     + (" and an MLP" if self.feed_forward else "") + ", with residual connections"
                     + (" and LayerNorm" if self.layer_norm else ""))
        if self.time_weighting:
            words += "; each head also learns a weight for every distance"
        if self.attn_rank:
            words += f"; queries, keys and values of only {self.attn_rank} numbers per head"
        return words


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, index: int):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        inner = config.n_head * config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * inner, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(inner, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.time_weighting:
            # log(1) = 0: at initialisation the weights change nothing.
            self.log_time_weight = nn.Parameter(torch.zeros(config.n_head, config.block_size))
        else:
            self.log_time_weight = None
        hook = lambda name: HookPoint(f"blocks.{index}.attn.{name}")  # noqa: E731
        self.hook_q, self.hook_k, self.hook_v = hook("q"), hook("k"), hook("v")
        self.hook_scores, self.hook_pattern, self.hook_z = hook("scores"), hook("pattern"), hook("z")
        self.hook_weighted_scores = hook("weighted_scores") if config.time_weighting else None

    def score_bias(self, start: int, T: int, S: int, device: torch.device) -> torch.Tensor:
        """Additive (n_head, T, S) mask: -inf on future keys, the log time weight of the distance elsewhere."""
        allowed = causal_mask(start, T, S, device)
        distance = (torch.arange(start, start + T, device=device)[:, None] - torch.arange(S, device=device)[None, :])
        bias = self.log_time_weight[:, distance.clamp(min=0)]
        return bias.masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None, last_query_only: bool = False) -> torch.Tensor:
        B, T, _ = x.shape
        # (B, T, 3 * n_head * head_dim) -> q, k, v, each (B, n_head, T, head_dim)
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        start = 0
        if cache is not None:  # the new positions follow the cached ones; attend over all of them
            start = cache.start
            k, v = cache.store(k, v)
        if last_query_only:  # every key and value is still needed (and cached), but one query
            q, start, T = q[:, :, -1:], start + T - 1, 1  # (B, nh, 1, hs), at the last position
        bias = self.score_bias(start, T, k.size(2), x.device) if self.log_time_weight is not None else None
        y = attend(q, k, v, start, self.hook_scores, self.hook_pattern, bias, self.hook_weighted_scores,
                   dropout=self.dropout if self.training else 0.0)
        y = self.hook_z(y).transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig, index: int):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.hook_pre, self.hook_post = HookPoint(f"blocks.{index}.mlp.pre"), HookPoint(f"blocks.{index}.mlp.post")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.hook_post(self.gelu(self.hook_pre(self.c_fc(x))))))


def layer_norm(config: GPTConfig) -> nn.Module:
    return nn.LayerNorm(config.n_embd, bias=config.bias) if config.layer_norm else nn.Identity()


class Block(nn.Module):
    def __init__(self, config: GPTConfig, index: int):
        super().__init__()
        self.ln_1 = layer_norm(config)
        self.attn = CausalSelfAttention(config, index)
        hook = lambda name: HookPoint(f"blocks.{index}.{name}")  # noqa: E731
        self.hook_resid_pre, self.hook_norm1, self.hook_attn_out = hook("resid_pre"), hook("norm1"), hook("attn_out")
        self.hook_resid_mid, self.hook_resid_post = hook("resid_mid"), hook("resid_post")
        if config.feed_forward:
            self.ln_2 = layer_norm(config)
            self.mlp = MLP(config, index)
            self.hook_norm2, self.hook_mlp_out = hook("norm2"), hook("mlp_out")
        else:
            self.mlp = None

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None,
                last_position_only: bool = False) -> torch.Tensor:
        """``last_position_only``: the block's output at the last position only, (B, 1, C)."""
        x = self.hook_resid_pre(x)
        attended = self.attn(self.hook_norm1(self.ln_1(x)), cache, last_query_only=last_position_only)
        if last_position_only:
            x = x[:, -1:]
        x = self.hook_resid_mid(x + self.hook_attn_out(attended))
        if self.mlp is not None:
            x = x + self.hook_mlp_out(self.mlp(self.hook_norm2(self.ln_2(x))))
        return self.hook_resid_post(x)


class GPT(LanguageModel):
    has_attention = True
    lora_targets = ("q", "k", "v", "o", "mlp", "head")
    transformers_weights_transposed = True  # GPT-2's Conv1D
    transformers_model_types = ("gpt2",)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=layer_norm(config),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight
        self.hook_embed, self.hook_pos_embed = HookPoint("embed"), HookPoint("pos_embed")
        self.hook_final_norm, self.hook_logits = HookPoint("final_norm"), HookPoint("logits")
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

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                last_position_only: bool = False):
        start = cache.length if cache is not None else 0
        self.check_input(idx, start)
        pos = torch.arange(start, start + idx.size(1), device=idx.device)
        x = self.hook_embed(self.transformer.wte(idx)) + self.hook_pos_embed(self.transformer.wpe(pos))  # (B, T, C)
        x = self.transformer.drop(x)
        last = len(self.transformer.h) - 1
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache.layer(i) if cache is not None else None, last_position_only and i == last)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.unembed(x)
        return logits, self.loss(logits, targets)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        return self.hook_logits(self.lm_head(self.hook_final_norm(self.transformer.ln_f(residual))))

    # --- generation -----------------------------------------------------------------------------

    def new_cache(self, batch_size: int = 1) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.config.n_layer, self.config.n_head, self.config.head_dim, self.config.block_size,
                       batch_size, weight.device, weight.dtype)

    # --- inside, stage by stage ----------------------------------------------------------------

    def inside_choices(self) -> tuple[int, int]:
        return self.config.n_layer, self.config.n_head

    def inside_stages(self, view: InsideView) -> list[Stage]:
        c, i = self.config, view.layer
        b, block = f"blocks.{i}", self.transformer.h[view.layer]
        stages = [embedding_card(view, c.vocab_size, c.n_embd, view.kept["pos_embed"][view.position])]
        if c.layer_norm:
            stages.append(norm_card(view, f"{b}.resid_pre", f"{b}.norm1", "LayerNorm", f"Block {i}: the first norm",
                                    f"{b} norm1"))
        extra = []
        if c.attn_rank:
            extra.append(f"Low-rank attention (attn_rank): q, k and v have {c.attn_rank} dimensions per head, not "
                         f"the {c.n_embd // c.n_head} a head of a {c.n_embd}-wide model would have.")
        attention = attention_cards(view, f"{b}.attn", c.n_head, c.head_dim, extra=extra)
        if c.time_weighting:
            attention.insert(2, self._time_weighting_card(view, block))
        stages += attention
        stages.append(residual_card(view, f"{b}.resid_pre", f"{b}.attn_out", f"{b}.resid_mid", "attention",
                                    f"{b} attention residual", c.n_head, c.n_embd))
        if block.mlp is not None:
            if c.layer_norm:
                stages.append(norm_card(view, f"{b}.resid_mid", f"{b}.norm2", "LayerNorm",
                                        f"Block {i}: the second norm", f"{b} norm2"))
            pre, post = view.at(f"{b}.mlp.pre"), view.at(f"{b}.mlp.post")
            stages.append(mlp_card(view, b, c.n_embd, 4 * c.n_embd, "applies GELU (which passes positive numbers and "
                                   "squashes negative ones towards 0)", pre > 0, f"{b} mlp", f"Block {i}: the MLP",
                                   [Figure("vector", "pre-activation", pre), Figure("vector", "after GELU", post)]))
            stages.append(residual_card(view, f"{b}.resid_mid", f"{b}.mlp_out", f"{b}.resid_post", "MLP",
                                        f"{b} mlp residual"))
        steps = [("embeddings", "blocks.0.resid_pre")]
        for k, each in enumerate(self.transformer.h):
            steps.append((f"block {k} attention", f"blocks.{k}.resid_mid"))
            if each.mlp is not None:
                steps.append((f"block {k} MLP", f"blocks.{k}.resid_post"))
        stages.append(stream_card(view, steps))
        stages.append(logits_card(view, "final_norm" if c.layer_norm else None))
        return stages

    def _time_weighting_card(self, view: InsideView, block: Block) -> Stage:
        h, p = view.head, view.position
        weights = block.attn.log_time_weight[h, : p + 1].detach().exp()  # by distance 0, 1, ...
        far = int(weights.argmax())
        weighted = view.row(f"blocks.{view.layer}.attn.weighted_scores")[h]
        labels = [shown(t) for t in view.tokens]
        return Stage(f"blocks.{view.layer}.attn time weighting", f"Time weighting (head {h})", [
            f"Time weighting (time_weighting): head {h} multiplies its attention on a token d steps back by a learned "
            f"weight, which adds log w(d) to the score. Up to {p} steps back its largest weight is "
            f"{float(weights[far]):.2f}, at distance {far}; distance 1 has {float(weights[min(1, p)]):.2f}.",
        ], [Figure("bars", "learned weight by distance", weights, x=[str(d) for d in range(p + 1)]),
            Figure("heatmap", "scores + log w", weighted.masked_fill(torch.isinf(weighted), 0.0), x=labels, y=labels,
                   masked=torch.isinf(weighted))])

    @torch.no_grad()
    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        out = {}
        x = kept["embed"] + kept["pos_embed"]  # (1, T, C)
        T = x.size(1)
        for i, block in enumerate(self.transformer.h):
            b, attn = f"blocks.{i}", block.attn
            out[f"{b}.resid_pre"] = x
            normed = out[f"{b}.norm1"] = layer_norm_spelled(x, block.ln_1)
            q, k, v = attn.c_attn(normed).view(1, T, 3, c.n_head, c.head_dim).permute(2, 0, 3, 1, 4)  # (1, nh, T, hs)
            out[f"{b}.attn.q"], out[f"{b}.attn.k"], out[f"{b}.attn.v"] = q, k, v
            scores = out[f"{b}.attn.scores"] = masked_scores(q, k)
            if attn.log_time_weight is not None:
                scores = out[f"{b}.attn.weighted_scores"] = scores + attn.score_bias(0, T, T, x.device)
            pattern = out[f"{b}.attn.pattern"] = torch.softmax(scores, dim=-1)
            z = out[f"{b}.attn.z"] = pattern @ v
            attended = out[f"{b}.attn_out"] = attn.c_proj(z.transpose(1, 2).reshape(1, T, -1))
            x = out[f"{b}.resid_mid"] = x + attended
            if block.mlp is not None:
                normed = out[f"{b}.norm2"] = layer_norm_spelled(x, block.ln_2)
                pre = out[f"{b}.mlp.pre"] = block.mlp.c_fc(normed)
                post = out[f"{b}.mlp.post"] = gelu_spelled(pre, c.activation)
                added = out[f"{b}.mlp_out"] = block.mlp.c_proj(post)
                x = x + added
            out[f"{b}.resid_post"] = x
        out["final_norm"] = layer_norm_spelled(x, self.transformer.ln_f)
        out["logits"] = self.lm_head(out["final_norm"])
        return out

    # --- counting -------------------------------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"token embedding": [self.transformer.wte.weight], "position embedding": [self.transformer.wpe.weight]}
        for i, block in enumerate(self.transformer.h):
            weights = block.attn.log_time_weight
            groups[f"block {i} attention"] = [p for p in block.attn.parameters() if p is not weights]
            if weights is not None:
                groups[f"block {i} time weights"] = [weights]
            if block.mlp is not None:
                groups[f"block {i} MLP"] = list(block.mlp.parameters())
            groups[f"block {i} norms"] = [*block.ln_1.parameters(), *(block.ln_2.parameters() if block.mlp else ())]
        groups["final norm"] = list(self.transformer.ln_f.parameters())
        groups["output head"] = list(self.lm_head.parameters())
        return groups

    def attention_flops(self, context: int) -> int:
        return attention_flops(self.config.n_layer, context, self.config.n_head * self.config.head_dim)

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        config, c, f = self.config, bytes_per_value, 4
        C, width, drop = config.n_embd, config.n_head * config.head_dim, config.dropout > 0
        sublayers = 2 if config.feed_forward else 1  # attention, and the MLP when there is one
        rows: dict[str, float] = {}
        if config.layer_norm:  # LayerNorm keeps its input, its mean and 1/std
            rows["norm inputs (residual stream, fp32)"] = sublayers * C * f
            rows["norm statistics"] = sublayers * 2 * f
        rows["matmul inputs (norm outputs, or x without norms)"] = sublayers * C * c  # c_attn, c_fc
        # an additive mask (time weighting) or attention dropout takes the explicit path
        rows.update(saved_by_attention(config.n_head, width, 2 * width, config.block_size, c,
                                       fused=not config.time_weighting and not drop, dropout=drop))
        if config.feed_forward:
            rows["MLP hidden (before and after GELU)"] = 2 * 4 * C * c
        if drop:
            rows["dropout masks"] = sublayers * C * c
        outside = 8 + (C * c if drop else 0)  # token ids; the embedding dropout's mask
        if config.layer_norm:
            outside += C * f + 2 * f  # final norm input and statistics
        return SavedActivations(rows, config.n_layer, outside + head_and_loss_bytes(C, config.vocab_size, c))

    # --- LoRA and transformers ------------------------------------------------------------------

    def lora_sites(self, targets):
        inner = self.config.n_head * self.config.head_dim
        for block in self.transformer.h:
            # q, k and v are row blocks of the one fused matrix: each targeted block gets its own adapter
            rows = {name: (i * inner, (i + 1) * inner) for i, name in enumerate("qkv") if name in targets}
            if rows:
                yield block.attn, "c_attn", rows, False
            if "o" in targets:
                yield block.attn, "c_proj", None, False
            if "mlp" in targets and block.mlp is not None:
                yield block.mlp, "c_fc", None, False
                yield block.mlp, "c_proj", None, False
        if "head" in targets:
            yield self, "lm_head", None, self.config.tie_weights

    def to_transformers(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """GPT-2 (``GPT2LMHeadModel``): the same modules under the same names, nanoGPT having borrowed
        them, except that GPT-2 stores its four projection matrices transposed (its ``Conv1D`` keeps
        weights as in x out). GPT-2 always has biases: a model without them gets zeros."""
        c = self.config
        unsupported = [name for name, bad in (("feed_forward=False", not c.feed_forward),
                                              ("layer_norm=False", not c.layer_norm),
                                              ("time_weighting", c.time_weighting),
                                              (f"attn_rank={c.attn_rank}", c.attn_rank))
                       if bad]
        if unsupported:
            raise ValueError(f"GPT-2 has no equivalent of {', '.join(unsupported)}: only the full gpt block exports")
        config = {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
            "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_inner": 4 * c.n_embd, "activation_function": GPT2_ACTIVATIONS[c.activation], "resid_pdrop": 0.0,
            "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": c.tie_weights,
            "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",
            # GPT-2's 50256 is not in our vocabulary
        }
        state = {}
        for name, value in self.state_dict().items():
            if c.tie_weights and name == "lm_head.weight":
                continue  # transformers ties it back to transformer.wte.weight
            state[name] = value.t() if name.endswith(GPT2_TRANSPOSED) else value
            if not c.bias and name.endswith(GPT2_TRANSPOSED):
                state[name[: -len("weight")] + "bias"] = torch.zeros(value.shape[0])
        if not c.bias:
            for i in range(c.n_layer):  # GPT-2's LayerNorms always have a bias too
                for norm in ("ln_1", "ln_2"):
                    state.setdefault(f"transformer.h.{i}.{norm}.bias", torch.zeros(c.n_embd))
            state.setdefault("transformer.ln_f.bias", torch.zeros(c.n_embd))
        return config, state

    @classmethod
    def config_from_transformers(cls, hf: dict) -> dict:
        """GPT-2's config.json as gpt's settings; what GPT-2 allows and gpt does not is refused."""
        n_embd = hf.get("n_embd", 768)
        activation = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
        refused = [reason for reason, bad in (
            (f"the activation {hf.get('activation_function')!r} (gpt has gelu and its tanh form)",
             hf.get("activation_function", "gelu_new") not in activation),
            (f"an MLP of width {hf.get('n_inner')} (gpt's is 4 × n_embd = {4 * n_embd})",
             hf.get("n_inner") not in (None, 4 * n_embd)),
            (f"layer_norm_epsilon {hf.get('layer_norm_epsilon')} (gpt's LayerNorm uses 1e-5)",
             hf.get("layer_norm_epsilon", 1e-5) != 1e-5),
            ("unscaled attention (scale_attn_weights false)", not hf.get("scale_attn_weights", True)),
            ("attention scaled by layer depth (scale_attn_by_inverse_layer_idx)",
             hf.get("scale_attn_by_inverse_layer_idx", False)),
            ("cross-attention (add_cross_attention)", hf.get("add_cross_attention", False)),
        ) if bad]
        if refused:
            raise ValueError(f"gpt cannot express this GPT-2's {', '.join(refused)}")
        return {"vocab_size": hf["vocab_size"], "block_size": hf.get("n_positions", 1024), "n_embd": n_embd,
                "n_layer": hf.get("n_layer", 12), "n_head": hf.get("n_head", 12), "dropout": 0.0, "bias": True,
                "activation": activation[hf.get("activation_function", "gelu_new")],
                "tie_weights": hf.get("tie_word_embeddings", True)}

    def state_from_transformers(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """GPT-2's weights under gpt's names: its Conv1D matrices transposed back; a file saved from
        ``GPT2Model`` (as openai-community/gpt2) lacks the ``transformer.`` prefix; old files carry
        the causal mask as ``attn.bias`` / ``attn.masked_bias`` buffers, which gpt does not keep."""
        state = {}
        for name, value in tensors.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if not name.startswith(("transformer.", "lm_head.")):
                name = f"transformer.{name}"
            state[name] = value.t() if name.endswith(GPT2_TRANSPOSED) else value
        if self.config.tie_weights:
            state["lm_head.weight"] = state["transformer.wte.weight"]
        return state


def gelu_spelled(x: torch.Tensor, activation: str) -> torch.Tensor:
    """GELU written out: x times the normal distribution's CDF at x (exact), or its tanh approximation."""
    if activation == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))


GPT2_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# The ladder of "Let's build GPT": each rung adds one thing at the same width and context, so
# their losses compare. The last rung is nanoGPT's CPU recipe for Shakespeare (val 1.88 there).
# The attention-only rungs have their own output head, as in the video: with no MLP or norm in
# between, a head tied to the embedding scores token pairs symmetrically (e_i . e_j) and cannot
# even learn a bigram table (val 2.66 tied against the bigram's 2.52).
_LADDER = {"n_embd": 128, "block_size": 64, "dropout": 0.0}
_ATTENTION_ONLY = {"n_layer": 1, "feed_forward": False, "layer_norm": False, "tie_weights": False}
_CPU_TRAINING = {"batch_size": 12, "learning_rate": 1e-3, "max_iters": 2000, "warmup_iters": 100}

PRESETS = {
    # the attention path starts from the bigram's table, as the recurrent one does
    "gpt-single-head": {"model": {**_LADDER, **_ATTENTION_ONLY, "n_head": 1}, "train": _CPU_TRAINING,
                        "builds_on": "bigram"},
    "gpt-multi-head": {"model": {**_LADDER, **_ATTENTION_ONLY, "n_head": 4}, "train": _CPU_TRAINING,
                       "builds_on": "gpt-single-head"},
    "gpt-block": {"model": {**_LADDER, "n_layer": 1, "n_head": 4}, "train": _CPU_TRAINING,
                  "builds_on": "gpt-multi-head"},
    "gpt": {"model": {**_LADDER, "n_layer": 4, "n_head": 4}, "train": _CPU_TRAINING, "builds_on": "gpt-block"},
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

FAMILY = Family("gpt", GPTConfig, GPT, PRESETS,
                "nanoGPT: learned positions, pre-LayerNorm, GELU MLP, tied embeddings")
