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

import math
import re

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from .models import BaseConfig, LanguageModel, build_model, family_of

# --- parameters ---------------------------------------------------------------------------------

# (pattern on a parameter's name, row label); the first match wins, "{}" is the block number.
# Names follow the model files: nanoGPT's for gpt, transformers' Llama names for llama.
_BLOCK = r"(?:transformer\.h|layers)\.(\d+)\."
_ROWS = [
    (r".*\.lora_[AB]\.", "LoRA adapters"),
    (r"transformer\.wte\.|embed_tokens\.|embedding\.", "token embedding"),
    (r"transformer\.wpe\.", "position embedding"),
    (_BLOCK + r"(?:attn|self_attn)\.log_time_weight$", "block {} time weights"),
    (_BLOCK + r"(?:attn|self_attn)\.", "block {} attention"),
    (_BLOCK + r"mlp\.", "block {} MLP"),
    (_BLOCK + r"(?:ln_\d|input_layernorm|post_attention_layernorm)\.", "block {} norms"),
    (r"transformer\.ln_f\.|norm\.", "final norm"),
    (r"lm_head\.|head\.", "output head"),
    (r"table\.", "bigram table"),
    (r"hidden\.", "hidden layer"),
]


def _row_label(name: str) -> str:
    for pattern, label in _ROWS:
        match = re.match(pattern, name)
        if match:
            return label.format(*match.groups())
    return name.rsplit(".", 1)[0]  # a module no rule knows keeps its own name


def parameter_breakdown(model: nn.Module) -> list[dict]:
    """Parameters per readable group, in the model's order: ``[{"module", "parameters", "share"}]``.

    Groups: token embedding, position embedding (gpt), then per block its attention, time weights
    (gpt ``time_weighting``), MLP and norms, then the final norm and the output head. A head tied
    to the token embedding is listed as "output head (tied to token embedding)" with 0 parameters:
    its tensor is already counted once under the embedding, as ``model.num_parameters()`` counts
    it, so the rows always sum to ``model.num_parameters()``. ``share`` is the row's fraction of it.
    """
    counts: dict[str, int] = {}
    label_of: dict[int, str] = {}  # id(parameter) -> the row it was counted in
    for name, p in model.named_parameters(remove_duplicate=False):
        label = _row_label(name)
        if id(p) in label_of:  # a tied weight: a second name for a tensor already counted
            if label not in counts:
                counts[f"{label} (tied to {label_of[id(p)]})"] = 0
            continue
        label_of[id(p)] = label
        counts[label] = counts.get(label, 0) + p.numel()
    total = sum(counts.values())
    return [
        {"module": label, "parameters": counts[label], "share": counts[label] / total if total else 0.0}
        for label in _in_reading_order(list(counts))
    ]


def _in_reading_order(labels: list[str]) -> list[str]:
    """Model order, but inside a block always attention, time weights, MLP, norms."""
    within = ["attention", "time weights", "MLP", "norms"]
    first_seen: dict[str, int] = {}
    keys = {}
    for i, label in enumerate(labels):
        match = re.fullmatch(r"(block \d+) (.+)", label)
        group, part = (match[1], within.index(match[2])) if match else (label, 0)
        keys[label] = (first_seen.setdefault(group, i), part)
    if "LoRA adapters" in keys:  # the added weights, after the base model they adapt
        keys["LoRA adapters"] = (len(labels), 0)
    return sorted(labels, key=keys.__getitem__)


def _meta_model(config: BaseConfig) -> LanguageModel:
    """The model with shapes but no storage: parameter counts of any size at no memory cost."""
    with torch.device("meta"):
        return build_model(config)


def parameter_count(config: BaseConfig) -> int:
    """Parameters of a configuration, counted on a meta-device model: no weights are made."""
    return _meta_model(config).num_parameters()


def matmul_parameters(model: nn.Module) -> int:
    """Weights that are multiplied per token: every ``nn.Linear`` weight, output head included.

    A tied head counts here (the lookup and the head are one tensor but the head is a matmul);
    embedding tables do not (a lookup is indexing). Biases are additions and not counted.
    """
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


