"""Experiments tab: what a choice does to training, with the runs' loss curves on one chart.

"Runs, overlaid" draws any of the visitor's models (shipped, trained here, loaded from the Hub)
against step, tokens, FLOPs or wall time, with a table to read them by. The math lives in
``babygpt.experiments``; this module only reads the form and shows what it returns.
"""

from __future__ import annotations

import math

import gradio as gr

from ..experiments import TABLE_HEADERS, X_AXES, comparability_note, comparison_rows, overlay_figure, run_of
from .common import friendly, session_of

MAX_RUNS = 12  # more lines than this on one chart is a tangle, not a comparison
FIRST_RUNS = ("bigram", "ngram", "lstm", "gpt", "llama")
X_AXIS_CHOICES = [("steps (step)", "step"), ("tokens seen (tokens)", "tokens"),
                  ("training compute (flops)", "flops"), ("wall time (seconds)", "seconds")]
BITS_PER_CHARACTER = (
    "A loss is in nats per *token*, so a model with another tokenizer or corpus gives a number on another scale. "
    "**Bits per character** (best val loss ÷ ln 2 ÷ characters per token on the val split) divides the tokenizer "
    "out: character and BPE models trained on the same text compare on it. Dashed lines: train loss; solid: val.")


def check_smoothing(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value < 1:
        raise ValueError(f"smoothing must be a number from 0 up to (not including) 1, got {value!r}")
    return float(value)


@friendly
def overlay(names, x_axis, smoothing, request: gr.Request = None):
    """(chart, table rows, note) for the chosen models' training runs."""
    if not names:
        raise ValueError("pick at least one model to draw")
    if len(names) > MAX_RUNS:
        raise ValueError(f"overlay at most {MAX_RUNS} models at once, got {len(names)}")
    if x_axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")
    smoothing = check_smoothing(smoothing)
    session = session_of(request)
    runs = [run_of(name, session.load(name)) for name in dict.fromkeys(names)]
    note = comparability_note(runs)
    without = [run.name for run in runs if not run.history]
    if without:
        note += f" No training history to draw for {', '.join(without)} (saved without one)."
    return overlay_figure(runs, x_axis, smoothing), comparison_rows(runs), note


def build(choices: list[str], app: gr.Blocks) -> gr.Dropdown:
    """The tab; returns its model selector (the app refreshes it with the session's models)."""
    gr.Markdown("### Runs, overlaid\nPick models to see their training on one chart: what did a choice do?")
    with gr.Row():
        names = gr.Dropdown(choices, value=[c for c in FIRST_RUNS if c in choices], multiselect=True,
                            allow_custom_value=True, label=f"models (up to {MAX_RUNS})", scale=3)
        x_axis = gr.Radio(X_AXIS_CHOICES, value="step", label="against (x axis)", scale=2)
        smoothing = gr.Slider(0.0, 0.95, 0.0, step=0.05, label="smoothing (exponential moving average weight)",
                              scale=2)
    note = gr.Markdown()
    chart = gr.Plot(label="loss curves", elem_id="overlay-chart")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="the runs, side by side", elem_id="overlay-table")
    gr.Markdown(BITS_PER_CHARACTER)
    # Opening the page draws the first models: no empty chart on first open.
    gr.on([app.load, names.change, x_axis.change, smoothing.change], overlay, [names, x_axis, smoothing],
          [chart, table, note], api_name="overlay", show_progress_on=note, trigger_mode="always_last")
    return names
