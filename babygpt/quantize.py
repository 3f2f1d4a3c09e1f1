"""int8 weight quantization with torchao, PyTorch's maintained quantization library (the older
``torch.ao.quantization.quantize_dynamic`` is deprecated), and what it does to a model.

``quantize_int8`` returns a copy whose every Linear weight (the output head included) is stored as
int8 with one fp32 scale per output row (torchao's ``Int8WeightOnlyConfig``); activations stay
fp32, so each product dequantizes on the fly. Embedding tables stay fp32 (a lookup is not a
matmul), and a head tied to the embedding gets its own int8 copy.

``quantization_report`` measures both models the same way: bytes of weights, sampling tokens/s
(KV-cached, greedy) and val loss over the first windows of the val split.
"""

from __future__ import annotations

import copy
import logging
import time

import torch
from torch import nn

from .data import Dataset
from .evaluation import in_batches, loss_over
from .sampling import generate


def _torchao():
    """torchao, imported quietly: on a CPU-only machine it logs that its CUDA kernels do not load."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return quantize_, Int8WeightOnlyConfig


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with int8 Linear weights; the model itself is left as it was."""
    if any(type(p) is not nn.Parameter for p in model.parameters()):  # a tensor subclass: already quantized
        raise ValueError("this model is already quantized")
    quantize_, Int8WeightOnlyConfig = _torchao()
    quantized = copy.deepcopy(model).eval()
    quantize_(quantized, Int8WeightOnlyConfig())
    return quantized


def weight_bytes(model: nn.Module) -> int:
    """Bytes the parameters take, counting a quantized tensor by the tensors it is made of."""
    def size(t: torch.Tensor) -> int:
        if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
            names, _ = t.__tensor_flatten__()
            return sum(size(getattr(t, name)) for name in names)
        return t.numel() * t.element_size()

    return sum(size(p) for p in model.parameters())


@torch.no_grad()
def tokens_per_second(model, prompt_ids: list[int], new_tokens: int = 200, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, prompt_ids, new_tokens, temperature=0.0)
        best = min(best, time.perf_counter() - start)
    return new_tokens / best


def val_loss(model, dataset: Dataset, max_windows: int = 256, batch_size: int = 32) -> float:
    x, y = dataset.windows("val", model.config.block_size)
    total, tokens = loss_over(model, in_batches(x[:max_windows], y[:max_windows], batch_size))
    return total / tokens


def quantization_report(model, dataset: Dataset, new_tokens: int = 200, max_windows: int = 256) -> list[dict]:
    """Rows for fp32 and int8: weight bytes, greedy KV-cached tokens/s, val loss (first windows)."""
    quantized = quantize_int8(model)
    prompt = dataset.val[:8].tolist()
    rows = []
    for name, m in (("fp32", model), ("int8 weights (torchao Int8WeightOnlyConfig)", quantized)):
        rows.append({"model": name, "weight_bytes": weight_bytes(m),
                     "tokens_per_sec": tokens_per_second(m, prompt, new_tokens),
                     "val_loss": val_loss(m, dataset, max_windows)})
    return rows
