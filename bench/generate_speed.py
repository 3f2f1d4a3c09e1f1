"""Generation speed: babygpt's KV-cached sampler against uncached recompute and ``transformers``.

What it measures
----------------
Tokens per second of sampling ``new`` tokens after a one-token prompt (batch 1, fp32, temperature
1, no top-k/top-p), for three implementations of the same GPT shape (random weights, vocab 65):

- ``babygpt-cached``: ``babygpt.sampling.generate`` with the KV cache (the default), the model
  files as they are (plain ``nn.Linear``: torch's fp32 kernel, MKL on x86);
- ``babygpt-cached-fastest``: the same after ``babygpt.kernels.fastest_linear`` (opt-in) timed
  torch's and oneDNN's one-row product on each of the model's matrices here and kept the faster:
  what that choice is worth on this machine (its choices are printed);
- ``babygpt-before``: the model files as they were before hook points and plain ``nn.Linear``
  (``bench.reference_models``, from git; its ``Linear`` took oneDNN by itself for weights of 512 KB
  and more), the same weights, today's sampler: what the redesign changed (left out where git
  history is missing);
- ``babygpt-uncached``: the same sampler with ``use_cache=False``: every token re-runs the model on
  the whole context, as nanoGPT's ``generate`` does;
- ``hf-generate``: ``transformers.GPT2LMHeadModel.generate(use_cache=True, do_sample=True, top_k=0)``
  with the same shape (GELU, tied head, dropout 0).

The cached sampler and transformers also in bf16 (``babygpt-cached bf16``: the opt-in
``babygpt.kernels.bfloat16_weights`` copy, the Compare tab's "bfloat16" weights; ``hf-generate bf16``:
``model.to(torch.bfloat16)``). At batch 1 every step streams every
weight from memory once; at the big shape the fp32 weights (43 MB) do not fit in a 32 MB L3 cache,
so the speed of the one-row matrix product decides, which is why the ``-fastest`` row is there.
Where the CPU has no bf16 instructions (bf16 is emulated, a hundred times slower than fp32) the
bf16 rows are left out and the report says so.

Shapes: ``small`` = 4 layers, 4 heads, n_embd 128, block 64, 63 new tokens (the ``gpt`` preset);
``big`` = 6 layers, 6 heads, n_embd 384, block 256, 255 new tokens (``gpt-shakespeare-char``). Both
fill the context exactly, so no window slides. All implementations of a shape live in one process
and are timed in interleaved rounds, the order reversed every other round, after an untimed
warm-up. Tokens/s is the median over rounds; a speed-up "vs X" is the median over rounds of the
ratio within each round (paired), so a slow spell of the machine cancels out.

Time to first token
-------------------
For every shipped checkpoint, the time ``babygpt.sampling.stream`` takes to yield its first step
(encode the prompt, run it through the model, sample, and compute the probabilities, entropy and
top-5 the Compare tab shows) -- the figure the Compare tab reports per column. Two prompts: the
Compare tab's default (``"Hamlet:\\n"``) and a prompt that fills the whole context. Median of rounds.

Roofline
--------
In the same rounds, the time to read every weight of the cached model once (a ``sum()`` over each
tensor: memory traffic and next to no arithmetic). A cached step must read them all too, so the
ratio of the two (paired within each round) says how far decoding is from the memory bound.

bf16 against float32
--------------------
For every shipped checkpoint, greedy text from the Compare tab's prompt, 200 tokens, with the float32
weights and with the bf16 copy: the token where the two texts part (bf16 rounds the logits, so a
near tie can flip and the texts then go their own ways), or "same" when they never do.

Where a step's time goes
------------------------
Beside the roofline, in the same rounds, the step's matrix products alone: every ``nn.Linear`` of
the cached model applied to one row, back to back, outside the model. They read every weight once,
as the step does; the step's time beyond theirs is its other operations (norms, attention, GELU,
the cache's writes, module calls), which no faster product can remove.

Compare's five models in one process
------------------------------------
The Compare tab's goal (``bench/app_speed.py``: the five costliest shipped models x 200 tokens
through the app) measured without the app, in interleaved rounds: ``side_by_side`` as the tab calls
it; the forward passes of that generation alone (the same ids fed again, step by step, through the
library's ``Context``: every window it re-encodes and every cached step, no sampling); and, for
reference only, the same ids under a *context shift* (``ContextShift`` below: once the window is
full, keep its last half and re-encode that once), a policy the library does not use because it
changes what a model sees past ``block_size``. The first two show how much of the app's goal the
library alone already takes; the third, what giving up exact re-encoding would buy.

Goals: cached >= 1.5x transformers at both shapes; cached >= 5x uncached at the big shape; a
cached fp32 step <= 1.6x the weight-streaming time at the big shape; bf16 weights >= 1.8x the fp32
cached tokens/s and >= 1.5x transformers bf16 at the big shape; time to first token <= 100 ms for
every shipped model.

Usage: ``python -m bench.generate_speed`` (about 3 minutes on 2 cores), ``--quick`` (small shape,
a few rounds), ``--repeats N --threads N --shapes small,big --compare-tokens N --json PATH``.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from babygpt.checkpoint import load_checkpoint, shipped_checkpoints
from babygpt.kernels import bfloat16_weights, fastest_linear
from babygpt.machine import chosen_shapes, cpu_flags, describe, load_average, log
from babygpt.models import build_model, evaluating, make_config
from babygpt.sampling import Context, generate, side_by_side, stream, token_ids
from bench.reference_models import models_at

ROOT = Path(__file__).resolve().parent.parent

VOCAB = 65
NATIVE_BF16 = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@dataclass(frozen=True)
class Shape:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block: int
    new: int  # tokens to generate after a one-token prompt
    repeats: int


SHAPES = {
    "small": Shape("small", 4, 4, 128, block=64, new=63, repeats=15),
    "big": Shape("big", 6, 6, 384, block=256, new=255, repeats=9),
}
# (implementation, precision). bf16 means the weights themselves are bf16 (``model.to(torch.bfloat16)``):
# at batch 1 a step streams every weight from memory once, so half the bytes is what speeds it up.
BEFORE = models_at()
SETTINGS = (("babygpt-cached", "fp32"), ("babygpt-cached-fastest", "fp32"),
            *((("babygpt-before", "fp32"),) if BEFORE is not None else ()), ("babygpt-uncached", "fp32"),
            ("hf-generate", "fp32"), *((("babygpt-cached", "bf16"), ("hf-generate", "bf16")) if NATIVE_BF16 else ()))


def hf_model(shape: Shape):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=shape.block, n_embd=shape.n_embd, n_layer=shape.n_layer,
                        n_head=shape.n_head, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, tie_word_embeddings=True)
    return GPT2LMHeadModel(config).eval()


class Before(torch.nn.Module):
    """The older model code under today's sampler, which asks for ``max_context`` and passes the
    cache by keyword (the older forward also took ``return_attention``, and computed every position:
    ``last_position_only`` is accepted and ignored, as the sampler reads the last position anyway)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    @property
    def max_context(self) -> int:
        return self.config.block_size

    def new_cache(self, batch_size: int = 1):
        return self.model.new_cache(batch_size)

    def forward(self, idx, targets=None, cache=None, last_position_only=False):
        return self.model(idx, targets, cache=cache)


