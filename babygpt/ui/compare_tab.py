"""Compare tab: one prompt, several models, outputs streaming side by side."""

from __future__ import annotations

import html

import gradio as gr

from ..sampling import side_by_side
from .common import friendly, session_of
from .models import load

MAX_NEW_TOKENS = 1000  # a cap that keeps a shared CPU Space responsive
MAX_MODELS = 6


def columns_html(results: dict, info: dict) -> str:
    cells = []
    for name, result in results.items():
        meta = info[name]
        cells.append(
            f"<div class='bg-col'><div class='bg-head'><b>{html.escape(name)}</b><br>"
            f"{meta['parameters']:,} params · val {meta['val_loss']} · {result['tokens_per_sec']:,.0f} tok/s</div>"
            f"<pre class='bg-text'>{html.escape(result['text'])}</pre></div>"
        )
    return "<div class='bg-grid'>" + "".join(cells) + "</div>"


@friendly
def compare(names, prompt, max_new_tokens, temperature, top_k, top_p, seed, request: gr.Request):
    """Stream (columns HTML, {name: text}, note) as every chosen model writes."""
    session = session_of(request)
    if not names:
        raise ValueError("pick at least one model to compare")
    if len(names) > MAX_MODELS:
        raise ValueError(f"compare at most {MAX_MODELS} models at once")
    if not prompt:
        raise ValueError("the prompt is empty: type a few characters to continue from")
    note = ""
    max_new_tokens = int(max_new_tokens)
    if max_new_tokens > MAX_NEW_TOKENS:
        note = f"max new tokens capped at {MAX_NEW_TOKENS} (asked for {max_new_tokens})"
        gr.Warning(note)
        max_new_tokens = MAX_NEW_TOKENS
    models, info = {}, {}
    for name in names:
        checkpoint = load(session.path_of(name))
        unknown = getattr(checkpoint.tokenizer, "unknown_characters", lambda _: [])(prompt)
        if unknown:
            raise ValueError(f"{name} has never seen {', '.join(map(repr, unknown))}; remove them from the prompt")
        models[name] = (checkpoint.model, checkpoint.tokenizer)
        val = checkpoint.metrics.get("val_loss")
        info[name] = {"parameters": checkpoint.model.num_parameters(), "val_loss": f"{val:.3f}" if val else "n/a"}
    settings = {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p), "seed": int(seed)}
    results = {}
    for results in side_by_side(models, prompt, max_new_tokens, **settings):
        yield columns_html(results, info), {n: r["text"] for n, r in results.items()}, note
    yield columns_html(results, info), {n: r["text"] for n, r in results.items()}, note


CSS = """
.bg-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px;}
.bg-col {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
.bg-head {font-size: 0.85em; margin-bottom: 6px;}
.bg-text {white-space: pre-wrap; font-size: 0.85em; margin: 0;}
"""


def build(choices: list[str]) -> gr.Dropdown:
    # Custom values pass Gradio's own check; the handler checks names against this session's models.
    names = gr.Dropdown(choices, value=[c for c in ("bigram", "gpt", "llama") if c in choices], multiselect=True,
                        allow_custom_value=True, label="models")
    prompt = gr.Textbox("Hamlet:\n", label="prompt", lines=2)
    with gr.Row():
        max_new_tokens = gr.Number(200, label=f"max new tokens (≤ {MAX_NEW_TOKENS})", precision=0, minimum=0)
        temperature = gr.Slider(0.0, 2.0, 0.8, step=0.05, label="temperature (0 = greedy)")
        top_k = gr.Slider(0, 100, 0, step=1, label="top-k (0 = off)")
        top_p = gr.Slider(0.05, 1.0, 1.0, step=0.05, label="top-p")
        seed = gr.Number(0, label="seed", precision=0)
    run = gr.Button("Generate", variant="primary")
    note = gr.Markdown()
    columns = gr.HTML()
    with gr.Accordion("raw text", open=False):
        texts = gr.JSON()
    run.click(compare, [names, prompt, max_new_tokens, temperature, top_k, top_p, seed], [columns, texts, note],
              api_name="compare", show_progress_on=note)
    return names
