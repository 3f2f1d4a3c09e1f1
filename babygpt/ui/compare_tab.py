"""Compare tab: one prompt, several models, outputs streaming side by side.

Every token is coloured by how likely the model thought it was (or by how unsure the model was,
the entropy of its distribution); hovering shows the model's five likeliest tokens at that step.
With one seed all models share the same random draw at every step, so the columns differ where the
models do, not where the dice do.

A LoRA adapter is a model like any other here, so "base vs base + adapter" is two columns. The
merge toggle folds each adapter into a copy of its base's weights: the same text (to float
rounding), at the base's speed.
"""

from __future__ import annotations

import html
import math
import time

import gradio as gr
import torch

from ..machine import bf16_instructions
from ..sampling import side_by_side
from .common import friendly, session_of, whole_number
from .models import WEIGHTS

MAX_NEW_TOKENS = 1000  # a cap that keeps a shared CPU Space responsive
MAX_MODELS = 6
REDRAW_SECONDS = 0.1  # the columns grow with every token; redrawing them 10 times a second is plenty
# Tokens each model writes in its turn: its weights and cache are still in the processor's caches
# for its next token (bench/generate_speed.py measures side_by_side with it); 8 tokens of five
# models take a few tens of milliseconds, less than a redraw.
TOKENS_PER_TURN = 8
COLOUR_BY = ("probability", "entropy")


def shade(fraction: float) -> str:
    """Red (0) through yellow to green (1), translucent so the text stays readable."""
    return f"hsla({120 * min(max(fraction, 0.0), 1.0):.0f}, 75%, 50%, 0.35)"


def token_html(step, colour_by: str, max_bits: float, tip: bool = True) -> str:
    """A token's coloured span; ``tip``: with the hover text of its probabilities and top 5."""
    if colour_by == "entropy":  # a sure model (low entropy) is green, a clueless one red
        colour = shade(1 - step.entropy / max_bits if max_bits else 1.0)
    else:
        colour = shade(step.probability)
    title = ""
    if tip:
        alternatives = "\n".join(f"{text!r}  {p:.3f}" for text, p in step.alternatives)
        hover = (f"{step.text!r}: p = {step.probability:.3f}, entropy {step.entropy:.2f} bits\n"
                 f"the model's top {len(step.alternatives)}:\n{alternatives}")
        title = f" title='{html.escape(hover, quote=True)}'"
    return f"<span class='bg-tok' style='background:{colour}'{title}>{html.escape(step.text)}</span>"


def adapter_note(config: dict, merged: bool) -> str:
    """'LoRA r=8 (q, v) on gpt, merged' for an adapter's column; '' for a model."""
    if config.get("kind") != "lora":
        return ""
    lora = config["lora"]
    base = config["base"] if "/" not in config["base"] else config["base"].rsplit("/", 1)[-1]
    return f"LoRA r={lora['r']} ({', '.join(lora['targets'])}) on {base}, {'merged' if merged else 'unmerged'}"


def column_html(name: str, result: dict, meta: dict, prompt: str, tokens: str) -> str:
    first = result["first_token_seconds"]
    timing = f"first token {first * 1e3:.0f} ms · {result['tokens_per_sec']:,.0f} tok/s" if first is not None else ""
    finished = {"stop": " · stopped at a stop string", "length": ""}.get(result["finish_reason"], "")
    if not result["done"]:
        finished += " · writing…"
    return (f"<div class='bg-col'><div class='bg-head'><b>{html.escape(name)}</b><br>"
            f"{meta['parameters']:,} params · val {meta['val_loss']}<br>"
            + (f"{html.escape(meta['adapter'])}<br>" if meta.get("adapter") else "")
            + f"{timing}{finished}</div>"
            f"<pre class='bg-text'><span class='bg-prompt'>{html.escape(prompt)}</span>{tokens}</pre></div>")


def legend(colour_by: str) -> str:
    if colour_by == "entropy":
        ends = ("unsure (high entropy)", "sure (low entropy)")
    else:
        ends = ("unlikely to the model", "likely to the model")
    return (f"<div class='bg-legend'><span style='background:{shade(0)}'>{ends[0]}</span> → "
            f"<span style='background:{shade(1)}'>{ends[1]}</span> · hover a token for the model's top 5</div>")


