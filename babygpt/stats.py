"""Model stats: where the parameters are, what a token costs in FLOPs, how much memory training takes.

Plain functions behind the app's "Model stats" tab. Every number is either counted from the built
model or computed from a formula whose source is named in the docstring, so the tab can show and
explain them side by side:

- ``parameter_breakdown(model)``: parameters per readable group (token embedding, block 0
  attention, ...), summing exactly to ``model.num_parameters()``.
- ``flops_per_token(config, context)``: the analytic FLOPs of one token, forward and training
  (the 6N rule of Kaplan et al. 2020 plus the attention term, as nanoGPT's ``estimate_mfu``).
- ``measured_flops_per_token(model, context)``: the same counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on a real forward and backward pass.
- ``chinchilla(parameters, budget_flops)``: the compute-optimal data size (Hoffmann et al. 2022).
- ``training_memory(config, batch_size, dtype)``: bytes for weights, gradients, AdamW state and the
  activations autograd keeps for the backward pass.

Conventions, once: a multiply-add is 2 FLOPs; "matmul parameters" are the weights of the
``nn.Linear`` layers (the output head included, even when it is tied to the token embedding),
because an embedding lookup is indexing, not arithmetic; biases, norms, softmax and activations are
not counted (they are O(n_embd) per token next to the O(n_embd^2) matmuls).
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from .lora import lora_layers
from .models import BaseConfig, LanguageModel, build_model, evaluating

# --- parameters ---------------------------------------------------------------------------------

LORA_ROW = "LoRA adapters"


def parameter_breakdown(model: nn.Module) -> list[dict]:
    """Parameters per readable group, in the model's order: ``[{"module", "parameters", "share"}]``.

    The groups are the family's own (``model.parameter_groups()``: for gpt the token and position
    embeddings, per block its attention, time weights, MLP and norms, the final norm, the head).
    A head tied to the token embedding is listed as "output head (tied to token embedding)" with 0
    parameters: its tensor is already counted once under the embedding, as
    ``model.num_parameters()`` counts it, so the rows always sum to ``model.num_parameters()``.
    LoRA adapters, wherever they sit, are one row after the model they adapt. ``share`` is the
    row's fraction of the total.
    """
    adapters = {id(p) for layer in lora_layers(model) for p in (*layer.lora_A.values(), *layer.lora_B.values())}
    counts: dict[str, int] = {}
    label_of: dict[int, str] = {}  # id(parameter) -> the row it was counted in
    for label, parameters in model.parameter_groups().items():
        for p in parameters:
            if id(p) in adapters:
                continue
            if id(p) in label_of:  # a tied weight: a second name for a tensor already counted
                counts.setdefault(f"{label} (tied to {label_of[id(p)]})", 0)
                continue
            label_of[id(p)] = label
            counts[label] = counts.get(label, 0) + p.numel()
    left_out = [p for p in model.parameters() if id(p) not in label_of and id(p) not in adapters]
    if left_out:  # a family's groups must cover every parameter; say so rather than miscount
        raise RuntimeError(f"{type(model).__name__}.parameter_groups() leaves {len(left_out)} parameter(s) out")
    if adapters:
        counts[LORA_ROW] = sum(p.numel() for p in model.parameters() if id(p) in adapters)
    total = sum(counts.values())
    return [{"module": label, "parameters": n, "share": n / total if total else 0.0} for label, n in counts.items()]


# The initialisers a model's construction calls. On a meta tensor (shapes, no values) they have
# nothing to do, yet cost time: meta's normal_ is a Python reference op whose first call imports
# torch._dynamo, seconds at the app's start.
_INITIALISERS = ("normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_", "orthogonal_", "zeros_", "ones_", "constant_")
_skipping = {"lock": threading.Lock(), "depth": 0, "saved": {}}


def _skip_on_meta(initialiser):
    def initialise(tensor, *args, **kwargs):
        return tensor if tensor.is_meta else initialiser(tensor, *args, **kwargs)
    return initialise


@contextlib.contextmanager
def _meta_initialisers_skipped():
    """``torch.nn.init``'s initialisers skip meta tensors for the duration. Any other tensor (a
    model another thread builds meanwhile) is initialised as always; nested uses share one patch."""
    with _skipping["lock"]:
        if _skipping["depth"] == 0:
            _skipping["saved"] = {name: getattr(nn.init, name) for name in _INITIALISERS}
            for name, initialiser in _skipping["saved"].items():
                setattr(nn.init, name, _skip_on_meta(initialiser))
        _skipping["depth"] += 1
    try:
        yield
    finally:
        with _skipping["lock"]:
            _skipping["depth"] -= 1
            if _skipping["depth"] == 0:
                for name, initialiser in _skipping["saved"].items():
                    setattr(nn.init, name, initialiser)


def _meta_model(config: BaseConfig) -> LanguageModel:
    """The model with shapes but no storage: parameter counts of any size at no memory cost."""
    with torch.device("meta"), _meta_initialisers_skipped():
        return build_model(config)


def parameter_count(config: BaseConfig) -> int:
    """Parameters of a configuration, counted on a meta-device model: no weights are made."""
    return _meta_model(config).num_parameters()


def matmul_parameters(model: LanguageModel) -> int:
    """Weights that are multiplied per token (the family's ``matmul_weights``): for the
    transformers every ``nn.Linear`` weight, output head included even when it is tied (the lookup
    and the head are one tensor but the head is a matmul); embedding tables do not count (a lookup
    is indexing). Biases are additions and not counted."""
    return model.matmul_weights()


# --- FLOPs --------------------------------------------------------------------------------------


def flops_per_token(config: BaseConfig, context: int | None = None) -> dict:
    """Analytic FLOPs to process one token at context length ``context`` (default ``block_size``).

    - ``matmul`` = 2 * N_matmul: each weight multiplies the token's activation once, a multiply-add
      being 2 FLOPs (Kaplan et al. 2020, section 2.1; PaLM, Chowdhery et al. 2022, appendix B;
      nanoGPT's ``estimate_mfu``). N_matmul counts the ``nn.Linear`` weights, output head included,
      embedding lookups excluded (``matmul_parameters``).
    - ``attention`` = 2 * 2 * n_layer * T * d_attn: per layer the query of each of T positions is
      dotted with T keys (QK^T) and the T weights average T values (AV), each d_attn = n_head *
      head_dim multiply-adds wide (the real q/k width: ``attn_rank`` per head for low-rank gpt).
      Convention: the full T x T square, not the causal triangle. It is what nanoGPT's estimate
      and PaLM count, and what ``FlopCounterMode`` counts for ``scaled_dot_product_attention`` even
      with ``is_causal=True`` (torch's formula says "we aren't accounting for causal attention");
      the causal kernels really do about half of it.
    - ``forward`` = matmul + attention; ``backward`` = 2 * forward (the gradients with respect to
      the inputs and to the weights each cost one more matmul of the same size); ``training`` =
      forward + backward = 3 * forward, which is the familiar 6N + 12 * n_layer * T * d_attn.

    The bigram model's forward is a table lookup and costs 0 FLOPs by this convention; the n-gram
    model's are its two Linear layers (context embeddings -> hidden -> vocabulary).
    """
    T = config.block_size if context is None else context
    if not 1 <= T <= config.block_size:
        raise ValueError(f"context must be between 1 and block_size {config.block_size}, got {context}")
    model = _meta_model(config)
    n_matmul = matmul_parameters(model)
    matmul = 2 * n_matmul
    attention = model.attention_flops(T)
    forward = matmul + attention
    return {
        "context": T,
        "matmul_parameters": n_matmul,
        "matmul": matmul,
        "attention": attention,
        "forward": forward,
        "backward": 2 * forward,
        "training": 3 * forward,
    }


def model_flops_utilisation(tokens_per_second: float, training_flops_per_token: float, peak_flops: float) -> float:
    """MFU, the one definition the trainer and the benchmarks share (nanoGPT's ``estimate_mfu``,
    PaLM's appendix B): the training FLOPs a second achieves (``flops_per_token(config)["training"]``
    times tokens per second) over the peak of the machine's matmuls
    (``babygpt.machine.matmul_peak_flops``)."""
    return tokens_per_second * training_flops_per_token / peak_flops


# PyTorch's CPU attention kernel has no FLOP formula in FlopCounterMode (it would count 0), so we
# give it the formulas torch uses for its CUDA flash / memory-efficient kernels: the full T x T
# square forward, and a backward that also recomputes QK^T (5 matmuls of that size, 2.5x forward).
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# babygpt.kernels' opt-in OneDNNLinear runs oneDNN's inner product when autograd is off; the counter does not
# know that kernel either. It multiplies every input row by the (out, in) weight: 2 FLOPs per multiply-add.
def _onednn_linear_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    rows = math.prod(input_shape[:-1])
    return 2 * rows * weight_shape[0] * weight_shape[1]


_CPU_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):  # x86 builds of torch
    _CPU_FLOPS[torch.ops.mkldnn._linear_pointwise] = _onednn_linear_flop
# what the counter books under these ops is matrix products (oneDNN's RNN layer: the gates' products)
_MATMUL_OPS = {"mm", "addmm", "matmul", "linear", "_linear_pointwise", "mkldnn_rnn_layer"}


def measured_flops_per_token(model: LanguageModel, context: int | None = None) -> dict:
    """FLOPs per token counted by ``torch.utils.flop_counter.FlopCounterMode`` on real passes.

    One forward (eval mode, no grad) and one forward + backward of the loss (train mode) on a batch
    of 1 x T random ids, each total divided by T. ``matmul`` is what the counter books under
    ``mm``/``addmm`` in the forward, ``attention`` the rest of the forward (the attention kernel,
    or the ``bmm``s of the explicit path used with ``time_weighting`` or attention dropout).
    The counter follows torch's conventions, which ``flops_per_token`` shares: 2 FLOPs per
    multiply-add, full T x T attention with ``is_causal=True``; only its attention backward
    differs (it recomputes QK^T: 2.5x the attention forward where the analytic count takes 2x).

    Gradients are taken with ``torch.autograd.grad``, so the model's ``.grad`` fields, its
    train/eval mode and the CPU random stream are left as they were.
    """
    T = model.config.block_size if context is None else context
    ids = torch.randint(0, model.config.vocab_size, (1, T), generator=torch.Generator().manual_seed(0))
    idx = ids.to(next(model.parameters()).device)
    params = [p for p in model.parameters() if p.requires_grad]
    # fork_rng: the training pass's dropout must not move the caller's random stream
    with torch.random.fork_rng(devices=[]), evaluating(model):
        formulas = {**_CPU_FLOPS, **model.flop_formulas()}
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=formulas) as counter:
            model(idx)
        by_op = counter.get_flop_counts().get("Global", {})  # no entry at all if nothing was counted
        matmul = sum(n for op, n in by_op.items() if str(op).rsplit(".", 1)[-1] in _MATMUL_OPS)
        forward = counter.get_total_flops()
        model.train()
        with FlopCounterMode(display=False, custom_mapping=formulas) as counter:
            _, loss = model(idx, idx)
            if params:
                torch.autograd.grad(loss, params)
        training = counter.get_total_flops()
    return {
        "context": T,
        "matmul": matmul / T,
        "attention": (forward - matmul) / T,
        "forward": forward / T,
        "backward": (training - forward) / T,
        "training": training / T,
    }


# --- scaling law --------------------------------------------------------------------------------

CHINCHILLA_TOKENS_PER_PARAMETER = 20
# The paper's fitted loss L(N, D) = E + A / N^alpha + B / D^beta (its "Approach 3", eq. 10).
CHINCHILLA_FIT = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_fitted_loss(parameters: float, tokens: float) -> float:
    """The paper's fitted loss in nats per token of *its* data (MassiveText, its tokenizer): not
    comparable with a BabyGPT loss; it is used here only for where its minimum lies."""
    f = CHINCHILLA_FIT
    return f["E"] + f["A"] / parameters ** f["alpha"] + f["B"] / tokens ** f["beta"]


def chinchilla_fitted_optimum(budget_flops: float) -> tuple[float, float]:
    """(N, D) minimising the fitted loss under C = 6 N D: N = G (C/6)^a, D = (C/6)^b / G with
    a = beta / (alpha + beta), b = alpha / (alpha + beta), G = (alpha A / (beta B))^(1 / (alpha + beta))."""
    f = CHINCHILLA_FIT
    total = f["alpha"] + f["beta"]
    g = (f["alpha"] * f["A"] / (f["beta"] * f["B"])) ** (1 / total)
    n = g * (budget_flops / 6) ** (f["beta"] / total)
    return n, budget_flops / (6 * n)


def chinchilla(parameters: int, budget_flops: float | None = None) -> dict:
    """The Chinchilla rule (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models").

    The rule: a compute-optimal model sees about 20 training tokens per parameter, D = 20 N, and
    training costs C = 6 N D FLOPs (forward 2N + backward 4N per token). So for ``parameters`` N:
    ``optimal_tokens`` = 20 N and ``optimal_flops`` = 6 N (20 N) = 120 N^2.

    For a FLOP budget C, solving C = 6 N (20 N) gives the compute-optimal size N = sqrt(C / 120)
    and D = 20 N (``compute_optimal_parameters`` / ``_tokens``); ``budget_tokens`` = C / (6 N) is
    how many tokens the given model can train on within the budget.

    The paper's fitted law (``chinchilla_fitted_optimum``) splits the same budget differently:
    ``fitted_parameters`` / ``fitted_tokens``. Its exponents make D/N grow as C^0.1, so small budgets get
    *fewer* tokens per parameter (about 13 at 1e15 FLOPs) and large ones more (about 93 at the
    5.76e23 FLOPs of Gopher). Both are extrapolations this far below the paper's smallest runs.

    N is whatever the caller passes; the paper counts all parameters (embeddings too).
    """
    if parameters <= 0:
        raise ValueError(f"parameters must be positive, got {parameters}")
    tokens = CHINCHILLA_TOKENS_PER_PARAMETER * parameters
    out = {
        "parameters": parameters,
        "tokens_per_parameter": CHINCHILLA_TOKENS_PER_PARAMETER,
        "optimal_tokens": tokens,
        "optimal_flops": 6 * parameters * tokens,
    }
    if budget_flops is not None:
        if budget_flops <= 0:
            raise ValueError(f"budget_flops must be positive, got {budget_flops}")
        best = math.sqrt(budget_flops / (6 * CHINCHILLA_TOKENS_PER_PARAMETER))
        fitted_n, fitted_d = chinchilla_fitted_optimum(budget_flops)
        out.update(
            budget_flops=budget_flops,
            budget_tokens=budget_flops / (6 * parameters),
            compute_optimal_parameters=best,
            compute_optimal_tokens=CHINCHILLA_TOKENS_PER_PARAMETER * best,
            fitted_parameters=fitted_n,
            fitted_tokens=fitted_d,
        )
    return out


def loss_vs_compute_point(model_config: BaseConfig, metrics: dict) -> dict | None:
    """Where a trained model sits on a loss-vs-compute chart: the training FLOPs it took to reach
    its best val loss (tokens seen by then x training FLOPs per token), that loss, and the compute
    at which a model of its size would be Chinchilla-optimal (6 N x 20 N). None without a loss
    history or without FLOPs (the bigram table's lookups cost none)."""
    history = metrics.get("history") or []
    if not history:
        return None
    best = min(history, key=lambda h: h["val_loss"])
    flops = flops_per_token(model_config)["training"] * best["tokens"]
    if flops <= 0:
        return None
    n = parameter_count(model_config)
    return {"flops": flops, "val_loss": best["val_loss"], "parameters": n,
            "optimal_flops": chinchilla(n)["optimal_flops"]}


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (compute, loss) points that no other point beats with less or equal compute."""
    frontier: list[tuple[float, float]] = []
    for flops, loss in sorted(points):
        if not frontier or loss < frontier[-1][1]:
            frontier.append((flops, loss))
    return frontier


# --- memory -------------------------------------------------------------------------------------

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def generation_state(config: BaseConfig, batch_size: int = 1, dtype: str = "float32") -> dict:
    """What generation keeps between steps at full context, the family's ``new_cache``: keys and
    values of every layer for an attention family (``n_kv_head`` heads of them under grouped-query
    attention), the hidden and cell state of an LSTM, nothing for a fixed window. Made on the meta
    device: nothing is allocated. ``{"bytes", "kind"}``."""
    with torch.device("meta"):
        cache = _meta_model(config).to(getattr(torch, dtype)).new_cache(batch_size)
    if cache is None:
        return {"bytes": 0, "kind": None}
    return {"bytes": cache.nbytes(), "kind": cache.kind}


def kv_cache_bytes(config: BaseConfig, batch_size: int = 1, dtype: str = "float32") -> int:
    """The bytes of ``generation_state``."""
    return generation_state(config, batch_size, dtype)["bytes"]


def training_memory(config: BaseConfig, batch_size: int, dtype: str = "float32") -> dict:
    """Estimated bytes of one training step at ``block_size`` tokens per sequence.

    - ``parameters``: 4 bytes each (the trainer keeps fp32 weights; bf16 is autocast only).
    - ``gradients``: 4 bytes per trainable parameter.
    - ``optimizer``: AdamW's two moments, exp_avg and exp_avg_sq, fp32: 8 bytes per parameter.
    - ``activations``: what autograd saves for the backward pass, at its largest (end of the
      forward). Counted tensor by tensor from the model code by each family
      (``model.saved_activations``), per token, with these conventions: a tensor saved by two ops
      is counted once; under autocast the matmul operands are 2 bytes and every Linear saves its
      own bf16 copy of its input, while the residual stream that norms save, their statistics,
      the attention logsumexp and the loss's log-probabilities stay fp32; dropout masks are
      counted as CPU keeps them, a tensor of the input's dtype. For example:
      for the default gpt block that is 16 n_embd values per token (x and the LayerNorm output
      twice, q/k/v 3, attention output 1, MLP hidden 4 + 4) plus statistics, and the final norm,
      head input and B x T x V log-probabilities of the loss. The fused attention kernel keeps no
      T x T matrix; gpt with ``time_weighting`` or attention dropout runs the explicit path, which
      keeps B x n_head x T x T probabilities per layer (fp32 on CPU). Under ``bfloat16`` autocast
      the matmul operands are 2 bytes (residual stream, norm statistics and log-probs stay fp32)
      and autocast also keeps a bf16 copy of every Linear weight. Small B-independent tensors
      (position ids, RoPE tables, the time-weight mask) are left out.
    - ``total``: the sum. It ignores that gradients appear while activations are being freed (so
      it overstates) and the kernels' scratch space (so it understates); for the gpt preset at
      batch 12 it is within 1 % of the peak torch.profiler measures over a real training step.

    The result also has ``activations_per_block`` (bytes of one block) for the UI.
    """
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPE_BYTES)}; got {dtype!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    c = _DTYPE_BYTES[dtype]
    model = _meta_model(config)
    n = model.num_parameters()
    n_trainable = model.num_parameters(trainable_only=True)
    saved = model.saved_activations(c)
    tokens = batch_size * config.block_size
    per_block = int(tokens * sum(saved.per_layer.values()))
    activations = per_block * saved.layers + int(tokens * saved.outside)
    if c < 4:
        activations += model.autocast_weight_bytes()  # autocast's bf16 copies of the weights it casts
    parts = {
        "parameters": 4 * n,
        "gradients": 4 * n_trainable,
        "optimizer": 2 * 4 * n_trainable,
        "activations": activations,
    }
    return {**parts, "total": sum(parts.values()), "activations_per_block": per_block}
