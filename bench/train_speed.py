"""Training-step speed of babygpt's ``gpt`` against ``transformers.GPT2LMHeadModel`` on the CPU.

What it measures
----------------
The wall-clock time of one *training step* -- forward with targets (loss included), backward,
``clip_grad_norm_(1.0)``, fused AdamW step -- for two models of exactly the same shape:

- ``babygpt``: ``babygpt.models.gpt.GPT`` (activation ``gelu``, i.e. exact erf GELU: the default,
  as nanoGPT), and ``babygpt-gelu-tanh``, the same with ``activation="gelu_tanh"``; optimizer from
  ``babygpt.trainer.make_optimizer`` with the default ``TrainConfig`` (fused AdamW on CPU, weight
  decay on Linear weights only);
- ``hf-gelu`` / ``hf-gelu-tanh``: ``transformers.GPT2LMHeadModel`` with
  ``activation_function="gelu"`` and ``"gelu_pytorch_tanh"``, default attention implementation
  (sdpa), tied embeddings, every dropout 0, and an AdamW built the same way (fused, the same
  lr/betas, decay on Linear/Conv1D weights only), so only the model code differs.

Shapes (vocab 65, dropout 0): ``small`` = 4 layers, 4 heads, n_embd 128, T 64, batch 12 (the
``gpt`` preset on nanoGPT's CPU recipe); ``big`` = 6 layers, 6 heads, n_embd 384, T 256, batch 64
(``gpt-shakespeare-char``). Each in fp32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(autocast around the forward and loss, as the trainer does).

All models of a shape live in one process and are measured in interleaved rounds: each round times
``--steps`` steps of every (implementation, precision) in turn, the order reversed every other round,
so machine noise hits every setting alike. A setting's ms/step is the median over ``--repeats``
rounds, after warm-up steps that are not timed.

How to read the table
---------------------
- ``ms/step`` and ``tokens/s`` (= batch * T / step time): lower / higher is better.
- ``vs HF fp32``: speed relative to transformers' *fastest fp32 setting* at that shape
  (``hf_time / time``; > 1 means faster than transformers).
- ``MFU``: model FLOPs utilisation = (FLOPs per step / step time) / peak. FLOPs per step follow
  nanoGPT's ``estimate_mfu`` (PaLM appendix B): ``6 * N * B * T + 12 * n_layer * n_embd * T * B * T``,
  with N = all parameters minus the position embedding (the tied token embedding counts once, as
  it is the output head's matmul). The same count is used for every implementation. Peak = the
  throughput of a large square ``torch.mm`` (2048 x 2048) measured on the spot in this process, in
  fp32 and in bf16 (median of several runs before and after the benchmark). Both MFU columns are
  printed for every row; the meaningful one for a bf16 run is the bf16-peak column.
- ``Goals``: PASS/MISS against the project's targets (fp32 babygpt at least as fast as transformers'
  fastest fp32 setting at both shapes, like for like: babygpt with the activation that setting
  uses, since tanh GELU is cheaper than exact GELU for either; fp32 MFU of the default babygpt
  >= 50 % small and >= 70 % big; bf16 babygpt on the big shape >= 1.8x transformers fp32).

Usage: ``python bench/train_speed.py`` (about 5-8 minutes on 2 cores), ``--quick`` (small shape, a
few steps, under a minute), ``--steps N --repeats N --threads N --shapes small,big --json PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from babygpt.machine import chosen_shapes, cpu_model, load_average, log
from babygpt.models import build_model, make_config  # noqa: E402
from babygpt.trainer import TrainConfig, make_optimizer  # noqa: E402

VOCAB = 65


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


SHAPES = {
    "small": Shape("small", n_layer=4, n_head=4, n_embd=128, T=64, batch=12, warmup=5, steps=10, repeats=15),
    # On 2 quiet cores one step here is ~7 s (fp32) / ~2.5 s (bf16): a round of all 6 settings is
    # ~30 s, so 1 warm-up + 7 rounds plus the small shape is ~5 minutes (more on a busy machine).
    "big": Shape("big", n_layer=6, n_head=6, n_embd=384, T=256, batch=64, warmup=1, steps=1, repeats=7),
}

PRECISIONS = ("fp32", "bf16")
IMPLS = ("babygpt", "babygpt-gelu-tanh", "hf-gelu", "hf-gelu-tanh")
HF_ACTIVATION = {"hf-gelu": "gelu", "hf-gelu-tanh": "gelu_pytorch_tanh"}
BABYGPT_ACTIVATION = {"babygpt": "gelu", "babygpt-gelu-tanh": "gelu_tanh"}
TWIN = {"hf-gelu": "babygpt", "hf-gelu-tanh": "babygpt-gelu-tanh"}  # the same activation in babygpt


# --------------------------------------------------------------------------- models, optimizers


def babygpt_model(shape: Shape, activation: str) -> nn.Module:
    config = make_config(
        "gpt",
        vocab_size=VOCAB,
        block_size=shape.T,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        n_embd=shape.n_embd,
        dropout=0.0,
        activation=activation,
    )
    return build_model(config)


def hf_model(shape: Shape, activation: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=shape.T,
        n_ctx=shape.T,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        activation_function=activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    return model


def hf_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """The twin of ``babygpt.trainer.make_optimizer`` for GPT-2, whose projections are Conv1D."""
    from transformers.pytorch_utils import Conv1D

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decayed = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, (nn.Linear, Conv1D)) and id(m.weight) not in embeddings
    }
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": config.weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=True)


def non_embedding_params(model: nn.Module) -> int:
    """nanoGPT's ``get_num_params(non_embedding=True)``: all (unique) parameters minus wpe."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    wpe = model.transformer.wpe.weight.numel()
    return total - wpe