class Columns:
    """The columns as HTML, each token's span drawn once: a redraw then costs a join, not a re-render.

    While the models write, the spans carry their colour only; the hover text (a token's
    probability and the model's top 5, most of a span's bytes) comes with the last drawing: every
    redraw sends the whole columns to the page, which parses them all again."""

    def __init__(self, info: dict, colour_by: str, prompt: str):
        self.info, self.colour_by, self.prompt = info, colour_by, prompt
        self.spans = {(name, tips): [] for name in info for tips in (False, True)}

    def html(self, results: dict, tips: bool = True) -> str:
        cells = []
        for name, result in results.items():
            meta, spans = self.info[name], self.spans[name, tips]
            max_bits = math.log2(meta["vocab_size"]) if meta["vocab_size"] > 1 else 0.0
            spans += [token_html(step, self.colour_by, max_bits, tips) for step in result["steps"][len(spans):]]
            cells.append(column_html(name, result, meta, self.prompt, "".join(spans)))
        return legend(self.colour_by) + "<div class='bg-grid'>" + "".join(cells) + "</div>"


def details(results: dict) -> dict:
    """What the columns show, as data: per model its text, timings and every token's probabilities."""
    return {
        name: {
            "text": r["text"], "new_tokens": r["new_tokens"], "tokens_per_sec": round(r["tokens_per_sec"], 1),
            "first_token_ms": None if r["first_token_seconds"] is None else round(r["first_token_seconds"] * 1e3, 2),
            "finish_reason": r["finish_reason"], "context_cut": r["context_cut"],
            "tokens": [{"text": s.text, "probability": round(s.probability, 5), "entropy_bits": round(s.entropy, 4),
                        "top5": [[t, round(p, 5)] for t, p in s.alternatives]} for s in r["steps"]],
        }
        for name, r in results.items()
    }


def parse_stop(text: str) -> list[str]:
    r"""Comma-separated stop strings; ``\n`` stands for a newline."""
    return [part.replace("\\n", "\n") for part in (text or "").split(",") if part]


