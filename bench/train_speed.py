"""Training-step speed of babygpt's ``gpt`` against ``transformers.GPT2LMHeadModel`` on the CPU.

What it measures
----------------
The wall-clock time of one *training step* -- forward with targets (loss included), backward,
``clip_grad_norm_(1.0)``, fused AdamW step -- for models of exactly the same shape:

- ``babygpt``: ``babygpt.models.gpt.GPT`` (activation ``gelu``, i.e. exact erf GELU: the default,
  as nanoGPT), and ``babygpt-gelu-tanh``, the same with ``activation="gelu_tanh"``; optimizer from
  ``babygpt.trainer.make_optimizer`` with the default ``TrainConfig`` (fused AdamW on CPU, weight
  decay on the weight matrices only);
- ``babygpt-before``: the same model built by the model files as they were before hook points and
  plain ``nn.Linear`` (``bench.reference_models``, read from git), the same weights and optimizer:
  what looking inside costs when nothing is looked at (left out where git history is missing);
- ``hf-gelu`` / ``hf-gelu-tanh``: ``transformers.GPT2LMHeadModel`` with
  ``activation_function="gelu"`` and ``"gelu_pytorch_tanh"``, default attention implementation
  (sdpa), tied embeddings, every dropout 0, and an AdamW built the same way (fused, the same
  lr/betas, decay on Linear/Conv1D weights only), so only the model code differs.

Shapes (vocab 65, dropout 0): ``small`` = 4 layers, 4 heads, n_embd 128, T 64, batch 12 (the
``gpt`` preset on nanoGPT's CPU recipe); ``big`` = 6 layers, 6 heads, n_embd 384, T 256, batch 64
(``gpt-shakespeare-char``). Each in fp32 and, where the CPU has bf16 instructions, under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (around the forward and loss, as the trainer
does); elsewhere bf16 is emulated, a hundred times slower, and its rows are left out.

All models of a shape live in one process and are measured in interleaved rounds: each round times
``--steps`` steps of every (implementation, precision) in turn, the order reversed every other round,
so machine noise hits every setting alike. A setting's ms/step is the median over ``--repeats``
rounds, after warm-up steps that are not timed; a ratio between two settings is the median of the
ratios within each round.

How to read the table
---------------------
- ``ms/step`` and ``tokens/s`` (= batch * T / step time): lower / higher is better.
- ``vs HF fp32``: speed relative to transformers' *fastest fp32 setting* at that shape
  (``hf_time / time``; > 1 means faster than transformers).
- ``MFU``: ``babygpt.stats.model_flops_utilisation``, the definition the trainer uses too: training
  FLOPs per token (``babygpt.stats.flops_per_token``: 2 FLOPs per matrix weight, output head
  included, times 3, plus the attention term) times tokens per second, over the peak of
  ``babygpt.machine.measure_matmul_peak`` measured here before and after the benchmark (the best).
  The same count is used for every implementation of a shape.
- ``Goals``: PASS/MISS against the project's targets (fp32 babygpt at least as fast as transformers'
  fastest fp32 setting at both shapes, like for like: babygpt with the activation that setting
  uses, since tanh GELU is cheaper than exact GELU for either; fp32 babygpt within 2 % of the
  pre-redesign model code; fp32 MFU of the default babygpt >= 50 % small and >= 70 % big; bf16
  babygpt on the big shape >= 1.8x transformers fp32).

Usage: ``python -m bench.train_speed`` (about 5-8 minutes on 2 cores), ``--quick`` (small shape, a
few steps, under a minute), ``--steps N --repeats N --threads N --shapes small,big --json PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from babygpt.machine import chosen_shapes, cpu_flags, describe, load_average, log, measure_matmul_peak
from babygpt.models import build_model, make_config
from babygpt.stats import flops_per_token, model_flops_utilisation
from babygpt.trainer import TrainConfig, make_optimizer
from bench.reference_models import BEFORE_REDESIGN, models_at

VOCAB = 65
NATIVE_BF16 = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@dataclass(frozen=True)
class Shape:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    T: int
    batch: int
    warmup: int  # untimed steps per setting
    steps: int  # timed steps per setting per round (default)
    repeats: int  # rounds (default)

    def config(self, activation: str = "gelu", models=None):
        """The babygpt config of this shape (of the ``models`` package given, default today's)."""
        return (models.make_config if models else make_config)(
            "gpt", vocab_size=VOCAB, block_size=self.T, n_layer=self.n_layer, n_head=self.n_head,
            n_embd=self.n_embd, dropout=0.0, activation=activation)


SHAPES = {
    "small": Shape("small", n_layer=4, n_head=4, n_embd=128, T=64, batch=12, warmup=5, steps=10, repeats=15),
    # On 2 quiet cores one step here is ~7 s (fp32) / ~2.5 s (bf16): a round of every setting is
    # ~40 s, so 1 warm-up + 7 rounds plus the small shape is ~6 minutes (more on a busy machine).
    "big": Shape("big", n_layer=6, n_head=6, n_embd=384, T=256, batch=64, warmup=1, steps=1, repeats=7),
}

PRECISIONS = ("fp32", "bf16") if NATIVE_BF16 else ("fp32",)
IMPLS = ("babygpt", "babygpt-gelu-tanh", "babygpt-before", "hf-gelu", "hf-gelu-tanh")
HF_ACTIVATION = {"hf-gelu": "gelu", "hf-gelu-tanh": "gelu_pytorch_tanh"}
BABYGPT_ACTIVATION = {"babygpt": "gelu", "babygpt-gelu-tanh": "gelu_tanh", "babygpt-before": "gelu"}
TWIN = {"hf-gelu": "babygpt", "hf-gelu-tanh": "babygpt-gelu-tanh"}  # the same activation in babygpt


# --------------------------------------------------------------------------- models, optimizers


def hf_model(shape: Shape, activation: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=shape.T, n_ctx=shape.T, n_embd=shape.n_embd,
                        n_layer=shape.n_layer, n_head=shape.n_head, activation_function=activation, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, tie_word_embeddings=True)
    return GPT2LMHeadModel(config)


def linear_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """The twin of ``babygpt.trainer.make_optimizer`` for a model that cannot list its matrices (GPT-2,
    whose projections are Conv1D, and the older babygpt code): decay on Linear/Conv1D weights only."""
    from transformers.pytorch_utils import Conv1D

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decayed = {id(m.weight) for m in model.modules()
               if isinstance(m, (nn.Linear, Conv1D)) and id(m.weight) not in embeddings}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": config.weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=True)


class Setting:
    """One (implementation, precision): its own model, optimizer and step function."""

    def __init__(self, impl: str, precision: str, shape: Shape, batch: tuple[torch.Tensor, torch.Tensor], before):
        self.impl, self.precision, self.shape = impl, precision, shape
        torch.manual_seed(1337)
        train_config = TrainConfig(batch_size=shape.batch, dtype="float32" if precision == "fp32" else "bfloat16")
        self.grad_clip = train_config.grad_clip
        if impl in HF_ACTIVATION:
            self.model = hf_model(shape, HF_ACTIVATION[impl])
            self.optimizer = linear_optimizer(self.model, train_config)
        else:
            models = before if impl == "babygpt-before" else None
            self.model = (models.build_model if models else build_model)(shape.config(BABYGPT_ACTIVATION[impl], models))
            if models is not None:  # the same weights and optimizer groups as today's babygpt: only the code differs
                self.model.load_state_dict(build_model(shape.config()).state_dict())
                self.optimizer = linear_optimizer(self.model, train_config)
            else:
                self.optimizer = make_optimizer(self.model, train_config, torch.device("cpu"))
        self.model.train()
        # The same FLOPs for every implementation of the shape: babygpt's own count.
        self.flops_per_token = flops_per_token(shape.config())["training"]
        self.x, self.y = batch
        self.times: list[float] = []  # seconds per step, one entry per round

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_loss(self) -> torch.Tensor:
        if self.impl in HF_ACTIVATION:  # GPT-2 shifts labels internally: labels = the input ids
            return self.model(input_ids=self.x, labels=self.x).loss
        _, loss = self.model(self.x, self.y)
        return loss

    def step(self) -> float:
        with self.autocast():
            loss = self.forward_loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.item()

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


# --------------------------------------------------------------------------- benchmark


def bench_shape(shape: Shape, steps: int, repeats: int, warmup: int, before) -> list[Setting]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (shape.batch, shape.T), generator=gen)
    y = torch.randint(0, VOCAB, (shape.batch, shape.T), generator=gen)
    impls = [impl for impl in IMPLS if impl != "babygpt-before" or before is not None]
    settings = [Setting(impl, prec, shape, (x, y), before) for prec in PRECISIONS for impl in impls]
    log(f"[{shape.name}] warm-up: {warmup} step(s) per setting")
    for s in settings:
        for _ in range(warmup):
            s.step()
    for r in range(repeats):
        order = settings if r % 2 == 0 else settings[::-1]
        for s in order:
            s.times.append(s.run(steps))
        summary = ", ".join(f"{s.impl}/{s.precision} {s.times[-1] * 1e3:.0f}" for s in settings)
        log(f"[{shape.name}] round {r + 1}/{repeats} (ms/step): {summary}")
    return settings