# --- FLOPs --------------------------------------------------------------------------------------


def _attention_width(config: BaseConfig) -> tuple[int, int]:
    """(n_layer, n_head * q/k head size) of a transformer config; (0, 0) for models without attention.

    gpt's ``head_dim`` is ``attn_rank`` for low-rank attention, else ``n_embd / n_head``; llama's
    query heads all attend (grouped-query attention shares K/V heads but computes every query's
    scores), so the width is ``n_head * head_dim`` whatever ``n_kv_head`` is.
    """
    if not hasattr(config, "n_head"):
        return 0, 0
    return config.n_layer, config.n_head * config.head_dim


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
    n_matmul = matmul_parameters(_meta_model(config))
    n_layer, d_attn = _attention_width(config)
    matmul = 2 * n_matmul
    attention = 2 * 2 * n_layer * T * d_attn
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


# PyTorch's CPU attention kernel has no FLOP formula in FlopCounterMode (it would count 0), so we
# give it the formulas torch uses for its CUDA flash / memory-efficient kernels: the full T x T
# square forward, and a backward that also recomputes QK^T (5 matmuls of that size, 2.5x forward).
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# babygpt's Linear runs on oneDNN when autograd is off (see models/linear.py); the counter does not
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
_MATMUL_OPS = {"mm", "addmm", "matmul", "linear", "_linear_pointwise"}


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
    was_training = model.training
    # fork_rng: the training pass's dropout must not move the caller's random stream
    with torch.random.fork_rng(devices=[]):
        try:
            model.eval()
            with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CPU_FLOPS) as counter:
                model(idx)
            by_op = counter.get_flop_counts().get("Global", {})  # no entry at all if nothing was counted
            matmul = sum(n for op, n in by_op.items() if str(op).rsplit(".", 1)[-1] in _MATMUL_OPS)
            forward = counter.get_total_flops()
            model.train()
            with FlopCounterMode(display=False, custom_mapping=_CPU_FLOPS) as counter:
                _, loss = model(idx, idx)
                if params:
                    torch.autograd.grad(loss, params)
            training = counter.get_total_flops()
        finally:
            model.train(was_training)
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


