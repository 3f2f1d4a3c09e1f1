"""What the attention families share: causal attention, its masks, and the key/value cache.

When a model generates one token at a time, the keys and values of earlier positions do not change,
so each step only needs the new token's query, key and value. ``KVCache`` holds every layer's keys
and values in two tensors allocated once, at full context length, for the whole generation:
a step writes its new positions in place and attends over the filled prefix (a view, not a copy).

The model owns the positions: ``model(idx, cache=cache)`` treats ``idx`` as the tokens at positions
``cache.length, cache.length + 1, ...`` and advances ``cache.length`` by ``idx.size(1)`` at the end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class KVCache:
    kind = "KV cache"  # keys and values of every layer

    def __init__(self, n_layer: int, n_kv_head: int, head_dim: int, max_length: int, batch_size: int = 1,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_kv_head, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_length = max_length
        self.length = 0  # positions filled so far, in every layer
        self.layers = [LayerCache(self, i) for i in range(n_layer)]

    def layer(self, index: int) -> LayerCache:
        return self.layers[index]

    def advance(self, n: int) -> None:
        """Called by the model once every layer has stored ``n`` new positions."""
        self.length += n

    def reset(self) -> None:
        """Forget everything (the buffers are reused, not freed)."""
        self.length = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values))


class LayerCache:
    """One layer's view of a ``KVCache``: where its new positions start, and where to store them."""

    def __init__(self, cache: KVCache, index: int):
        self.cache = cache
        self.keys, self.values = cache.keys[index], cache.values[index]  # (B, H, max_length, D) views

    @property
    def start(self) -> int:
        return self.cache.length

    def store(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new keys/values (B, H, T, D) after the cached ones; return all of them (B, H, start + T, D)."""
        start, T = self.cache.length, k.size(2)
        self.keys.narrow(2, start, T).copy_(k)
        self.values.narrow(2, start, T).copy_(v)
        return self.keys.narrow(2, 0, start + T), self.values.narrow(2, 0, start + T)


def causal_mask(start: int, T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) booleans: query i, at position ``start + i``, may see key j when ``j <= start + i``."""
    queries = torch.arange(start, start + T, device=device)
    return torch.arange(S, device=device)[None, :] <= queries[:, None]


def sdpa_causality(start: int, T: int, S: int, device: torch.device) -> tuple[torch.Tensor | None, bool]:
    """(attn_mask, is_causal) for ``scaled_dot_product_attention`` with ``T`` queries after ``start`` cached keys.

    ``is_causal=True`` aligns its triangle to the top-left corner, which is right only when there
    is no cached prefix; a single new query sees every key and needs no mask at all.
    """
    if start == 0:
        return None, True
    if T == 1:
        return None, False
    return causal_mask(start, T, S, device), False


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scores_hook, pattern_hook,
           bias: torch.Tensor | None = None, weighted_hook=None, dropout: float = 0.0) -> torch.Tensor:
    """Causal attention: ``softmax(q kᵀ / √d + bias) v`` for queries q (B, H, T, D) at positions
    ``start ..`` and keys/values k, v (B, H_kv, S, D), H a multiple of H_kv (grouped-query attention).

    ``bias``: an additive (H, T, S) mask already holding -inf on future keys (time weighting).
    The fused kernel runs unless a hook point of the scores or the pattern is asked for; then the
    same arithmetic is spelled out, step by step, and those hook points keep their tensors.
    """
    T, S = q.size(2), k.size(2)
    group = q.size(1) // k.size(1)
    weighted_asked = weighted_hook is not None and weighted_hook.asked
    if not (scores_hook.asked or pattern_hook.asked or weighted_asked):
        if bias is not None:
            # As (1, H, T, S): given a 3-D mask, the CPU kernel falls back to its slower unfused path.
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype)[None], dropout_p=dropout)
        mask, is_causal = sdpa_causality(start, T, S, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal,
                                              enable_gqa=group > 1)
    if group > 1:  # each group of H / H_kv query heads reads the same key/value head
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, T, S)
    scores = scores_hook(scores.masked_fill(~causal_mask(start, T, S, q.device), float("-inf")))
    if bias is not None:
        scores = weighted_hook(scores + bias)
    pattern = pattern_hook(F.softmax(scores, dim=-1))  # each row a distribution over the keys so far
    return F.dropout(pattern, dropout, training=dropout > 0) @ v  # (B, H, T, D)


def attention_flops(n_layer: int, context: int, query_width: int) -> int:
    """FLOPs per token of QKᵀ and of the weighted sum of V: ``context`` multiply-adds per query
    dimension each, every query head (grouped-query attention shares K/V, not the work), per layer,
    over the full T x T square (nanoGPT's and PaLM's convention; the causal kernels do about half)."""
    return 2 * 2 * n_layer * context * query_width


def saved_by_attention(heads: int, q_width: int, kv_width: int, context: int, bytes_per_value: int, fused: bool,
                       dropout: bool) -> dict[str, float]:
    """Bytes per token that ``attend`` leaves for the backward pass (rows of ``babygpt.stats``' table)."""
    c, f = bytes_per_value, 4
    if fused:  # the fused kernel keeps q, k, v, its output and a logsumexp per head: no T x T matrix
        return {"attention q, k, v": (q_width + kv_width) * c, "attention output": q_width * c,
                "attention logsumexp": heads * f}
    # the explicit path (an additive mask, or dropout on the pattern): q, k, v copies (K/V heads
    # repeated for GQA) and T x T probabilities, in fp32 even under autocast (PyTorch's CPU math
    # path upcasts bf16); with dropout also the pattern's mask and its dropped copy
    return {"attention q, k, v": 3 * q_width * f, "attention output": q_width * c,
            "attention probabilities (T x T)": (3 if dropout else 1) * heads * context * f}