def flops_per_step(shape: Shape, n_params: int) -> float:
    """nanoGPT ``estimate_mfu`` / PaLM: 6N per token plus the attention score and value matmuls."""
    tokens = shape.batch * shape.T
    return 6 * n_params * tokens + 12 * shape.n_layer * shape.n_embd * shape.T * tokens


class Setting:
    """One (implementation, precision): its own model, optimizer and step function."""

    def __init__(self, impl: str, precision: str, shape: Shape, batch: tuple[torch.Tensor, torch.Tensor]):
        self.impl, self.precision, self.shape = impl, precision, shape
        torch.manual_seed(1337)
        train_config = TrainConfig(batch_size=shape.batch, dtype="float32" if precision == "fp32" else "bfloat16")
        self.grad_clip = train_config.grad_clip
        if impl in BABYGPT_ACTIVATION:
            self.model = babygpt_model(shape, BABYGPT_ACTIVATION[impl])
            self.optimizer = make_optimizer(self.model, train_config, torch.device("cpu"))
        else:
            self.model = hf_model(shape, HF_ACTIVATION[impl])
            self.optimizer = hf_optimizer(self.model, train_config)
        self.model.train()
        self.n_params = non_embedding_params(self.model)
        self.x, self.y = batch
        self.times: list[float] = []  # seconds per step, one entry per round

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_loss(self) -> torch.Tensor:
        if self.impl in BABYGPT_ACTIVATION:
            _, loss = self.model(self.x, self.y)
            return loss
        # GPT-2 shifts labels internally: labels = the input ids.
        return self.model(input_ids=self.x, labels=self.x).loss

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


# --------------------------------------------------------------------------- peak


def mm_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> list[float]:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up (oneDNN primitive creation, page faults)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


# --------------------------------------------------------------------------- benchmark


