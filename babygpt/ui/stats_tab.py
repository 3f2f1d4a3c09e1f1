"""Model stats tab: where the parameters are, what a token costs, what training would take."""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from ..data import Dataset, load_text
from ..models import PRESETS, build_model, config_from_json, make_config
from ..quantize import quantization_report
from ..runs import fit_to_vocabulary, resolve_settings
from ..stats import (
    chinchilla,
    flops_per_token,
    generation_state,
    loss_vs_compute_point,
    measured_flops_per_token,
    parameter_breakdown,
    pareto_frontier,
    training_memory,
)
from .common import first_of, friendly, session_of, whole_number

CHARACTER_VOCABULARY = 65


def model_for(name: str | None, preset: str | None, request):
    """A saved model by name, or an untrained model of a preset's configuration."""
    if name:
        return session_of(request).load(name).model, f"model **{name}**"
    if preset:
        family, model, _ = resolve_settings(preset=preset)
        model = build_model(make_config(family, **model, vocab_size=CHARACTER_VOCABULARY))
        return model, f"preset **{preset}** (untrained)"
    raise ValueError("pick a model or a preset")


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def flops_difference(analytic: dict, measured: dict) -> str:
    if not analytic["training"]:
        return "This model multiplies no matrices: each token is a table lookup."
    gap = measured["training"] / analytic["training"] - 1
    if abs(gap) < 5e-4:
        return "Here the two counts agree."
    return (f"The measured training count is {100 * gap:+.1f} % off the analytic one: PyTorch's fused attention "
            "backward recomputes QKᵀ, which the 3× rule does not count.")


def generation_note(config) -> str:
    state = generation_state(config)
    if state["kind"] is None:
        return "Sampling keeps nothing between steps: each token is predicted from a fixed window afresh."
    return f"Sampling one sequence keeps a {state['kind']} of {mib(state['bytes'])} at full context."


@friendly
def stats(name, preset, batch_size, budget_tokens, request: gr.Request):
    """(table rows, bar chart, markdown summary) for a model or a preset's configuration."""
    model, what = model_for(name, preset, request)
    config = model.config
    rows = parameter_breakdown(model)
    table = [[r["module"], r["parameters"], f"{100 * r['share']:.1f} %"] for r in rows]
    chart = go.Figure(go.Bar(x=[r["parameters"] for r in rows], y=[r["module"] for r in rows], orientation="h"))
    chart.update_layout(height=max(250, 22 * len(rows)), margin={"l": 160, "r": 20, "t": 20, "b": 40},
                        yaxis={"autorange": "reversed"}, xaxis_title="parameters")
    analytic = flops_per_token(config)
    measured = measured_flops_per_token(model)
    parameters = model.num_parameters()
    budget_tokens = whole_number(budget_tokens, "the training budget in tokens", 1, 10**15)
    batch_size = whole_number(batch_size, "batch size", 1, 4096)
    budget = 6 * parameters * budget_tokens  # the paper's own C = 6 N D, for every family
    optimal = chinchilla(parameters, budget_flops=budget)
    memory = training_memory(config, int(batch_size))
    share_of_optimal = int(budget_tokens) / optimal["optimal_tokens"]
    summary = f"""{what}: **{parameters:,} parameters**, context {config.block_size} tokens

| FLOPs per token (at full context) | analytic | measured (`torch.utils.flop_counter`) |
|---|---:|---:|
| forward | {analytic['forward']:,.0f} | {measured['forward']:,.0f} |
| training (forward + backward) | {analytic['training']:,.0f} | {measured['training']:,.0f} |

The analytic count is 2 FLOPs per weight of every matrix multiply ({analytic['matmul']:,.0f}) plus attention's
QKᵀ and AV ({analytic['attention']:,.0f}); training is 3× the forward. Embedding lookups cost no FLOPs;
softmax, norms and activations are not counted by either column. {flops_difference(analytic, measured)}

**Chinchilla** (Hoffmann et al. 2022, ~20 tokens per parameter): compute-optimal training for this size is
{optimal['optimal_tokens']:,.0f} tokens ≈ {optimal['optimal_flops']:.2e} FLOPs. Your budget of
{int(budget_tokens):,} tokens costs ≈ {budget:.2e} FLOPs (6·N·D) ({share_of_optimal:.2f}× the optimal token
count); the compute-optimal model for that much compute has
{optimal['compute_optimal_parameters']:,.0f} parameters trained on {optimal['compute_optimal_tokens']:,.0f} tokens.
The paper's fitted law (L = 1.69 + 406.4/N^0.34 + 410.7/D^0.28, its Approach 3) splits the same compute into
{optimal['fitted_parameters']:,.0f} parameters and {optimal['fitted_tokens']:,.0f} tokens
({optimal['fitted_tokens'] / optimal['fitted_parameters']:.0f} per parameter). Both extrapolate far below the
paper's smallest models.

**Training memory** at batch {int(batch_size)} (fp32 weights, AdamW): parameters {mib(memory['parameters'])},
gradients {mib(memory['gradients'])}, optimizer {mib(memory['optimizer'])}, activations
{mib(memory['activations'])} — total ≈ **{mib(memory['total'])}**. {generation_note(config)}
"""
    return table, chart, summary