@friendly
def compare(names, prompt, max_new_tokens, temperature, top_k, top_p, seed, mode="sampled", stop="",
            colour_by="probability", merge_adapters=False, weights="float32", request: gr.Request = None):
    """Stream (columns HTML, {name: text}, note, details) as every chosen model writes."""
    session = session_of(request)
    if not names:
        raise ValueError("pick at least one model to compare")
    if len(names) > MAX_MODELS:
        raise ValueError(f"compare at most {MAX_MODELS} models at once")
    if not prompt:
        raise ValueError("the prompt is empty: type a few characters to continue from")
    if mode not in ("sampled", "greedy"):
        raise ValueError(f"mode must be sampled or greedy, got {mode!r}")
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour by must be one of {', '.join(COLOUR_BY)}, got {colour_by!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    notes = []
    max_new_tokens = whole_number(max_new_tokens, "max new tokens", 0, 10**12)
    if max_new_tokens > MAX_NEW_TOKENS:
        notes.append(f"max new tokens capped at {MAX_NEW_TOKENS} (asked for {max_new_tokens})")
        gr.Warning(notes[-1])
        max_new_tokens = MAX_NEW_TOKENS
    models, info = {}, {}
    for name in names:
        checkpoint = session.load(name, merged=bool(merge_adapters), weights=weights)
        unknown = getattr(checkpoint.tokenizer, "unknown_characters", lambda _: [])(prompt)
        if unknown:
            raise ValueError(f"{name} has never seen {', '.join(map(repr, unknown))}; remove them from the prompt")
        models[name] = (checkpoint.model, checkpoint.tokenizer)
        val = checkpoint.metrics.get("val_loss")
        info[name] = {"parameters": checkpoint.model.num_parameters(), "val_loss": f"{val:.3f}" if val else "n/a",
                      "vocab_size": checkpoint.model.config.vocab_size,
                      "block_size": checkpoint.model.config.block_size,
                      "adapter": adapter_note(checkpoint.config, bool(merge_adapters))}
    if weights != "float32":
        notes.append(precision_note(models, weights))
    temperature = 0.0 if mode == "greedy" else float(temperature)
    settings = {"temperature": temperature, "top_k": whole_number(top_k, "top-k", 0, 10**9), "top_p": float(top_p),
                "seed": whole_number(seed, "seed", -(2**63), 2**63 - 1), "stop_strings": parse_stop(stop)}
    results, last_drawn, columns = {}, 0.0, Columns(info, colour_by, prompt)
    for results in side_by_side(models, prompt, max_new_tokens, tokens_per_turn=TOKENS_PER_TURN, **settings):
        session.touch()
        if time.monotonic() - last_drawn >= REDRAW_SECONDS:
            last_drawn = time.monotonic()
            yield (columns.html(results, tips=False), {n: r["text"] for n, r in results.items()}, " · ".join(notes),
                   gr.skip())
    cut = [f"{n} sees only the last {info[n]['block_size']} tokens" for n, r in results.items() if r["context_cut"]]
    if cut:
        notes.append("the prompt is longer than the context: " + "; ".join(cut))
    session.last_compare = {"results": results, "info": info, "prompt": prompt}
    yield columns.html(results), {n: r["text"] for n, r in results.items()}, " · ".join(notes), details(results)


@friendly
def recolour(colour_by, request: gr.Request = None):
    """Redraw the last comparison coloured another way, without generating again."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour by must be one of {', '.join(COLOUR_BY)}, got {colour_by!r}")
    last = session_of(request).last_compare
    if not last:
        return gr.skip()
    return Columns(last["info"], colour_by, last["prompt"]).html(last["results"])


def precision_note(models: dict, weights: str) -> str:
    """Which columns generate with ``weights`` and which stay float32 (a family that cannot)."""
    dtype = {"bfloat16": torch.bfloat16}[weights]
    converted = [name for name, (model, _) in models.items() if next(model.parameters()).dtype == dtype]
    kept = [name for name in models if name not in converted]
    if not kept:
        return f"{weights} weights: {', '.join(converted)}"
    stays, its = ("stays", "its family") if len(kept) == 1 else ("stay", "their families")
    return (f"{weights} weights: {', '.join(converted) or 'none'}; {', '.join(kept)} {stays} float32 "
            f"({its} cannot generate in {weights})")


def bf16_machine_note() -> str:
    instructions = bf16_instructions()
    if instructions:
        return (f"this CPU multiplies bf16 natively ({instructions}); the texts agree with float32's for a while, "
                "then part where rounding flips a near tie")
    return "this CPU has no bf16 instructions: torch emulates bf16, so it is far slower here than float32"


CSS = """
.bg-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px;}
.bg-col {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
.bg-head {font-size: 0.85em; margin-bottom: 6px;}
.bg-text {white-space: pre-wrap; font-size: 0.85em; margin: 0;}
.bg-tok {border-radius: 2px; cursor: help;}
.bg-prompt {font-weight: bold;}
.bg-legend {font-size: 0.8em; margin-bottom: 8px;}
.bg-legend span {padding: 0 4px; border-radius: 2px;}
"""


def build(choices: list[str]) -> tuple[gr.Dropdown, gr.Textbox]:
    """The tab; returns its model selector (the app refreshes it) and prompt (Start here fills both)."""
    # Custom values pass Gradio's own check; the handler checks names against this session's models.
    names = gr.Dropdown(choices, value=[c for c in ("bigram", "gpt", "llama") if c in choices], multiselect=True,
                        allow_custom_value=True, label="models")
    prompt = gr.Textbox("Hamlet:\n", label="prompt", lines=2)
    with gr.Row():
        mode = gr.Radio(["sampled", "greedy"], value="sampled", label="mode",
                        info="greedy always takes the likeliest token")
        max_new_tokens = gr.Number(200, step=1, label=f"max new tokens (≤ {MAX_NEW_TOKENS})", minimum=0)
        seed = gr.Number(0, step=1, label="seed (shared by all models)")
        stop = gr.Textbox("", label="stop at", placeholder=r"comma-separated; \n = newline")
    with gr.Row():
        temperature = gr.Slider(0.0, 2.0, 0.8, step=0.05, label="temperature (0 = greedy)")
        top_k = gr.Slider(0, 100, 0, step=1, label="top-k (0 = off)")
        top_p = gr.Slider(0.05, 1.0, 1.0, step=0.05, label="top-p")
    merge_adapters = gr.Checkbox(False, label="merge LoRA adapters into their base weights",
                                 info=("same text, the base's speed; compare an adapter with its base, e.g. "
                                       "gpt-kjv-lora and gpt"))
    weights = gr.Radio([("float32, as trained", "float32"), ("bfloat16: half the bytes to read per token", "bfloat16")],
                       value="float32", label="weights while generating (weights)", info=bf16_machine_note())
    run = gr.Button("Generate", variant="primary")
    note = gr.Markdown()
    colour_by = gr.Radio(list(COLOUR_BY), value="probability", label="colour tokens by")
    columns = gr.HTML("<p>Press <b>Generate</b>: the models write side by side, one column each, every token "
                      "coloured by the probability its model gave it.</p>")
    with gr.Accordion("raw text", open=False):
        texts = gr.JSON()
    with gr.Accordion("every token's probability, entropy and top 5", open=False):
        tokens = gr.JSON()
    run.click(compare, [names, prompt, max_new_tokens, temperature, top_k, top_p, seed, mode, stop, colour_by,
                        merge_adapters, weights],
              [columns, texts, note, tokens], api_name="compare", show_progress_on=note)
    colour_by.change(recolour, [colour_by], [columns], api_name="recolour")
    return names, prompt
