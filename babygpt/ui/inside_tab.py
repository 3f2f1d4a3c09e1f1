"""Inside tab: one forward pass of a model on a prompt, stage by stage, from the text to the token
drawn (``babygpt.inside``). Each stage is a card: sentences with this model's numbers, and its
tensors drawn. The temperature and the cut redo only the last card, from the logits kept."""

from __future__ import annotations

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
    """(note, every card's text and plot, the sampling card's text and plot, the logits kept)."""
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
    plot = stage_plot(sampling)
    return [note, *card_updates(stages), card_text(len(stages) + 1, sampling), plot, kept]


@friendly
def resample(kept, temperature, top_k, top_p, seed):
    """The last card again, for a new temperature or cut: no forward pass."""
    if not kept:
        raise ValueError("walk through a model first")
    stage = sampling_stage(torch.tensor(kept["logits"]), kept["vocab"], float(temperature),
                           whole_number(top_k, "top-k", 0, 10**6), float(top_p),
                           first_draw(whole_number(seed, "seed", 0, 2**63 - 1)))
    return card_text(kept["cards"] + 1, stage), stage_plot(stage)


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
    sampling_text, sampling_plot = gr.Markdown(), gr.Plot(show_label=False)
    kept = gr.State(None)
    inputs = [model, prompt, position, layer, head, temperature, top_k, top_p, seed]
    outputs = [note, *cards, sampling_text, sampling_plot, kept]
    # the button, Enter in the prompt, and a model chosen (by hand, or by Start here's button): the
    # cards never show another model than the one chosen
    gr.on([run.click, prompt.submit, model.change], show, inputs, outputs, api_name="inside", show_progress_on=note)
    if first_of(choices):  # no empty tab on first open: the shipped model's walk
        app.load(show, inputs, outputs, api_name="inside_first_open", show_progress="hidden")
    resampled = dict(fn=resample, inputs=[kept, temperature, top_k, top_p, seed],
                     outputs=[sampling_text, sampling_plot], show_progress="hidden", trigger_mode="always_last",
                     queue=False)
    temperature.change(**resampled, api_name="inside_sample")
    for control, name in ((top_p, "top_p"), (top_k, "top_k"), (seed, "seed")):
        control.change(**resampled, api_name=f"inside_sample_{name}")
    return model