@friendly
def loss_vs_compute(request: gr.Request):
    """(chart of every model's best val loss against its training FLOPs, note)."""
    points, skipped = [], []
    session = session_of(request)
    for name in session.models():
        checkpoint = session.load(name)
        point = None
        # an adapter's loss is on another corpus, its compute partly its base's
        if checkpoint.config.get("kind") != "lora":
            point = loss_vs_compute_point(config_from_json(checkpoint.config["model"]), checkpoint.metrics)
        if point is None:
            skipped.append(name)
        else:
            points.append({**point, "name": name, "corpus": checkpoint.config.get("corpus", "?")})
    if not points:
        raise ValueError("no model with a loss history to draw")
    figure = go.Figure()
    for corpus in sorted({p["corpus"] for p in points}):
        mine = [p for p in points if p["corpus"] == corpus]
        label = corpus if len(corpus) < 30 else "…" + corpus[-28:]
        figure.add_scatter(x=[p["flops"] for p in mine], y=[p["val_loss"] for p in mine], mode="markers+text",
                           text=[p["name"] for p in mine], textposition="top center", name=f"trained on {label}",
                           hovertemplate="%{text}<br>%{x:.2e} FLOPs<br>val loss %{y:.3f}<extra></extra>")
        frontier = pareto_frontier([(p["flops"], p["val_loss"]) for p in mine])
        figure.add_scatter(x=[f for f, _ in frontier], y=[l for _, l in frontier], mode="lines", line={"dash": "dot"},
                           name=f"best so far ({label})", line_shape="hv")
    figure.add_scatter(x=[p["optimal_flops"] for p in points], y=[p["val_loss"] for p in points], mode="markers",
                       marker={"symbol": "diamond-open", "size": 9}, text=[p["name"] for p in points],
                       name="Chinchilla-optimal compute for that size (6N·20N)",
                       hovertemplate="%{text}: compute-optimal at %{x:.2e} FLOPs<extra></extra>")
    figure.update_layout(xaxis={"type": "log", "title": "training FLOPs to the best val loss"},
                         yaxis={"type": "log", "title": "val loss (nats/token)"}, height=480,
                         margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"orientation": "h", "y": -0.2})
    note = (f"{len(points)} models: every shipped model and every model of yours. A diamond marks the compute at "
            "which a model of that size would be Chinchilla-optimal (about 20 tokens per parameter): a point left of "
            "its diamond saw fewer tokens than that, right of it more. The dotted line joins the best loss reached at "
            "each compute. Losses compare only on the same corpus and tokenizer.")
    if skipped:
        note += f" Not drawn: {', '.join(skipped)} (no FLOPs, no loss history, or a LoRA adapter)."
    return figure, note


@friendly
def quantize(name, request: gr.Request):
    """(table of fp32 against int8 weights: size, tokens/s, val loss; note)."""
    if not name:
        raise ValueError("pick a trained model to quantize (a preset has nothing to quantize)")
    checkpoint = session_of(request).load(name)
    corpus = checkpoint.config.get("corpus")
    if not corpus:
        raise ValueError(f"{name} does not name its corpus, so there is no val split to measure")
    text, _ = fit_to_vocabulary(load_text(corpus), checkpoint.tokenizer, bool(checkpoint.config.get("drop_unknown")))
    dataset = Dataset.from_text(text, checkpoint.tokenizer, checkpoint.model.config.block_size)
    rows = quantization_report(checkpoint.model, dataset)
    table = [[r["model"], mib(r["weight_bytes"]), f"{r['tokens_per_sec']:,.0f}", f"{r['val_loss']:.4f}"] for r in rows]
    fp32, int8 = rows
    note = (f"**{name}**: int8 weights take {fp32['weight_bytes'] / int8['weight_bytes']:.1f}× less memory and change "
            f"the val loss by {int8['val_loss'] - fp32['val_loss']:+.4f} "
            f"(first 256 windows of the {corpus} val split). "
            f"Sampling runs at {int8['tokens_per_sec'] / fp32['tokens_per_sec']:.2f}× the fp32 speed "
            "(greedy, KV cache, 200 tokens, best of 3): on a CPU each product dequantizes its weights, so a model this "
            "small gains memory, "
            "not speed. Embedding tables stay fp32.")
    return table, note


def clear_if_chosen(chosen):
    return None if chosen else gr.update()


def build(choices: list[str], app: gr.Blocks) -> gr.Dropdown:
    with gr.Row():
        model = gr.Dropdown(choices, value=first_of(choices), label="model", scale=2,
                            allow_custom_value=True)
        preset = gr.Dropdown(list(PRESETS), value=None, label="…or an untrained preset", scale=2)
        batch_size = gr.Number(12, step=1, label="batch size", minimum=1)
        budget_tokens = gr.Number(2_000 * 12 * 64, step=1, label="training budget (tokens)", minimum=0)
    run = gr.Button("Show stats", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(headers=["module", "parameters", "share"], label="parameters per module")
        chart = gr.Plot(label="parameters per module")
    # Choosing one source clears the other, so it is clear which one the stats describe.
    model.change(clear_if_chosen, model, preset, api_name="stats_clear_preset")
    preset.change(clear_if_chosen, preset, model, api_name="stats_clear_model")
    run.click(stats, [model, preset, batch_size, budget_tokens], [table, chart, summary], api_name="stats",
              show_progress_on=summary)
    if first_of(choices):  # no empty tab on first open
        app.load(stats, [model, preset, batch_size, budget_tokens], [table, chart, summary],
                 api_name="stats_first_open", show_progress="hidden")
    quantize_button = gr.Button("Quantize the model's weights to int8 (torchao)")
    quantize_note = gr.Markdown()
    quantize_table = gr.Dataframe(headers=["weights", "size", "tokens/s", "val loss"], label="fp32 against int8")
    quantize_button.click(quantize, [model], [quantize_table, quantize_note], api_name="quantize",
                          show_progress_on=quantize_note)
    compute_button = gr.Button("Loss vs compute of every model")
    compute_note = gr.Markdown()
    compute_chart = gr.Plot(label="val loss against training compute")
    compute_button.click(loss_vs_compute, None, [compute_chart, compute_note], api_name="loss_vs_compute",
                         show_progress_on=compute_note)
    return model