def paired(setting: Setting, reference: Setting) -> float:
    """Median over rounds of (reference's time / setting's time) in the same round."""
    return statistics.median(ref / own for own, ref in zip(setting.times, reference.times))


def keep_freed_memory() -> None:
    """Raise glibc's mmap and trim thresholds so freed activations are reused, not unmapped.

    By default glibc serves blocks over 32 MiB (its dynamic mmap threshold cap) with ``mmap`` and
    unmaps them on free, so every step page-faults its large activations in again.
    """
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def peaks() -> dict[str, float]:
    """FLOP/s of this machine's matmuls, the MFU denominator (``measure_matmul_peak``)."""
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if NATIVE_BF16 else {})}
    return {name: measure_matmul_peak(torch.device("cpu"), dtype) for name, dtype in dtypes.items()}


def table(all_settings: dict, peak: dict) -> tuple[list[dict], dict, dict]:
    """Print the results table; return its rows, by key, and transformers' fastest fp32 per shape."""
    print("\n| shape | precision | implementation | ms/step | tokens/s | vs HF fp32 | MFU (fp32 peak) |"
          + (" MFU (bf16 peak) |" if "bf16" in peak else ""))
    print("|---|---|---|---:|---:|---:|---:|" + ("---:|" if "bf16" in peak else ""))
    rows, by_key, hf_fastest = [], {}, {}
    for name, settings in all_settings.items():
        by_setting = {(s.impl, s.precision): s for s in settings}
        med = {key: statistics.median(s.times) for key, s in by_setting.items()}
        hf_fastest[name] = min(("hf-gelu", "hf-gelu-tanh"), key=lambda i: med[(i, "fp32")])
        hf_ref = by_setting[(hf_fastest[name], "fp32")]
        for s in settings:
            t = med[(s.impl, s.precision)]
            tokens_per_s = s.shape.batch * s.shape.T / t
            row = {"shape": name, "precision": s.precision, "implementation": s.impl, "ms_per_step": t * 1e3,
                   "ms_per_step_rounds": [v * 1e3 for v in s.times], "tokens_per_s": tokens_per_s,
                   "vs_hf_fastest_fp32": paired(s, hf_ref), "hf_fastest_fp32": hf_fastest[name],
                   "flops_per_token": s.flops_per_token,
                   **{f"mfu_{p}_peak": model_flops_utilisation(tokens_per_s, s.flops_per_token, peak[p]) for p in peak}}
            before = by_setting.get(("babygpt-before", s.precision))
            if before is not None:
                row["vs_before"] = paired(s, before)
            rows.append(row)
            by_key[(name, s.precision, s.impl)] = row
            mfu = " | ".join(f"{100 * row[f'mfu_{p}_peak']:.1f} %" for p in peak)
            print(f"| {name} | {s.precision} | {s.impl} | {row['ms_per_step']:.1f} | {tokens_per_s:,.0f} | "
                  f"{row['vs_hf_fastest_fp32']:.2f}x | {mfu} |")
        print(f"|  |  | (HF fastest fp32 at {name}: {hf_fastest[name]}) |  |  |  |  |" + "  |" * (len(peak) - 1))
    return rows, by_key, hf_fastest


