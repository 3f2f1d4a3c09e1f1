"""Inside tab: one forward pass of a model on a prompt, stage by stage, from the text to the token
drawn (``babygpt.inside``). Each stage is a card: sentences with this model's numbers, and its
tensors drawn. The temperature and the cut redo only the last card, from the logits kept; that card
is drawn as plain HTML, which the browser paints at once (a plotly figure is laid out again on every
update, which would be most of a slider move's time)."""

from __future__ import annotations

import html
import json

import gradio as gr
import torch
from gradio.components.plot import PlotData

from ..inside import first_draw, sampling_stage, walk
from ..models.stages import Figure, Stage
from .common import first_of, friendly, session_of, whole_number

# The most stages a walk has (llama with an adapter: 17, text to tokens included); spare cards stay hidden.
CARDS = 18
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light"
COLOURS = {"vector": "#4c78a8", "bars": "#f58518"}


def distinct(labels: list[str] | None, count: int) -> list:
    """Axis labels plotly keeps apart: a repeated token gets its position in front (plotly would
    merge equal categories into one bar or one row)."""
    if labels is None:
        return list(range(count))
    return labels if len(set(labels)) == len(labels) else [f"{i}:{label}" for i, label in enumerate(labels)]


def trace(figure: Figure, axis: str) -> dict:
    values = figure.values.float()
    where = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    if figure.kind == "heatmap":
        z = values.masked_fill(figure.masked, float("nan")) if figure.masked is not None else values
        rows, cols = z.shape
        return {"type": "heatmap", "z": [[None if v != v else v for v in row] for row in z.tolist()],
                "x": distinct(figure.x, cols), "y": distinct(figure.y, rows), "colorscale": "RdBu",
                "zmid": 0 if float(values.min()) < 0 else None, "showscale": False,
                "hovertemplate": "row %{y}<br>column %{x}<br>%{z:.3f}<extra></extra>", **where}
    return {"type": "bar", "x": distinct(figure.x, values.numel()), "y": values.tolist(),
            "marker": {"color": COLOURS.get(figure.kind, "#4c78a8")},
            "hovertemplate": "%{x}: %{y:.3f}<extra></extra>", **where}


def stage_plot(stage: Stage) -> PlotData | None:
    """The stage's figures side by side, as one plotly figure. Written as plotly's JSON directly:
    building the same through plotly's validating objects took ~30 ms a card, most of a walk."""
    if not stage.figures:
        return None
    n, gap = len(stage.figures), 0.06
    width = (1 - gap * (n - 1)) / n
    layout = {"height": 320, "showlegend": False, "margin": {"l": 40, "r": 20, "t": 50, "b": 60},
              "annotations": []}
    data = []
    for i, figure in enumerate(stage.figures):
        axis = "" if i == 0 else str(i + 1)
        left = i * (width + gap)
        data.append(trace(figure, axis))
        layout[f"xaxis{axis}"] = {"domain": [left, left + width], "anchor": f"y{axis}", "automargin": True}
        layout[f"yaxis{axis}"] = {"anchor": f"x{axis}", "automargin": True,
                                  **({"autorange": "reversed"} if figure.kind == "heatmap" else {})}
        layout["annotations"].append({"text": figure.title, "x": left + width / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False})
    return PlotData(type="plotly", plot=json.dumps({"data": data, "layout": layout}))


def bars_html(figure: Figure) -> str:
    """A bars figure as rows: the label, a bar as long as the value's share of the largest one, the value."""
    values = figure.values.float().tolist()
    labels = figure.x or [str(i) for i in range(len(values))]
    largest = max((abs(v) for v in values), default=0.0) or 1.0
    rows = "".join(
        f"<div class='draw-row'><span class='draw-label'>{html.escape(label)}</span><span class='draw-track'>"
        f"<span class='draw-bar{' draw-negative' if v < 0 else ''}' style='width: {100 * abs(v) / largest:.1f}%'>"
        f"</span></span><span class='draw-value'>{v:.3f}</span></div>" for label, v in zip(labels, values))
    return f"<div class='draw-figure'><div class='draw-title'>{html.escape(figure.title)}</div>{rows}</div>"