class Setting:
    def __init__(self, impl: str, precision: str, shape: Shape):
        self.impl, self.precision, self.shape = impl, precision, shape
        self.label = f"{impl} {precision}"
        torch.manual_seed(1337)
        sizes = dict(vocab_size=VOCAB, block_size=shape.block, n_layer=shape.n_layer, n_head=shape.n_head,
                     n_embd=shape.n_embd)
        if impl == "hf-generate":
            self.model = hf_model(shape)
        else:
            self.model = build_model(make_config("gpt", **sizes)).eval()
        if impl == "babygpt-before":  # the same weights in the older code
            older = BEFORE.build_model(BEFORE.make_config("gpt", **sizes))
            older.load_state_dict(self.model.state_dict())
            self.model = Before(older).eval()
        if precision == "bf16":
            self.model = self.model.to(torch.bfloat16) if impl == "hf-generate" else bfloat16_weights(self.model)
        self.kernels = fastest_linear(self.model) if impl == "babygpt-cached-fastest" else {}
        self.times: list[float] = []

    def run(self, seed: int) -> float:
        """Seconds to generate ``shape.new`` tokens; checks that exactly that many came out."""
        start = time.perf_counter()
        if self.impl == "hf-generate":
            one = torch.ones(1, 1, dtype=torch.long)
            out = self.model.generate(0 * one, attention_mask=one,
                                      max_new_tokens=self.shape.new, do_sample=True, use_cache=True, top_k=0,
                                      top_p=1.0, temperature=1.0, pad_token_id=0, eos_token_id=None)
            new = out.size(1) - 1
        else:
            new = len(generate(self.model, [0], self.shape.new, temperature=1.0, seed=seed,
                               use_cache=self.impl != "babygpt-uncached")) - 1
        seconds = time.perf_counter() - start
        if new != self.shape.new:
            raise RuntimeError(f"{self.impl} generated {new} tokens, expected {self.shape.new}")
        return seconds