def goals(by_key: dict, hf_fastest: dict) -> list[dict]:
    found = []

    def goal(text: str, key: tuple, field: str, threshold: float, shown, lower_is_better: bool = False) -> None:
        row = by_key.get(key)
        if row is None or field not in row:
            found.append({"goal": text, "status": "SKIP", "value": None, "threshold": threshold,
                          "shown": "not measured here"})
        else:
            value = row[field]
            status = "PASS" if (value <= threshold if lower_is_better else value >= threshold) else "MISS"
            found.append({"goal": text, "status": status, "value": value, "threshold": threshold,
                          "shown": shown(value)})
        print(f"- {found[-1]['status']}  {text}: {found[-1]['shown']}")

    def ratio(v: float) -> str:
        return f"{v:.2f}x"

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    print("\n## Goals\n")
    for name in ("small", "big"):  # like for like: babygpt with the activation transformers was fastest with
        twin = TWIN[hf_fastest[name]] if name in hf_fastest else "babygpt"
        goal(f"fp32 babygpt >= 1.0x transformers' fastest fp32 ({name}; both {BABYGPT_ACTIVATION[twin]})",
             (name, "fp32", twin), "vs_hf_fastest_fp32", 1.0, ratio)
    for name in ("small", "big"):
        goal(f"fp32 babygpt within 2 % of the model code before hook points ({BEFORE_REDESIGN}, {name})",
             (name, "fp32", "babygpt"), "vs_before", 0.98, lambda v: f"{v:.3f}x its speed")
    goal("fp32 babygpt MFU >= 50 % of the fp32 peak (small)", ("small", "fp32", "babygpt"), "mfu_fp32_peak", 0.5, pct)
    goal("fp32 babygpt MFU >= 70 % of the fp32 peak (big)", ("big", "fp32", "babygpt"), "mfu_fp32_peak", 0.7, pct)
    goal("bf16 babygpt >= 1.8x transformers' fastest fp32 (big)", ("big", "bf16", "babygpt"),
         "vs_hf_fastest_fp32", 1.8, ratio)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small shape, few steps (< 1 minute)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting per round (default per shape)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds; ms/step is their median")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per setting (default per shape)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--shapes", default=None, help="comma-separated subset of: " + ", ".join(SHAPES))
    parser.add_argument(
        "--keep-freed-memory", action="store_true",
        help="glibc mallopt: never give large freed blocks back to the OS (no page faults on re-allocation); "
             "an experiment, off by default so the models are measured as the trainer runs them")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    warnings.filterwarnings("ignore")
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    shape_names = chosen_shapes(parser, args.shapes, args.quick, SHAPES)
    before = models_at()

    started = time.perf_counter()
    env = {**describe(), "transformers": transformers.__version__, "keep_freed_memory": args.keep_freed_memory}
    print("# babygpt vs transformers GPT-2: training-step speed (CPU)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    peak_before = peaks()
    all_settings = {}
    for name in shape_names:
        base = SHAPES[name]
        steps = args.steps or (3 if args.quick else base.steps)
        repeats = args.repeats or (5 if args.quick else base.repeats)
        warmup = args.warmup if args.warmup is not None else (3 if args.quick else base.warmup)
        all_settings[name] = bench_shape(base, steps, repeats, warmup, before)
        print(f"- {name}: n_layer {base.n_layer}, n_head {base.n_head}, n_embd {base.n_embd}, T {base.T}, batch "
              f"{base.batch}; {warmup} warm-up + {repeats} rounds x {steps} steps per setting")
    peak = {p: max(value, peaks()[p]) for p, value in peak_before.items()}
    print("- peak (babygpt.machine.measure_matmul_peak, the best before and after): "
          + ", ".join(f"{p} {value / 1e9:.1f} GFLOP/s" for p, value in peak.items()))
    print("- FLOPs per token: babygpt.stats.flops_per_token(config)['training'] (6 N_matmul + attention), the "
          "same for every implementation of a shape; MFU = babygpt.stats.model_flops_utilisation")
    if before is None:
        print(f"- babygpt-before left out: the model code of {BEFORE_REDESIGN} is not in this clone's git history")
    if not NATIVE_BF16:
        print("- bf16 rows left out: this CPU has no bf16 instructions, so bf16 is emulated (about 100x slower)")
    hf_attn = {s.impl: getattr(s.model.config, "_attn_implementation", "?")
               for s in next(iter(all_settings.values())) if s.impl in HF_ACTIVATION}
    print(f"- transformers attention implementation: {', '.join(f'{k}={v}' for k, v in hf_attn.items())}")

    rows, by_key, hf_fastest = table(all_settings, peak)
    found = goals(by_key, hf_fastest)
    elapsed = time.perf_counter() - started
    env["load average at the end"] = load_average()
    print(f"\n(total wall time {elapsed:.0f} s; load average at start {env['load average']}, at end "
          f"{env['load average at the end']}; a load above ~0 besides this run means shared cores and noisy numbers)")
    if args.json:
        payload = {"env": env, "peak_flops": peak, "results": rows, "goals": found, "wall_seconds": elapsed,
                   "quick": args.quick}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"(results written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