def cumulative_html(figure: Figure) -> str:
    """A cumulative distribution as one strip from 0 to 1: each token a slice as wide as its
    probability (labelled where it fits), the draw ``mark`` an arrow, its slice highlighted."""
    steps = figure.values.float().tolist()
    labels = figure.x or [str(i) for i in range(len(steps))]
    mark = figure.mark
    # the slice the draw falls in: the first whose upper end lies above it (the last, if rounding left none)
    picked = None if mark is None else next((i for i, high in enumerate(steps) if high > mark), len(steps) - 1)
    slices, low = [], 0.0
    for i, (label, high) in enumerate(zip(labels, steps)):
        name = html.escape(label)
        slices.append(f"<span class='draw-slice{' draw-picked' if i == picked else ''}' "
                      f"style='width: {100 * (high - low):.3f}%' title='{name}: [{low:.3f}, {high:.3f})'>"
                      f"{name if high - low >= 0.04 else ''}</span>")
        low = high
    if mark is None:
        arrow = ""
    elif mark <= 0.5:  # the words on the side with room for them
        arrow = f"<span class='draw-mark' style='left: {100 * mark:.2f}%'>▲ u = {mark:.3f}</span>"
    else:
        arrow = f"<span class='draw-mark draw-mark-left' style='right: {100 * (1 - mark):.2f}%'>u = {mark:.3f} ▲</span>"
    return (f"<div class='draw-figure'><div class='draw-title'>{html.escape(figure.title)}</div>"
            f"<div class='draw-strip'>{''.join(slices)}</div><div class='draw-axis'>{arrow}"
            f"<span class='draw-zero'>0</span><span class='draw-one'>1</span></div></div>")


def sampling_html(number: int, stage: Stage) -> str:
    """The sampling card, its words and its figures side by side, as one piece of HTML (one
    component for the browser to update when the slider moves)."""
    drawn = [cumulative_html(f) if f.kind == "cumulative" else bars_html(f) for f in stage.figures]
    return (f"<h3>{number}. {html.escape(stage.title)}</h3><p>{html.escape(' '.join(stage.sentences))}</p>"
            f"<div class='draw-card'>{''.join(drawn)}</div>")


CSS = """
.draw-card {display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 24px; padding: 8px 0;}
.draw-title {font-weight: 600; margin-bottom: 6px;}
.draw-row {display: flex; align-items: center; gap: 6px; font-size: 0.85em; line-height: 1.6;}
.draw-label {width: 4.5em; text-align: right; font-family: monospace; white-space: pre;}
.draw-track {flex: 1; height: 0.9em;}
.draw-bar {display: block; height: 100%; background: #f58518; border-radius: 2px;}
.draw-bar.draw-negative {background: #4c78a8;}
.draw-value {width: 4em; font-family: monospace;}
.draw-strip {display: flex; height: 2.2em; border: 1px solid var(--border-color-primary); border-radius: 4px;
             overflow: hidden;}
.draw-slice {overflow: hidden; font-family: monospace; font-size: 0.8em; text-align: center; line-height: 2.6em;
             white-space: pre; border-right: 1px solid var(--border-color-primary); cursor: help;}
.draw-slice.draw-picked {background: #f58518; color: white;}
.draw-axis {position: relative; height: 2.4em; font-size: 0.85em;}
.draw-mark {position: absolute; top: 0; transform: translateX(-0.5em); white-space: nowrap; font-weight: 600;}
.draw-mark.draw-mark-left {transform: translateX(0.5em);}
.draw-zero {position: absolute; right: 100%; top: 1.2em;}
.draw-one {position: absolute; left: 100%; top: 1.2em;}
"""


def card_text(number: int, stage: Stage) -> str:
    return f"### {number}. {stage.title}\n" + " ".join(stage.sentences)


def card_updates(stages: list[Stage]) -> list:
    """For every card slot: its text and plot, shown, or hidden when the walk has fewer stages."""
    updates = []
    for i in range(CARDS):
        if i < len(stages):
            plot = stage_plot(stages[i])
            updates += [gr.update(value=card_text(i + 1, stages[i]), visible=True),
                        gr.update(value=plot, visible=plot is not None)]
        else:
            updates += [gr.update(value="", visible=False), gr.update(value=None, visible=False)]
    return updates


def position_of(value) -> int | None:
    """The form's position: -1 (or nothing) is the last token."""
    if value is None or value == -1:
        return None
    return whole_number(value, "position", 0, 10**6)


