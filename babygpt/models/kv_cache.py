"""A key/value cache for generation, shared by the attention families.

When a model generates one token at a time, the keys and values of earlier positions do not change,
so each step only needs the new token's query, key and value. ``KVCache`` holds every layer's keys
and values in two tensors allocated once, at full context length, for the whole generation:
a step writes its new positions in place and attends over the filled prefix (a view, not a copy).

The model owns the positions: ``model(idx, cache=cache)`` treats ``idx`` as the tokens at positions
``cache.length, cache.length + 1, ...`` and advances ``cache.length`` by ``idx.size(1)`` at the end.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layer: int, n_kv_head: int, head_dim: int, max_length: int, batch_size: int = 1,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_kv_head, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_length = max_length
        self.length = 0  # positions filled so far, in every layer
        self.layers = [LayerCache(self, i) for i in range(n_layer)]

    def layer(self, index: int) -> "LayerCache":
        return self.layers[index]

    def advance(self, n: int) -> None:
        """Called by the model once every layer has stored ``n`` new positions."""
        self.length += n

    def reset(self) -> None:
        """Forget everything (the buffers are reused, not freed)."""
        self.length = 0


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
