"""Faster kernels that are not the model: transforms applied to a built model from outside its
file, opt-in, and chosen by measuring on the machine at hand.

Generating one token multiplies a single row by every weight matrix, so at batch 1 a step costs the
time it takes to stream the weights from memory. On x86 CPUs torch's fp32 ``F.linear`` calls MKL;
oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel torch already runs for
bf16) streams a large matrix at another speed, faster on some processors and slower on others
(``bench/generate_speed.py`` measured both ways on two machines; see bench/RESULTS.md). So
``fastest_linear(model)`` times both kernels on each of the model's matrix shapes, one row at a
time, here, and swaps in ``OneDNNLinear`` only where oneDNN won by a clear margin.

``OneDNNLinear`` has ``nn.Linear``'s parameters and state dict and shares the tensors of the layer it
replaces (a tied head stays tied). It takes oneDNN only when autograd is off (the kernel has no
backward), for fp32 CPU tensors and plain weights; everything else is ``F.linear``. The two kernels
add in different orders, so outputs differ by float rounding (about 1e-6 relative).
"""

from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN_AVAILABLE = (
    platform.machine().lower() in ("x86_64", "amd64")
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # (input, weight, bias, then "no fused activation")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose fp32 no-grad forward runs oneDNN's inner product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if (not torch.is_grad_enabled() and x.is_cpu and x.dtype == torch.float32
                and type(weight) is nn.Parameter and weight.dtype == torch.float32):
            return onednn_linear(x, weight, bias)
        return F.linear(x, weight, bias)


def retyped(layer: nn.Linear, kind: type) -> nn.Linear:
    """A ``kind`` layer holding ``layer``'s own tensors, not copies (a tied head stays tied)."""
    twin = kind(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    twin.weight, twin.bias = layer.weight, layer.bias
    return twin


def linear_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) for every plain or oneDNN Linear of the model."""
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if type(child) in (nn.Linear, OneDNNLinear)]


def seconds_per_shape(kernel, layers: list[nn.Linear], rounds: int) -> dict[tuple, float]:
    """Seconds ``kernel`` takes per one-row product, summed over the layers of each shape, best of
    ``rounds`` passes over every layer in the model's order: each product then reads a matrix the
    one before did not, from memory as a generation step does, not from a warm cache."""
    rows = [torch.randn(1, layer.in_features) for layer in layers]
    best: dict[tuple, float] = {}
    with torch.no_grad():
        for layer, x in zip(layers, rows):  # warm-up: oneDNN builds its primitive on the first call
            kernel(x, layer.weight, layer.bias)
        for _ in range(rounds):
            spent: dict[tuple, float] = {}
            for layer, x in zip(layers, rows):
                start = time.perf_counter()
                kernel(x, layer.weight, layer.bias)
                shape = tuple(layer.weight.shape)
                spent[shape] = spent.get(shape, 0.0) + time.perf_counter() - start
            best = {shape: min(seconds, best.get(shape, float("inf"))) for shape, seconds in spent.items()}
    return best


def fastest_linear(model: nn.Module, margin: float = 0.05, rounds: int = 20) -> dict:
    """Time ``F.linear`` and oneDNN on the model's own matrices (one row each, in the model's
    order, on this machine), and give the layers of every shape where oneDNN was at least
    ``margin`` faster the oneDNN kernel, in place. Returns ``{(out, in): {"plain_us", "onednn_us",
    "kernel"}}``, microseconds per pass over the layers of that shape."""
    if not ONEDNN_AVAILABLE:
        return {}
    layers = [(parent, name, layer) for parent, name, layer in linear_layers(model)
              if layer.weight.dtype == torch.float32 and layer.weight.is_cpu]
    distinct = list({id(layer): layer for _, _, layer in layers}.values())  # a shared layer once
    plain = seconds_per_shape(F.linear, distinct, rounds)
    onednn = seconds_per_shape(onednn_linear, distinct, rounds)
    report = {shape: {"plain_us": 1e6 * plain[shape], "onednn_us": 1e6 * onednn[shape],
                      "kernel": "onednn" if onednn[shape] < (1 - margin) * plain[shape] else "plain"}
              for shape in plain}
    for parent, name, layer in layers:
        kind = OneDNNLinear if report[tuple(layer.weight.shape)]["kernel"] == "onednn" else nn.Linear
        if type(layer) is not kind:
            setattr(parent, name, retyped(layer, kind))
    return report


def use_onednn_linear(model: nn.Module) -> nn.Module:
    """Every Linear on oneDNN, unmeasured (for tests and benchmarks that compare the kernels)."""
    for parent, name, layer in linear_layers(model):
        setattr(parent, name, retyped(layer, OneDNNLinear))
    return model


def use_plain_linear(model: nn.Module) -> nn.Module:
    """Undo: every Linear back on ``F.linear``, the same tensors."""
    for parent, name, layer in linear_layers(model):
        setattr(parent, name, retyped(layer, nn.Linear))
    return model