def bench_shape(shape: Shape, steps: int, repeats: int, warmup: int, log) -> list[Setting]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (shape.batch, shape.T), generator=gen)
    y = torch.randint(0, VOCAB, (shape.batch, shape.T), generator=gen)
    settings = [Setting(impl, prec, shape, (x, y)) for prec in PRECISIONS for impl in IMPLS]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small shape, few steps (< 1 minute)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting per round (default per shape)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds; ms/step is their median")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per setting (default per shape)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--shapes", default=None, help="comma-separated subset of: " + ", ".join(SHAPES))
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc mallopt: never give large freed blocks back to the OS (no page faults on re-allocation); "
        "an experiment, off by default so the models are measured as the trainer runs them",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    import transformers

    shape_names = chosen_shapes(parser, args.shapes, args.quick, SHAPES)

    started = time.perf_counter()
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "loadavg_start": load_average(),
        "keep_freed_memory": args.keep_freed_memory,
    }
    print("# babygpt vs transformers GPT-2: training-step speed (CPU)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")

    peak_samples = {"fp32": mm_gflops(torch.float32), "bf16": mm_gflops(torch.bfloat16)}

    results, all_settings = [], {}
    for name in shape_names:
        base = SHAPES[name]
        steps = args.steps or (3 if args.quick else base.steps)
        repeats = args.repeats or (5 if args.quick else base.repeats)
        warmup = args.warmup if args.warmup is not None else (3 if args.quick else base.warmup)
        all_settings[name] = (bench_shape(base, steps, repeats, warmup, log), steps, repeats, warmup)

    peak_samples["fp32"] += mm_gflops(torch.float32)
    peak_samples["bf16"] += mm_gflops(torch.bfloat16)
    peak = {k: statistics.median(v) for k, v in peak_samples.items()}
    print(
        f"- peak (torch.mm 2048x2048, median of {len(peak_samples['fp32'])}): "
        f"fp32 {peak['fp32']:.1f} GFLOP/s (best {max(peak_samples['fp32']):.1f}), "
        f"bf16 {peak['bf16']:.1f} GFLOP/s (best {max(peak_samples['bf16']):.1f})"
    )
    print(
        "- FLOPs/step = 6*N*B*T + 12*n_layer*n_embd*T*B*T, N = all parameters minus the position "
        "embedding (nanoGPT's convention; the tied wte/lm_head counts once)"
    )
    for name, (settings, steps, repeats, warmup) in all_settings.items():
        s0 = settings[0]
        sh = s0.shape
        print(
            f"- {name}: n_layer {sh.n_layer}, n_head {sh.n_head}, n_embd {sh.n_embd}, T {sh.T}, batch {sh.batch}, "
            f"N = {s0.n_params:,}, {flops_per_step(sh, s0.n_params) / 1e9:.1f} GFLOP/step; "
            f"{warmup} warm-up + {repeats} rounds x {steps} steps per setting"
        )
    hf_attn = {s.impl: getattr(s.model.config, "_attn_implementation", "?")
               for s in next(iter(all_settings.values()))[0] if s.impl in HF_ACTIVATION}
    print(f"- transformers attention implementation: {', '.join(f'{k}={v}' for k, v in hf_attn.items())}")

    print("\n| shape | precision | implementation | ms/step | tokens/s | vs HF fp32 | MFU (fp32 peak) | MFU (bf16 peak) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    by_key, hf_fastest = {}, {}
    for name, (settings, steps, repeats, warmup) in all_settings.items():
        med = {(s.impl, s.precision): statistics.median(s.times) for s in settings}
        hf_ref_impl = min(("hf-gelu", "hf-gelu-tanh"), key=lambda i: med[(i, "fp32")])
        hf_fastest[name] = hf_ref_impl
        hf_ref = med[(hf_ref_impl, "fp32")]
        for s in settings:
            t = med[(s.impl, s.precision)]
            sh = s.shape
            flops = flops_per_step(sh, s.n_params)
            row = {
                "shape": name,
                "precision": s.precision,
                "implementation": s.impl,
                "ms_per_step": t * 1e3,
                "ms_per_step_rounds": [v * 1e3 for v in s.times],
                "tokens_per_s": sh.batch * sh.T / t,
                "vs_hf_fastest_fp32": hf_ref / t,
                "hf_fastest_fp32": hf_ref_impl,
                "mfu_fp32_peak": flops / t / 1e9 / peak["fp32"],
                "mfu_bf16_peak": flops / t / 1e9 / peak["bf16"],
                "flops_per_step": flops,
                "n_params_non_embedding": s.n_params,
            }
            results.append(row)
            by_key[(name, s.precision, s.impl)] = row
            print(
                f"| {name} | {s.precision} | {s.impl} | {row['ms_per_step']:.1f} | {row['tokens_per_s']:,.0f} | "
                f"{row['vs_hf_fastest_fp32']:.2f}x | {100 * row['mfu_fp32_peak']:.1f} % | "
                f"{100 * row['mfu_bf16_peak']:.1f} % |"
            )
        print(f"|  |  | (HF fastest fp32 at {name}: {hf_ref_impl}) |  |  |  |  |  |")

    goals = []

    def goal(text: str, key: tuple, field: str, threshold: float, fmt) -> None:
        row = by_key.get(key)
        if row is None:
            goals.append({"goal": text, "status": "SKIP", "value": None, "threshold": threshold,
                          "shown": "not measured"})
            print(f"- SKIP  {text}: shape not measured")
            return
        value = row[field]
        status = "PASS" if value >= threshold else "MISS"
        goals.append({"goal": text, "status": status, "value": value, "threshold": threshold, "shown": fmt(value)})
        print(f"- {status}  {text}: {fmt(value)}")

    def ratio(v: float) -> str:
        return f"{v:.2f}x"

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    print("\n## Goals\n")
    for name in ("small", "big"):  # like for like: babygpt with the activation transformers was fastest with
        twin = TWIN[hf_fastest[name]] if name in hf_fastest else "babygpt"
        goal(f"fp32 babygpt >= 1.0x transformers' fastest fp32 ({name}; both {BABYGPT_ACTIVATION[twin]})",
             (name, "fp32", twin), "vs_hf_fastest_fp32", 1.0, ratio)
    goal("fp32 babygpt MFU >= 50 % of the fp32 peak (small)", ("small", "fp32", "babygpt"), "mfu_fp32_peak", 0.5, pct)
    goal("fp32 babygpt MFU >= 70 % of the fp32 peak (big)", ("big", "fp32", "babygpt"), "mfu_fp32_peak", 0.7, pct)
    goal("bf16 babygpt >= 1.8x transformers' fastest fp32 (big)", ("big", "bf16", "babygpt"),
         "vs_hf_fastest_fp32", 1.8, ratio)

    elapsed = time.perf_counter() - started
    env["loadavg_end"] = load_average()
    print(f"\n(total wall time {elapsed:.0f} s; load average at start {env['loadavg_start']}, at end "
          f"{env['loadavg_end']}; a load above ~0 besides this run means shared cores and noisy numbers)")
    if args.json:
        payload = {
            "env": env,
            "peak_gflops": peak,
            "peak_gflops_samples": peak_samples,
            "results": results,
            "goals": goals,
            "wall_seconds": elapsed,
            "quick": args.quick,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"(results written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
