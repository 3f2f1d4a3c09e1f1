"""Faster kernels that are not the model: transforms applied to a built model from outside its
file, opt-in, and chosen by measuring on the machine at hand.

Generating one token multiplies a single row by every weight matrix, so at batch 1 a step costs the
time it takes to stream the weights from memory. On x86 CPUs torch's fp32 ``F.linear`` calls MKL;
oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel torch already runs for
bf16) streams a large matrix at another speed, faster on some processors and slower on others
(``bench/generate_speed.py`` measured both ways on two machines; see bench/RESULTS.md). The
weight's layout matters too: the same ``F.linear`` on a weight stored column by column runs MKL's
other loop order, faster for the wide matrices (queries-keys-values, the MLP's up projection) on
some CPUs and slower for the tall ones. So ``fastest_linear(model)`` times the three ways on each
of the model's matrix shapes, one row at a time, here, and changes a layer only where another way
beat the plain one by a clear margin.

``bfloat16_weights(model)`` is the other transform for generation: a copy whose weights are bf16.
A step at batch 1 reads every weight once, so half the bytes can mean nearly half the time, and a
model that did not fit the processor's last-level cache may fit it. It pays only where the CPU
multiplies bf16 natively (``machine.bf16_instructions()``); elsewhere torch emulates bf16, far slower
than float32. The logits differ from float32's by bf16's rounding (about three significant digits), so
greedy texts agree for a while and then part: ``bench/generate_speed.py`` reports where, per model.
Where the CPU has those instructions the copy's Linears are ``PackedBF16Linear``: the same oneDNN
product bf16 ``F.linear`` runs, bit for bit, on a weight packed once into oneDNN's blocked layout
instead of reordered at every call.

``OneDNNLinear`` has ``nn.Linear``'s parameters and state dict and shares the tensors of the layer it
replaces (a tied head stays tied). It takes oneDNN only when autograd is off (the kernel has no
backward), for fp32 CPU tensors and plain weights; everything else is ``F.linear``. The two kernels
add in different orders, so outputs differ by float rounding (about 1e-6 relative).
"""

from __future__ import annotations

import copy
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from .machine import bf16_instructions

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


def column_major(weight: torch.Tensor) -> torch.Tensor:
    """The same matrix stored column by column (its transpose contiguous, seen transposed back):
    ``F.linear`` then multiplies a row by it as ``x @ Wᵀ`` with ``Wᵀ`` in rows, which streams faster
    for some shapes on some CPUs and slower for others."""
    return weight.t().contiguous().t()


def fastest_linear(model: nn.Module, margin: float = 0.05, rounds: int = 20) -> dict:
    """Time three ways of the one-row product on the model's own matrices (one row each, in the
    model's order, on this machine): ``F.linear`` on the weights as stored ("plain"), oneDNN's
    inner product ("onednn"), and ``F.linear`` on column-major weights ("column"). The layers of
    every shape where another way was at least ``margin`` faster than plain take it, in place: a
    oneDNN layer, or the weight stored column-major (the same values; a weight shared with another
    module, such as a tied head, stays as it is). Returns ``{(out, in): {"plain_us", "onednn_us",
    "column_us", "kernel"}}``, microseconds per pass over the layers of that shape."""
    if not ONEDNN_AVAILABLE:
        return {}
    layers = [(parent, name, layer) for parent, name, layer in linear_layers(use_plain_linear(model))
              if layer.weight.dtype == torch.float32 and layer.weight.is_cpu]
    distinct = list({id(layer): layer for _, _, layer in layers}.values())  # a shared layer once
    plain = seconds_per_shape(F.linear, distinct, rounds)
    onednn = seconds_per_shape(onednn_linear, distinct, rounds)
    column = seconds_per_shape(F.linear, [column_major_twin(layer) for layer in distinct], rounds)
    report = {}
    for shape in plain:
        times = {"plain": plain[shape], "onednn": onednn[shape], "column": column[shape]}
        best = min(("onednn", "column"), key=times.get)
        report[shape] = {f"{k}_us": 1e6 * v for k, v in times.items()}
        report[shape]["kernel"] = best if times[best] < (1 - margin) * times["plain"] else "plain"
    shared = shared_tensors(model)
    for parent, name, layer in layers:
        kernel = report[tuple(layer.weight.shape)]["kernel"]
        if kernel == "onednn":
            setattr(parent, name, retyped(layer, OneDNNLinear))
        elif kernel == "column" and id(layer.weight) not in shared and layer.weight.is_contiguous():
            layer.weight = nn.Parameter(column_major(layer.weight.detach()), requires_grad=layer.weight.requires_grad)
    return report


