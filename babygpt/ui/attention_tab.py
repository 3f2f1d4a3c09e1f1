"""Attention tab: heatmaps of what every head attends to, for any prompt; what role each head
plays (previous token, first token, induction); and the logit lens, the next-token guess read
after every layer."""

from __future__ import annotations

import functools
import html
import re

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..attention import attention_maps
from ..checkpoint import has_attention_snapshots, load_attention_snapshots
from ..interpret import ROLES, head_roles, logit_lens
from ..models import FAMILIES, family_of_saved
from .attention_lines import head_view, model_view
from .common import first_of, friendly, session_of, whole_number


def markdown_html(text: str) -> str:
    """A note for an HTML panel: the note's **bold** as <b>, everything else escaped."""
    return "<p>" + re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text)) + "</p>"


def heatmap(weights, tokens: list[str], title: str) -> go.Figure:
    labels = [f"{i}:{t!r}"[:12] for i, t in enumerate(tokens)]  # positions keep repeated tokens apart
    figure = go.Figure(go.Heatmap(z=weights.tolist(), x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                                  hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    figure.update_layout(title=title, height=460, yaxis={"autorange": "reversed"},
                         margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return figure


@functools.lru_cache(maxsize=32)
def grid_layout(n_layer: int, n_head: int) -> dict:
    """The layout of an n_layer × n_head grid of heatmaps, as plain data.

    ``make_subplots`` and ``add_trace(row=, col=)`` validate the whole figure on every call, which
    was most of a heatmap request's time: the layout is made once per grid shape, and each heatmap
    names its own axes (``x3``/``y3`` for the third cell, as ``make_subplots`` numbers them).
    """
    figure = make_subplots(rows=n_layer, cols=n_head, horizontal_spacing=0.02, vertical_spacing=0.04,
                           subplot_titles=[f"L{l} H{h}" for l in range(n_layer) for h in range(n_head)])
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, autorange="reversed")
    figure.update_layout(height=max(300, 170 * n_layer), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure.layout.to_plotly_json()


def grid(weights, tokens: list[str]) -> go.Figure:
    n_layer, n_head = weights.shape[:2]
    labels = [f"{i}:{t!r}"[:12] for i, t in enumerate(tokens)]
    traces = []
    for l in range(n_layer):
        for h in range(n_head):
            cell = "" if l == 0 and h == 0 else str(l * n_head + h + 1)
            traces.append(dict(type="heatmap", z=weights[l, h].tolist(), x=labels, y=labels, colorscale="Blues",
                               zmin=0, zmax=1, showscale=False, xaxis=f"x{cell}", yaxis=f"y{cell}",
                               hovertemplate=(f"L{l} H{h}<br>query %{{y}}<br>key %{{x}}<br>weight "
                                              f"%{{z:.3f}}<extra></extra>")))
    return go.Figure(data=traces, layout=grid_layout(n_layer, n_head))  # plotly copies it


def attention_model(name, request):
    """(the loaded model, or None and why this tab has nothing to show for it)."""
    if not name:
        raise ValueError("pick a model")
    checkpoint = session_of(request).load(name)
    family = family_of_saved(checkpoint.config["model"])
    if family.has_attention:
        return checkpoint, None
    others = " or ".join(f.name for f in FAMILIES.values() if f.has_attention)
    return None, (f"**{name}** is a {family.name} model ({family.summary}): it has no attention, so there is nothing "
                  f"here to draw. Pick a {others} model.")


@friendly
def show(name, prompt, layer, head, request: gr.Request):
    """(one head, all layers × heads, head average of the layer, note)."""
    checkpoint, why_not = attention_model(name, request)
    if why_not:
        return None, None, None, why_not
    maps = attention_maps(checkpoint.model, checkpoint.tokenizer, prompt)
    n_layer, n_head = maps.weights.shape[:2]
    # A slider set for a bigger model: the last layer or head there is.
    layer = min(whole_number(layer, "layer", 0, 10**6), n_layer - 1)
    head = min(whole_number(head, "head", 0, 10**6), n_head - 1)
    note = f"{len(maps.tokens)} tokens · {n_layer} layers × {n_head} heads · showing layer {layer}, head {head}"
    if maps.cut:
        note += f" · the text is longer than the context: these are its last {len(maps.tokens)} tokens"
    return (heatmap(maps.weights[layer, head], maps.tokens, f"layer {layer}, head {head}"),
            grid(maps.weights, maps.tokens),
            heatmap(maps.head_average(layer), maps.tokens, f"layer {layer}, average of {n_head} heads"), note)


@friendly
def lines(name, prompt, layer, request: gr.Request):
    """BertViz-style (head view of one layer, model view of every head) as HTML."""
    checkpoint, why_not = attention_model(name, request)
    if why_not:
        return markdown_html(why_not), ""
    maps = attention_maps(checkpoint.model, checkpoint.tokenizer, prompt)
    layer = min(whole_number(layer, "layer", 0, 10**6), maps.weights.shape[0] - 1)
    return head_view(maps.weights, maps.tokens, layer), model_view(maps.weights, maps.tokens)


@friendly
def lens(name, prompt, request: gr.Request):
    """(heatmap of the top next-token guess after every layer, note)."""
    checkpoint, why_not = attention_model(name, request)
    if why_not:
        return None, why_not
    result = logit_lens(checkpoint.model, checkpoint.tokenizer, prompt)
    labels = [f"{i}:{t!r}"[:12] for i, t in enumerate(result.tokens)]
    guesses = [[repr(t)[1:-1] for t in row] for row in result.top_tokens]
    figure = go.Figure(go.Heatmap(
        z=result.top_probabilities.tolist(), x=labels, y=result.layers, text=guesses, texttemplate="%{text}",
        colorscale="Greens", zmin=0, zmax=1, colorbar={"title": "p"},
        hovertemplate="after %{y}<br>at %{x}<br>next token %{text} (p = %{z:.3f})<extra></extra>"))
    figure.update_layout(height=120 + 45 * len(result.layers), margin={"l": 90, "r": 20, "t": 30, "b": 60},
                         yaxis={"autorange": "reversed"}, title="likeliest next token, read after each layer")
    note = ("Each row reads the residual stream after that layer through the final norm and the output head "
            "(the logit lens); the last row is the model's own prediction. Colour: the guess's probability.")
    return figure, note


@friendly
def roles(name, request: gr.Request):
    """(layers × heads heatmap per role, note)."""
    checkpoint, why_not = attention_model(name, request)
    if why_not:
        return None, why_not
    result = head_roles(checkpoint.model)
    scores = result["scores"]
    n_layer, n_head = scores[ROLES[0]].shape
    figure = make_subplots(rows=1, cols=len(ROLES), subplot_titles=list(ROLES), horizontal_spacing=0.06)
    for i, role in enumerate(ROLES):
        figure.add_trace(go.Heatmap(
            z=scores[role].tolist(), x=[f"H{h}" for h in range(n_head)], y=[f"L{l}" for l in range(n_layer)],
            zmin=0, zmax=1, colorscale="Purples", showscale=i == len(ROLES) - 1, texttemplate="%{z:.2f}",
            hovertemplate=f"{role}<br>layer %{{y}}, head %{{x}}<br>score %{{z:.3f}}<extra></extra>"),
            row=1, col=i + 1)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=160 + 40 * n_layer, margin={"l": 40, "r": 20, "t": 70, "b": 30})
    note = (f"Share of each head's attention that follows the role, on 8 random sequences of {result['length']} tokens "
            "repeated twice: *previous token* looks at t − 1, *first token* at position 0, *induction* at the token "
            "after the earlier copy of its own token. 1/position is what an evenly spread head scores.")
    return figure, note


def training_snapshots(name, request):
    path = session_of(request).path_of(name) if name else None
    if path is None or not has_attention_snapshots(path):
        raise ValueError(f"{name or 'this model'} has no attention snapshots: train a model in the Train tab (it keeps "
                         "them at every evaluation), or with --attention-snapshots on the command line")
    return load_attention_snapshots(path)


@friendly
def over_training(name, request: gr.Request):
    """(slider over the snapshots, all heads at the last one, note)."""
    _, why_not = attention_model(name, request)
    if why_not:
        return gr.update(visible=False), None, why_not
    tokens, snapshots = training_snapshots(name, request)
    steps = list(snapshots)
    if len(steps) == 1:  # a slider needs two ends
        note = (f"1 snapshot, at step {steps[0]}, of every head on the probe text (the start of the val split, "
                f"{len(tokens)} tokens): a run keeps one at every evaluation, so train longer to watch the heads form.")
        return gr.update(visible=False), replay_figure(tokens, snapshots, 0), note
    note = (f"{len(steps)} snapshots, steps {steps[0]} to {steps[-1]}, of every head on the same probe text (the start "
            f"of the val split, {len(tokens)} tokens): move the slider to watch the heads form.")
    slider = gr.update(minimum=0, maximum=len(steps) - 1, value=len(steps) - 1, step=1, visible=True,
                       label=f"evaluation (0 = step {steps[0]}, {len(steps) - 1} = step {steps[-1]})")
    return slider, replay_figure(tokens, snapshots, len(steps) - 1), note


def replay_figure(tokens, snapshots, index: int) -> go.Figure:
    steps = list(snapshots)
    index = min(whole_number(index, "step", 0, 10**9), len(steps) - 1)
    figure = grid(snapshots[steps[index]].float(), tokens)
    figure.update_layout(title=f"step {steps[index]}", margin={"t": 70})
    return figure


@friendly
def replay(name, index, request: gr.Request):
    tokens, snapshots = training_snapshots(name, request)
    return replay_figure(tokens, snapshots, index)


@friendly
def generated_text(name, request: gr.Request):
    """The text the Compare tab last generated: this model's own if it was compared, else the first column's."""
    last = session_of(request).last_compare
    if not last:
        raise ValueError("nothing generated yet: generate in the Compare tab first")
    results = last["results"]
    return results[name]["text"] if name in results else next(iter(results.values()))["text"]


def build(choices: list[str], app: gr.Blocks) -> gr.Dropdown:
    with gr.Row():
        model = gr.Dropdown(choices, value=first_of(choices), label="model", scale=2,
                            allow_custom_value=True)
        layer = gr.Number(0, step=1, label="layer", minimum=0)
        head = gr.Number(0, step=1, label="head", minimum=0)
    prompt = gr.Textbox("To be, or not to be, that is the question", label="text", lines=2)
    with gr.Row():
        run = gr.Button("Show attention", variant="primary")
        use_generated = gr.Button("Use the text generated in Compare")
    note = gr.Markdown()
    single = gr.Plot(label="one head")
    with gr.Row():
        average = gr.Plot(label="head average")
    every = gr.Plot(label="all layers × heads")
    lines_button = gr.Button("BertViz-style head view and model view")
    with gr.Row():
        head_lines = gr.HTML(label="head view")
        model_lines = gr.HTML(label="model view")
    with gr.Row():
        lens_button = gr.Button("Logit lens of the text")
        roles_button = gr.Button("Score head roles")
    inside_note = gr.Markdown()
    inside = gr.Plot(label="logit lens / head roles")
    history_button = gr.Button("Attention over training (models you trained here)")
    history_note = gr.Markdown()
    history_step = gr.Slider(0, 1, 0, step=1, label="evaluation", visible=False)
    history = gr.Plot(label="every head at that evaluation")
    run.click(show, [model, prompt, layer, head], [single, every, average, note], api_name="attention",
              show_progress_on=note)
    if first_of(choices):  # no empty tab on first open
        app.load(show, [model, prompt, layer, head], [single, every, average, note],
                 api_name="attention_first_open", show_progress="hidden")
    use_generated.click(generated_text, [model], [prompt], api_name="generated_text").success(
        show, [model, prompt, layer, head], [single, every, average, note], api_name="attention_generated",
        show_progress_on=note)
    lines_button.click(lines, [model, prompt, layer], [head_lines, model_lines], api_name="attention_lines")
    lens_button.click(lens, [model, prompt], [inside, inside_note], api_name="logit_lens", show_progress_on=inside_note)
    roles_button.click(roles, [model], [inside, inside_note], api_name="head_roles", show_progress_on=inside_note)
    history_button.click(over_training, [model], [history_step, history, history_note], api_name="attention_history",
                         show_progress_on=history_note)
    history_step.change(replay, [model, history_step], [history], api_name="attention_replay", show_progress="hidden")
    return model