def streaming_seconds(model, repeats: int = 20) -> float:
    """The memory roofline of one decoding step: the time to read every weight once (a ``sum()``
    over each tensor, which does next to no arithmetic), median of ``repeats``."""
    weights = [p.detach() for p in model.parameters()]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for w in weights:
            w.sum()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def products_seconds(model, repeats: int = 20) -> float:
    """The matrix products of one decoding step alone: every ``nn.Linear`` of the model applied to
    one row, back to back, outside the model (median of ``repeats``)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    rows = [torch.randn(1, 1, layer.in_features) for layer in layers]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for layer, row in zip(layers, rows):
            torch.nn.functional.linear(row, layer.weight, layer.bias)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_shape(shape: Shape, repeats: int, log) -> dict[tuple[str, str], Setting]:
    settings = {key: Setting(*key, shape) for key in SETTINGS}
    with torch.no_grad():
        for s in settings.values():
            s.run(seed=0)  # warm-up
        cached = settings[("babygpt-cached", "fp32")]
        cached.streaming, cached.products = [], []
        for r in range(repeats):
            order = list(settings.values()) if r % 2 == 0 else list(settings.values())[::-1]
            for s in order:
                s.times.append(s.run(seed=r))
            cached.streaming.append(streaming_seconds(cached.model))  # in the same round as the steps
            cached.products.append(products_seconds(cached.model))
            log(f"[{shape.name}] round {r + 1}/{repeats} (tok/s): "
                + ", ".join(f"{s.label} {shape.new / s.times[-1]:.0f}" for s in settings.values()))
    return settings


def paired_speedup(setting: Setting, reference: Setting) -> float:
    """Median over rounds of (reference's time / setting's time) within the same round.

    The two ran back to back, so a slow spell of this shared machine slows both and cancels out
    of the ratio, where a ratio of two medians taken at different moments would keep it.
    """
    return statistics.median(ref / own for own, ref in zip(setting.times, reference.times))


def first_token_seconds(checkpoint, prompt: str) -> float:
    start = time.perf_counter()
    next(stream(checkpoint.model, checkpoint.tokenizer, prompt, 1, temperature=0.8, seed=0))
    return time.perf_counter() - start


def bench_first_token(repeats: int, log) -> list[dict]:
    index = json.loads((ROOT / "checkpoints" / "index.json").read_text())
    names = [entry["name"] for entry in index["checkpoints"]]
    corpus = (ROOT / "data" / "shakespeare.txt").read_text(encoding="utf-8")
    rows = []
    for name in names:
        checkpoint = load_checkpoint(ROOT / "checkpoints" / name)
        block = checkpoint.model.config.block_size
        full = checkpoint.tokenizer.decode(checkpoint.tokenizer.encode(corpus[:20 * block])[:block])
        row = {"model": name, "block_size": block}
        for label, prompt in (("default prompt", "Hamlet:\n"), ("full context", full)):
            first_token_seconds(checkpoint, prompt)  # warm-up
            row[label] = statistics.median(first_token_seconds(checkpoint, prompt) for _ in range(repeats))
        log(f"[first token] {name}: "
            + ", ".join(f"{k} {row[k] * 1e3:.1f} ms" for k in ("default prompt", "full context")))
        rows.append(row)
    return rows


def where_bf16_parts(new_tokens: int, log) -> list[dict]:
    """Per shipped model: greedy ids with float32 and with bf16 weights, and the first new token
    where they differ (None: the same all along)."""
    index = json.loads((ROOT / "checkpoints" / "index.json").read_text())
    rows = []
    for name in (entry["name"] for entry in index["checkpoints"]):
        checkpoint = load_checkpoint(ROOT / "checkpoints" / name)
        prompt = checkpoint.tokenizer.encode("Hamlet:\n")
        texts = {}
        for precision, model in (("fp32", checkpoint.model), ("bf16", bfloat16_weights(checkpoint.model))):
            texts[precision] = [t for t, _, _ in token_ids(model, prompt, new_tokens, temperature=0.0)]
        parted = next((i for i, (a, b) in enumerate(zip(texts["fp32"], texts["bf16"])) if a != b), None)
        same = checkpoint.tokenizer.decode(texts["fp32"][:parted] if parted is not None else texts["fp32"])
        rows.append({"model": name, "parts_at": parted, "tokens": new_tokens, "common_text": same})
        log(f"[bf16 vs fp32] {name}: " + ("same over all" if parted is None else f"parts at new token {parted + 1}"))
    return rows


class ContextShift(Context):
    """A reference, not the library's policy: once the window is full, keep its last half,
    re-encode that once, and go on with the cache until the window is full again (llama.cpp calls
    it a context shift). One re-encode then serves ``block_size / 2`` steps instead of one, but past
    ``block_size`` the model sees between half and all of its context where the library's always sees
    all of it, so cached text no longer equals uncached text (issue 4 asks that it does)."""

    @torch.inference_mode()
    def next_logits(self, ids: list[int]) -> torch.Tensor:
        if self.cache.length == 0 or len(ids) - self.window_start > self.max_context:
            keep = self.max_context // 2 if self.cache.length else self.max_context
            self.window_start = max(0, len(ids) - keep)
            self.cache.reset()
            self.encodes += 1
        new = ids[self.window_start + self.cache.length:]
        logits, _ = self.model(torch.tensor([new], device=self.device), cache=self.cache, last_position_only=True)
        return logits[0, -1]


def forwards_seconds(models: dict, ids: dict, policy) -> tuple[float, int]:
    """Seconds to feed each model its ids again, one step at a time, through ``policy`` (a
    ``Context``): the forward passes of a generation with no sampling. Also the re-encodes made."""
    seconds, encodes = 0.0, 0
    for name, (model, _) in models.items():
        prompt, sequence = ids[name]
        with evaluating(model):
            start = time.perf_counter()
            context = policy(model)
            for end in range(prompt, len(sequence)):
                context.next_logits(sequence[:end])
            seconds += time.perf_counter() - start
        encodes += context.encodes
    return seconds, encodes


def bench_compare(new_tokens: int, repeats: int, log) -> dict:
    """Compare's five models in one process: ``side_by_side`` one token a turn and as the tab calls
    it, its forward passes alone, and the same ids under a context shift (reference); interleaved
    rounds, medians."""
    # The goal's models and prompt, loaded as the app loads them (the adapter on its shipped base,
    # unmerged). These imports bring in gradio (babygpt.ui), which the rest of this benchmark does not need.
    from babygpt.ui.compare_tab import TOKENS_PER_TURN
    from babygpt.ui.models import load
    from bench.app_speed import COMPARE_MODELS, PROMPT

    shipped = shipped_checkpoints()
    checkpoints = {name: load(shipped[name]) for name in COMPARE_MODELS}
    models = {name: (checkpoint.model, checkpoint.tokenizer) for name, checkpoint in checkpoints.items()}
    settings = dict(temperature=1.0, top_k=0, top_p=1.0)  # as bench/app_speed.py asks the app
    ids: dict = {}  # name -> (prompt length, prompt + new ids) of the round's generation
    by_seed: dict = {}  # seed -> the ids its first generation wrote: the other must write the same
    encodes: dict = {}  # policy -> the window re-encodes its last replay made

    def library(seed: int, turn: int) -> float:
        start = time.perf_counter()
        results = collections.deque(side_by_side(models, PROMPT, new_tokens, tokens_per_turn=turn, seed=seed,
                                                 **settings), 1)[0]
        seconds = time.perf_counter() - start
        written = {}
        for name, (_, tokenizer) in models.items():
            prompt = tokenizer.encode(PROMPT)
            written[name] = (len(prompt), prompt + [step.token_id for step in results[name]["steps"]])
        if by_seed.setdefault(seed, written) != written:
            raise RuntimeError(f"with {turn} tokens a turn the models wrote other tokens (seed {seed})")
        ids.update(written)
        return seconds

    def replay(policy, name: str) -> float:
        seconds, encodes[name] = forwards_seconds(models, ids, policy)
        return seconds

    runs = {"side_by_side, 1 token a turn": lambda seed: library(seed, 1),
            f"side_by_side, {TOKENS_PER_TURN} tokens a turn (the Compare tab)": lambda seed: library(seed,
                                                                                                 TOKENS_PER_TURN),
            "forward passes alone": lambda _: replay(Context, "exact"),
            "forward passes alone, context shift (reference)": lambda _: replay(ContextShift, "context shift")}
    labels = list(runs)
    for label in labels:
        runs[label](0)  # warm-up
    times = {label: [] for label in labels}
    for r in range(repeats):
        # the two generations first, in either order (the same tokens), then the replays of them
        order = labels[:2] if r % 2 == 0 else labels[1::-1]
        order += labels[2:] if r % 2 == 0 else labels[:1:-1]
        for label in order:
            times[label].append(runs[label](r))
        log(f"[compare] round {r + 1}/{repeats} (s): " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()))
    return {"models": list(models), "prompt": PROMPT, "new_tokens": new_tokens, "rounds": repeats, "encodes": encodes,
            "tokens_per_turn": TOKENS_PER_TURN,
            "block_sizes": {name: model.config.block_size for name, (model, _) in models.items()},
            "prompt_tokens": {name: prompt for name, (prompt, _) in ids.items()},
            "seconds": {label: statistics.median(values) for label, values in times.items()},
            "rounds_seconds": times}


def info(goals: list, text: str, shown: str) -> None:
    """A figure with no target, in the goals' list (status INFO), so ``python -m bench`` gathers it."""
    goals.append({"goal": text, "status": "INFO", "value": None, "shown": shown})
    print(f"- INFO  {text}: {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small shape, 3 rounds")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default per shape)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--shapes", default=None, help="comma-separated subset of: " + ", ".join(SHAPES))
    parser.add_argument("--compare-tokens", type=int, default=None,
                        help="new tokens per model in the one-process Compare (200; --quick 80; 0: none)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    shape_names = chosen_shapes(parser, args.shapes, args.quick, SHAPES)

    env = {**describe(), "transformers": transformers.__version__}
    print("# babygpt generation speed: KV cache vs uncached vs transformers (CPU, batch 1)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")

    started = time.perf_counter()
    rows, by_key = [], {}
    for name in shape_names:
        shape = SHAPES[name]
        repeats = args.repeats or (3 if args.quick else shape.repeats)
        settings = bench_shape(shape, repeats, log)
        print(f"- {name}: n_layer {shape.n_layer}, n_head {shape.n_head}, n_embd {shape.n_embd}, block {shape.block}, "
              f"{shape.new} new tokens after a 1-token prompt; median of {repeats} interleaved rounds")
        chosen = settings[("babygpt-cached-fastest", "fp32")].kernels
        print(f"- {name}, babygpt.kernels.fastest_linear chose: "
              + ", ".join(f"{out}x{inp} {r['kernel']} ({r['plain_us']:.0f} / {r['onednn_us']:.0f} / "
                          f"{r['column_us']:.0f} us plain / oneDNN / column-major)"
                          for (out, inp), r in chosen.items()) if chosen else "- oneDNN is not available here")
        for (impl, precision), s in settings.items():
            seconds = statistics.median(s.times)
            row = {"shape": name, "implementation": impl, "precision": precision, "tokens_per_s": shape.new / seconds,
                   "ms_per_token": seconds / shape.new * 1e3, "rounds_tokens_per_s": [shape.new / t for t in s.times]}
            rows.append(row)
            by_key[(name, impl, precision)] = row
        cached = settings[("babygpt-cached", "fp32")]
        by_key[(name, "babygpt-cached", "fp32")]["roofline_ratio"] = statistics.median(
            (t / shape.new) / streamed for t, streamed in zip(cached.times, cached.streaming))
        by_key[(name, "babygpt-cached", "fp32")]["streaming_ms"] = statistics.median(cached.streaming) * 1e3
        by_key[(name, "babygpt-cached", "fp32")]["products_ms"] = statistics.median(cached.products) * 1e3
        by_key[(name, "babygpt-cached", "fp32")]["products_ratio"] = statistics.median(
            products / streamed for products, streamed in zip(cached.products, cached.streaming))
        for (impl, precision), s in settings.items():
            row = by_key[(name, impl, precision)]
            row["vs_hf_fp32"] = paired_speedup(s, settings[("hf-generate", "fp32")])
            row["vs_hf_same_precision"] = paired_speedup(s, settings[("hf-generate", precision)])
            row["vs_uncached"] = paired_speedup(s, settings[("babygpt-uncached", "fp32")])
            row["vs_cached_fp32"] = paired_speedup(s, settings[("babygpt-cached", "fp32")])
    first_token = bench_first_token(3 if args.quick else 9, log)
    compare_tokens = args.compare_tokens if args.compare_tokens is not None else (80 if args.quick else 200)
    compare_rounds = args.repeats or (3 if args.quick else 5)
    compare = bench_compare(compare_tokens, compare_rounds, log) if compare_tokens else None
    parting = where_bf16_parts(50 if args.quick else 200, log) if NATIVE_BF16 else []
    env["load average at the end"] = load_average()
    env["seconds"] = round(time.perf_counter() - started, 1)
    print(f"- load average at the end: {env['load average at the end']}; {env['seconds']} s in all")
    if not NATIVE_BF16:
        print("- bf16 rows left out: this CPU has no bf16 instructions, so bf16 is emulated (about 100x slower)")

    print("\n| shape | implementation | precision | tokens/s | ms/token | vs transformers, same precision "
          "| vs transformers fp32 | vs uncached fp32 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['shape']} | {row['implementation']} | {row['precision']} | {row['tokens_per_s']:,.0f} | "
              f"{row['ms_per_token']:.2f} | {row['vs_hf_same_precision']:.2f}x | {row['vs_hf_fp32']:.2f}x | "
              f"{row['vs_uncached']:.2f}x |")
    print("\n| shape | weights | streaming them once (a sum over each) | the step's products alone "
          "| cached fp32 step | products vs streaming | roofline ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in shape_names:
        row = by_key[(name, "babygpt-cached", "fp32")]
        megabytes = sum(p.numel() * 4 for p in Setting("babygpt-cached", "fp32", SHAPES[name]).model.parameters()) / 1e6
        print(f"| {name} | {megabytes:.1f} MB | {row['streaming_ms']:.2f} ms | {row['products_ms']:.2f} ms | "
              f"{row['ms_per_token']:.2f} ms | {row['products_ratio']:.2f}x | {row['roofline_ratio']:.2f}x |")
    if compare:
        exact, shifted = compare["encodes"]["exact"], compare["encodes"]["context shift"]
        print(f"\n| Compare in one process: {', '.join(compare['models'])} x {compare['new_tokens']} tokens "
              f"after {compare['prompt']!r} (median of {compare['rounds']} rounds) | seconds | window re-encodes |")
        print("|---|---:|---:|")
        for label, seconds in compare["seconds"].items():
            encodes = shifted if "context shift" in label else exact
            print(f"| {label} | {seconds:.2f} | {encodes} |")
    if parting:
        print(f"\n| shipped model | greedy text, bf16 weights vs float32 ({parting[0]['tokens']} tokens after "
              "'Hamlet:\\n') | the text they share |")
        print("|---|---|---|")
    for row in parting:
        where = "the same all along" if row["parts_at"] is None else f"parts at new token {row['parts_at'] + 1}"
        print(f"| {row['model']} | {where} | {row['common_text'][-40:]!r} |")
    print("\n| shipped model | block | first token, default prompt | first token, full context |")
    print("|---|---:|---:|---:|")
    for row in first_token:
        print(f"| {row['model']} | {row['block_size']} | {row['default prompt'] * 1e3:.1f} ms | "
              f"{row['full context'] * 1e3:.1f} ms |")

    goals = []

    def goal(text: str, value: float | None, threshold: float, unit: str, higher_is_better: bool = True) -> None:
        if value is None:
            status = "SKIP"
        else:
            status = "PASS" if (value >= threshold if higher_is_better else value <= threshold) else "MISS"
        shown = "not measured" if value is None else (f"{value:.2f}{unit} (goal {'≥' if higher_is_better else '≤'} "
                                                      f"{threshold}{unit})")
        goals.append({"goal": text, "status": status, "value": value, "threshold": threshold, "shown": shown})
        print(f"- {status}  {text}: {shown}")

    print("\n## Goals\n")
    for name in ("small", "big"):
        row = by_key.get((name, "babygpt-cached", "fp32"))
        goal(f"cached vs transformers generate, {name}, fp32", row and row["vs_hf_same_precision"], 1.5, "x")
    row = by_key.get(("big", "babygpt-cached", "fp32"))
    goal("cached vs uncached, big, fp32", row and row["vs_uncached"], 5.0, "x")
    goal("fp32 cached step vs streaming the weights once (roofline ratio), big", row and row["roofline_ratio"], 1.6,
         "x", higher_is_better=False)
    row = by_key.get(("big", "babygpt-cached", "bf16"))
    goal("bf16 weights vs fp32 cached tokens/s, big", row and row["vs_cached_fp32"], 1.8, "x")
    goal("cached bf16 vs transformers bf16, big", row and row["vs_hf_same_precision"], 1.5, "x")
    slowest = max((max(r["default prompt"], r["full context"]) for r in first_token), default=None)
    goal("slowest time to first token of a shipped model", slowest and slowest * 1e3, 100.0, " ms",
         higher_is_better=False)
    row = by_key.get(("big", "babygpt-cached", "fp32"))
    if row:
        info(goals, "the big step's matrix products alone vs streaming the weights once (no target)",
             f"{row['products_ratio']:.2f}x (the whole step {row['roofline_ratio']:.2f}x)")
    if compare:
        seconds = compare["seconds"]
        tab = f"side_by_side, {compare['tokens_per_turn']} tokens a turn (the Compare tab)"
        info(goals, f"Compare's {len(compare['models'])} models x {compare['new_tokens']} tokens in one process, "
             "no app (the app's goal is 1.5 s; no target here)",
             f"side_by_side {seconds[tab]:.2f} s ({seconds['side_by_side, 1 token a turn']:.2f} s one token a turn), "
             f"its forward passes alone {seconds['forward passes alone']:.2f} s; with a context shift (reference) "
             f"{seconds['forward passes alone, context shift (reference)']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows, "first_token": first_token,
                                               "bf16_parting": parting, "compare": compare, "goals": goals},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