def column_major_twin(layer: nn.Linear) -> nn.Linear:
    """A stand-in with the layer's weight stored column-major, for timing only."""
    twin = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    twin.weight, twin.bias = nn.Parameter(column_major(layer.weight.detach())), layer.bias
    return twin


def shared_tensors(model: nn.Module) -> set[int]:
    """ids of the parameters that more than one module holds (a head tied to the embedding)."""
    seen: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def use_onednn_linear(model: nn.Module) -> nn.Module:
    """Every Linear on oneDNN, unmeasured (for tests and benchmarks that compare the kernels)."""
    for parent, name, layer in linear_layers(model):
        setattr(parent, name, retyped(layer, OneDNNLinear))
    return model


def use_plain_linear(model: nn.Module) -> nn.Module:
    """Undo: every Linear back on ``F.linear``, its weight stored row by row again."""
    for parent, name, layer in linear_layers(model):
        setattr(parent, name, retyped(layer, nn.Linear))
    for layer in (m for m in model.modules() if type(m) is nn.Linear and not m.weight.is_contiguous()):
        layer.weight = nn.Parameter(layer.weight.detach().contiguous(), requires_grad=layer.weight.requires_grad)
    return model


class PackedBF16Linear(nn.Linear):
    """``nn.Linear`` for a bf16 copy that generates: oneDNN's product on the weight packed once
    into oneDNN's own blocked layout, kept beside it.

    ``F.linear`` in bf16 also runs oneDNN, but hands it the weight as stored, which oneDNN
    reorders on every call; packing once gives the same numbers (the same kernel) for a fraction
    of the time a call takes. The packed copy is made on first use and again whenever the weight
    changes (another tensor, or written in place); with autograd on, or an input not bf16 on the
    CPU, the layer is plain ``F.linear``. A copy of the layer (``copy.deepcopy``) packs afresh:
    oneDNN's layout is opaque to the rest of torch."""

    packed: tuple | None = None  # (the weight's identity and version, its packed copy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if torch.is_grad_enabled() or not x.is_cpu or x.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16:
            return F.linear(x, weight, self.bias)
        key = (id(weight), weight.data_ptr(), weight._version)
        if self.packed is None or self.packed[0] != key:
            self.packed = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1))  # tuned for one row
        return torch.ops.mkldnn._linear_pointwise(x, self.packed[1], self.bias, "none", [], "")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("packed", None)
        return state


def bfloat16_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every floating-point weight and buffer in bfloat16, in eval mode,
    for generation (its caches follow the weights' dtype). The model itself is left untouched. A
    family that cannot generate in bf16 (``generates_in_bf16``, the LSTM) is returned as it is.
    Where the CPU multiplies bf16 natively, its Linears are ``PackedBF16Linear``."""
    if not getattr(model, "generates_in_bf16", True):
        return model
    half = copy.deepcopy(model).to(torch.bfloat16).eval()
    if ONEDNN_AVAILABLE and bf16_instructions():
        for parent, name, layer in linear_layers(use_plain_linear(half)):
            setattr(parent, name, retyped(layer, PackedBF16Linear))
    return half