@friendly
def show(name, prompt, position, layer, head, temperature, top_k, top_p, seed, request: gr.Request):
    """(note, every card's text and plot, the sampling card as HTML, the logits kept)."""
    if not name:
        raise ValueError("pick a model")
    checkpoint = session_of(request).load(name)
    result = walk(checkpoint.model, checkpoint.tokenizer, prompt, position_of(position),
                  whole_number(layer, "layer", 0, 10**6), whole_number(head, "head", 0, 10**6),
                  float(temperature), whole_number(top_k, "top-k", 0, 10**6), float(top_p),
                  whole_number(seed, "seed", 0, 2**63 - 1))
    view = result.view
    layers, heads = checkpoint.model.inside_choices()
    note = (f"**{name}**: {len(view.ids)} tokens; following the prediction after token {view.position} "
            f"{view.tokens[view.position]!r}")
    if layers:
        note += f"; layer {view.layer} of {layers}" + (f", head {view.head} of {heads}" if heads else "")
    note += "".join(f". {text}" for text in result.notes)
    if result.cut:
        note += f"; the prompt was longer than the context: these are its last {len(view.ids)} tokens"
    *stages, sampling = result.stages
    kept = {"logits": result.logits.tolist(), "vocab": view.vocab, "cards": len(stages)}
    return [note, *card_updates(stages), sampling_html(len(stages) + 1, sampling), kept]


@friendly
def resample(kept, temperature, top_k, top_p, seed):
    """The last card again, for a new temperature or cut: no forward pass."""
    if not kept:
        raise ValueError("walk through a model first")
    stage = sampling_stage(torch.tensor(kept["logits"]), kept["vocab"], float(temperature),
                           whole_number(top_k, "top-k", 0, 10**6), float(top_p),
                           first_draw(whole_number(seed, "seed", 0, 2**63 - 1)))
    return sampling_html(kept["cards"] + 1, stage)


def build(choices: list[str], app: gr.Blocks) -> gr.Dropdown:
    gr.Markdown("Step through one forward pass of a model: every card shows this model's own tensors on your "
                "prompt, from the text to the token it draws. Any family, your own models included.")
    with gr.Row():
        model = gr.Dropdown(choices, value=first_of(choices), label="model", scale=2, allow_custom_value=True)
        position = gr.Number(-1, step=1, minimum=-1, label="position (-1 = the last token)",
                             info="the token whose next-token prediction is followed, counting from 0")
        layer = gr.Number(0, step=1, minimum=0, label="layer", info="which block (or LSTM layer) to open")
        head = gr.Number(0, step=1, minimum=0, label="attention head", info="which head of that block")
    prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", lines=2)
    with gr.Row():
        temperature = gr.Slider(0, 2, 1.0, step=0.05, label="temperature (0 = greedy)")
        top_k = gr.Number(0, step=1, minimum=0, label="top-k (0 = off)")
        top_p = gr.Slider(0.05, 1, 1.0, step=0.05, label="top-p (1 = off)")
        seed = gr.Number(0, step=1, minimum=0, label="seed (the draw)")
    run = gr.Button("Walk through the forward pass", variant="primary")
    note = gr.Markdown()
    cards = []
    for _ in range(CARDS):
        cards += [gr.Markdown(visible=False), gr.Plot(visible=False, show_label=False)]
    sampling = gr.HTML(elem_id="inside-sampling")
    kept = gr.State(None)
    inputs = [model, prompt, position, layer, head, temperature, top_k, top_p, seed]
    outputs = [note, *cards, sampling, kept]
    # the button, Enter in the prompt, and a model chosen (by hand, or by Start here's button): the
    # cards never show another model than the one chosen
    gr.on([run.click, prompt.submit, model.change], show, inputs, outputs, api_name="inside", show_progress_on=note)
    if first_of(choices):  # no empty tab on first open: the shipped model's walk
        app.load(show, inputs, outputs, api_name="inside_first_open", show_progress="hidden")
    resampled = dict(fn=resample, inputs=[kept, temperature, top_k, top_p, seed],
                     outputs=[sampling], show_progress="hidden", trigger_mode="always_last",
                     queue=False)
    temperature.change(**resampled, api_name="inside_sample")
    for control, name in ((top_p, "top_p"), (top_k, "top_k"), (seed, "seed")):
        control.change(**resampled, api_name=f"inside_sample_{name}")
    return model