def _saved_per_token(config: BaseConfig, c: int) -> tuple[dict[str, float], float]:
    """Bytes autograd keeps per token: (rows of one block, everything outside the blocks).

    ``c`` is the byte size of tensors the matmuls see (2 under bf16 autocast); the residual stream
    that norms save, their statistics, the attention logsumexp and the log-probabilities of the
    loss stay fp32 (4 bytes) under autocast. The rows mirror the model code, tensor by tensor; a
    tensor saved by two ops is counted once. Under autocast every Linear saves its own bf16 copy
    of its input, so an input read by q, k and v projections is counted once in fp32, thrice in bf16.
    Dropout masks are counted as CPU keeps them: a tensor of the input's dtype.
    """
    f, ids = 4, 8  # fp32; int64 token ids (embedding indices and loss targets)
    bf16 = c < 4
    T = config.block_size
    family = family_of(config)
    drop = getattr(config, "dropout", 0.0) > 0
    if family == "bigram":
        return {}, 2 * ids + config.vocab_size * f
    if family == "ngram":
        context, hidden = config.n - 1, config.n_hidden
        # window ids, hidden input, tanh output (= head input); with dropout its mask and output
        outside = context * ids + context * config.n_embd * c + hidden * c + (2 * hidden * c if drop else 0)
        return {}, outside + config.vocab_size * f + ids
    C, H = config.n_embd, config.n_head
    A = H * config.head_dim  # width of q (and of the attention output)
    block: dict[str, float] = {}
    if family == "gpt":
        sublayers = 2 if config.feed_forward else 1  # attention, and the MLP when there is one
        if config.layer_norm:  # LayerNorm keeps its input, its mean and 1/std
            block["norm inputs (residual stream, fp32)"] = sublayers * C * f
            block["norm statistics"] = sublayers * 2 * f
        block["matmul inputs (norm outputs, or x without norms)"] = sublayers * C * c  # c_attn, c_fc
        kv = 2 * A  # k and v are as wide as q in gpt
        fused = not config.time_weighting and not drop
        mlp = {"MLP hidden (before and after GELU)": 2 * 4 * C * c} if config.feed_forward else {}
        resid_drops = sublayers * C * c if drop else 0
    else:  # llama: RMSNorm keeps its input, 1/rms and the normalised x (all fp32)
        hidden = config.hidden_size
        block["norm inputs (residual stream, fp32)"] = 2 * C * f
        block["norm statistics and normalised x"] = 2 * (f + C * f)
        # q, k, v read the first norm's output; gate and up the second's (own bf16 copies under autocast)
        block["matmul inputs (norm outputs)"] = (3 + 2 if bf16 else 2) * C * c
        kv = 2 * config.n_kv_head * config.head_dim
        fused = not drop
        mlp = {"MLP hidden (gate, SiLU, up, product)": 4 * hidden * c}
        resid_drops = C * c if drop else 0
    if fused:  # the fused kernel keeps q, k, v, its output and a logsumexp per head: no T x T matrix
        block["attention q, k, v"] = (A + kv) * c
        block["attention output"] = A * c
        block["attention logsumexp"] = H * f
    else:  # the explicit path: q, k, v copies (K/V heads repeated for GQA) and T x T probabilities,
        # in fp32 even under autocast (PyTorch's CPU math path upcasts bf16)
        block["attention q, k, v"] = 3 * A * f
        block["attention output"] = A * c
        # per token a row of T probabilities per head; with dropout also its mask and the dropped copy
        block["attention probabilities (T x T)"] = (3 if drop else 1) * H * T * f
    block.update(mlp)
    if resid_drops:
        block["dropout masks"] = resid_drops
    outside = ids + (C * c if drop else 0)  # token ids; the embedding dropout's mask
    if family == "gpt" and config.layer_norm or family == "llama":
        outside += C * f + (2 * f if family == "gpt" else f + C * f)  # final norm input and statistics
    outside += C * c + config.vocab_size * f + ids  # head input, log-probabilities, targets
    return block, outside


def kv_cache_bytes(config: BaseConfig, batch_size: int = 1, dtype: str = "float32") -> int:
    """What sampling's KV cache holds at full context: keys and values of every layer, for
    ``n_kv_head`` heads (grouped-query attention caches fewer heads than it queries with)."""
    if family_of(config) not in ("gpt", "llama"):
        return 0  # nothing to cache: the bigram and n-gram models look at a fixed window
    heads = getattr(config, "n_kv_head", config.n_head)
    return 2 * config.n_layer * heads * config.head_dim * config.block_size * batch_size * _DTYPE_BYTES[dtype]


def training_memory(config: BaseConfig, batch_size: int, dtype: str = "float32") -> dict:
    """Estimated bytes of one training step at ``block_size`` tokens per sequence.

    - ``parameters``: 4 bytes each (the trainer keeps fp32 weights; bf16 is autocast only).
    - ``gradients``: 4 bytes per trainable parameter.
    - ``optimizer``: AdamW's two moments, exp_avg and exp_avg_sq, fp32: 8 bytes per parameter.
    - ``activations``: what autograd saves for the backward pass, at its largest (end of the
      forward). Counted per block tensor by tensor from the model code (see ``_saved_per_token``):
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
    block, outside = _saved_per_token(config, c)
    tokens = batch_size * config.block_size
    per_block = int(tokens * sum(block.values()))
    activations = per_block * getattr(config, "n_layer", 0) + int(tokens * outside)
    if c < 4:
        activations += 2 * matmul_parameters(model)  # autocast's bf16 copies of the Linear weights
    parts = {
        "parameters": 4 * n,
        "gradients": 4 * n_trainable,
        "optimizer": 2 * 4 * n_trainable,
        "activations": activations,
    }
    return {**parts, "total": sum(parts.values()), "activations_per_block": per_block}
