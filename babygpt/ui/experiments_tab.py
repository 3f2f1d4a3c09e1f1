"""Experiments tab: what a choice does to training, with the runs' loss curves on one chart.

"Runs, overlaid" draws any of the visitor's models (shipped, trained here, loaded from the Hub)
against step, tokens, FLOPs or wall time, with a table to read them by. "One-knob ablation"
trains a base several times with one setting changed, same seed and budget, and ranks them.
The math lives in ``babygpt.experiments`` and ``babygpt.ablation``; this module only reads the
form and shows what they return.

An ablation runs one training per event, each in the trainer's queue ("train" concurrency): the
first event plans and checks it, and each run's event hands a token to the next one through a
hidden textbox, so another visitor's training queued meanwhile goes in between.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid

import gradio as gr

from ..ablation import (
    LEADERBOARD_HEADERS,
    MAX_SEEDS,
    MAX_VALUES,
    AblationSpec,
    ablation_figure,
    base_from_checkpoint,
    knobs_for,
    leaderboard_rows,
    plan,
    ranked_by,
    run_one,
    split_values,
    write_results,
)
from ..checkpoint import is_adapter, read_adapter_config, read_config
from ..data import BUILTIN
from ..experiments import TABLE_HEADERS, X_AXES, comparability_note, comparison_rows, overlay_figure, run_of
from ..models import PRESETS, get_preset
from .common import friendly, session_key, session_of, whole_number
from .links import link_query
from .train_tab import TRAINER_LINE, cleared_in_the_page, copy_link_button, stop_answer, trainer_turn

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


FIRST_ABLATION_PRESET = "gpt"
APP_MAX_SECONDS = 60  # per run: a shared Space trains for one visitor at a time
DRAW_EVERY_SECONDS = 0.5
NOISE_NOTE = (
    "Every run gets the same seed and the same wall-clock budget; the leaderboard ranks the settings by the val "
    "loss of each run's last evaluation (bits per character when the tokenizers differ). With 2 or more seeds per "
    "setting, the spread is the standard deviation between seeds, and a gap to the best smaller than the larger "
    "spread is labelled *within noise*: the seeds alone could make it.")


def knob_choices(preset: str, knob: str | None = None, request: gr.Request = None):
    """The knobs of the preset's family, in the dropdown: the knob a link named, where a link opened
    the page with this preset; else the knob chosen, where the family has it too; else its first."""
    return knob_update(get_preset(preset)[0], knob, session_of(request).pending_link, preset)


def knob_update(family: str, knob: str | None, pending: dict | None = None, preset: str | None = None):
    knobs = knobs_for(family)
    value = knob if knob in knobs else "n_layer" if "n_layer" in knobs else knobs[0]
    if pending and preset is not None and pending.get("ablate_preset") == preset:
        pending.pop("ablate_preset")
        value = pending.pop("knob", value)
    return gr.update(choices=knobs, value=value)


def ablation_link(preset, knob, values, seeds, budget, corpus) -> str:
    """The query of a link that fills this ablation's form."""
    return link_query({"tab": "experiments", "ablate_preset": preset, "knob": knob, "values": values, "seeds": seeds,
                       "budget": budget, "ablate_corpus": corpus})


@friendly
def base_of(session, preset, base_model) -> dict:
    """The ablation's base: one of the session's models' settings where one is chosen, else the preset."""
    if not base_model:
        return {"preset": str(preset)}
    path = session.path_of(base_model)
    config = read_adapter_config(path) if is_adapter(path) else read_config(path)
    return {k: v for k, v in base_from_checkpoint(config).items() if k != "corpus"}  # the form names the corpus


@friendly
def knobs_of_base(preset, base_model, knob=None, request: gr.Request = None):
    """The knobs of the chosen model's family (or the preset's, with no model chosen)."""
    if not base_model:
        return knob_update(get_preset(preset)[0], knob)
    return knob_update(base_of(session_of(request), preset, base_model)["family"], knob)


@friendly
def start_ablation(preset, knob, values, seeds, budget, corpus, base_model=None, request: gr.Request = None):
    """Check and plan the ablation; (status, chart, leaderboard, files, the first run's token)."""
    session = session_of(request)
    if session.ablation.get("in_run"):
        raise ValueError("a run of your ablation is training: stop it first")
    spec = AblationSpec(str(knob), split_values(values or ""), corpus=str(corpus), max_seconds=budget,
                        seeds=whole_number(seeds, "seeds per setting", 1, MAX_SEEDS),
                        **base_of(session, preset, base_model))
    if corpus not in BUILTIN:
        raise ValueError(f"the corpus must be one of {', '.join(BUILTIN)}, got {corpus!r}")
    runs = plan(spec, max_seconds_cap=APP_MAX_SECONDS)
    token = uuid.uuid4().hex
    session.ablation = {"spec": spec, "runs": runs, "results": [], "token": token, "next": 0, "stop": False,
                        "running": True, "folder": session.folder / f"ablation-{token[:8]}"}
    status = (f"{len(runs)} runs queued ({spec.knob} ∈ {{{', '.join(spec.values)}}} × {spec.seeds} seed(s), "
              f"{spec.max_seconds:g} s each); each takes its turn at the trainer.")
    return status, ablation_figure(spec, []), [], None, f"{token}:0"


@friendly
def ablation_run(ticket, request: gr.Request = None):
    """Run the ablation's next run (the ticket names it); stream (status, chart, leaderboard,
    files, the next run's ticket)."""
    session = session_of(request)
    state = session.ablation
    token, _, index = str(ticket or "").partition(":")
    if not state or token != state.get("token") or not index.isdigit() or int(index) != state["next"]:
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()  # a stale or foreign ticket starts nothing
        return
    spec, runs, results, index = state["spec"], state["runs"], state["results"], int(index)
    if state["stop"]:
        yield from finish(session, "stopped")
        return
    kind = repr(("ablation", spec.preset, spec.knob, spec.corpus))
    last_draw, turn_reason = 0.0, None
    with trainer_turn(request, spec.max_seconds, kind) as turn, running(state):
        run = runs[index]
        name, run_dir = session.new_model_dir(run.name)
        for event in run_one(spec, runs, index, run_dir, stop=lambda: state["stop"]):
            session.touch()
            TRAINER_LINE.still_running(session_key(request))
            if event.kind == "finished":
                results.append(event.result)
                session.own[name] = run_dir
                turn_reason = "max_seconds" if event.result.train_seconds >= spec.max_seconds else "max_iters"
            elif event.kind == "train" and time.monotonic() - last_draw >= DRAW_EVERY_SECONDS:
                last_draw = time.monotonic()
                e = event.train_event
                status = (f"run {index + 1} of {len(runs)}: **{run.label}**, seed {run.seed} — step {e.step:,}, "
                          f"{e.elapsed:.0f} of {spec.max_seconds:g} s")
                yield status, ablation_figure(spec, results, event), leaderboard_rows(results), gr.skip(), gr.skip()
        turn["reason"] = turn_reason
    state["next"] = index + 1
    if state["next"] < len(runs) and not state["stop"]:
        status = f"{len(results)} of {len(runs)} runs done; the next one waits for its turn at the trainer…"
        yield status, ablation_figure(spec, results), leaderboard_rows(results), gr.skip(), f"{token}:{index + 1}"
    else:
        yield from finish(session, "stopped" if state["stop"] else "done")


@contextlib.contextmanager
def running(state: dict):
    """The ablation's run is training (a new ablation waits for it), until it ends however it ends."""
    state["in_run"] = True
    try:
        yield
    finally:
        state["in_run"] = False


def finish(session, how: str):
    """The ablation's last answer: its leaderboard and the results to download."""
    state = session.ablation
    state["running"] = False
    spec, results = state["spec"], state["results"]
    if not results:
        yield "stopped before any run finished.", ablation_figure(spec, []), [], None, gr.skip()
        return
    files = [str(path) for path in write_results(spec, results, state["folder"])]
    metric = ranked_by(results).replace("_", " ")
    status = (f"{how}: {len(results)} of {len(state['runs'])} runs, ranked by {metric}. Every run is now one of your "
              "models (my-…-seed…): draw them above, compare them, look inside.")
    yield status, ablation_figure(spec, results), leaderboard_rows(results), files, gr.skip()


def stop_ablation(request: gr.Request = None) -> str:
    state = session_of(request).ablation
    if not state.get("running"):
        return "no ablation of yours is running"
    state["stop"] = True
    return "stopping: the run in progress ends after its current step, and no further run starts"


def build_ablation() -> dict:
    """The ablation's section; returns its fields by the names a link gives them, and its Run
    button's event (the tokenizer lab's button starts one too)."""
    gr.Markdown("### One-knob ablation\nTrain one base several times with one setting changed, and rank them.")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value=FIRST_ABLATION_PRESET, label="base (preset)")
        base_model = gr.Dropdown([], value=None, allow_custom_value=True,
                                 label="…or one of your models' settings as the base (instead of the preset)")
        knob = gr.Dropdown(knobs_for(get_preset(FIRST_ABLATION_PRESET)[0]), value="n_layer",
                           label="knob (the setting to change)")
        values = gr.Textbox("1,2,4", label=f"values (2 to {MAX_VALUES}, comma-separated)",
                            info="e.g. 1,2,4 · char,bpe-512 · adamw,muon · gpt,llama,lstm")
    with gr.Row():
        seeds = gr.Number(1, step=1, minimum=1, maximum=MAX_SEEDS, label=f"seeds per value (1 to {MAX_SEEDS})")
        budget = gr.Number(20, minimum=1, maximum=APP_MAX_SECONDS,
                           label=f"time budget per run, seconds (max_seconds, ≤ {APP_MAX_SECONDS})")
        corpus = gr.Dropdown(list(BUILTIN), value="shakespeare", label="corpus")
    with gr.Row():
        start = gr.Button("Run the ablation", variant="primary")
        stop = gr.Button("Stop the ablation")
    stop_note = stop_answer(stop, stop_ablation, "stop_ablation", "ablation-stop-note", [start.click])
    status = gr.Markdown("Press **Run the ablation**: the runs train one after another and their curves appear "
                         "here as they train.", elem_id="ablation-status")
    chart = gr.Plot(label="the ablation's runs (val solid, train dashed)", elem_id="ablation-chart")
    board = gr.Dataframe(headers=LEADERBOARD_HEADERS, label="leaderboard", elem_id="ablation-board")
    files = gr.File(label="results (CSV and JSON)", file_count="multiple", elem_id="ablation-files")
    gr.Markdown(NOISE_NOTE)
    ticket = gr.Textbox(visible=False)
    outputs = [status, chart, board, files, ticket]
    preset.change(knob_choices, [preset, knob], knob, api_name="ablation_knobs")
    base_model.change(knobs_of_base, [preset, base_model, knob], knob, api_name="ablation_base_knobs")
    start_event = dict(fn=start_ablation, inputs=[preset, knob, values, seeds, budget, corpus, base_model],
                       outputs=outputs,
                       show_progress_on=status, concurrency_limit=None)
    start.click(**start_event, api_name="ablate")
    ticket.change(ablation_run, ticket, outputs, api_name="ablation_run", concurrency_limit=1, concurrency_id="train",
                  show_progress_on=status)
    form = [preset, knob, values, seeds, budget, corpus]
    copy_link_button("Copy a link to this ablation", ablation_link, form, "ablation_link")
    return {"fields": dict(zip(("ablate_preset", "knob", "values", "seeds", "budget", "ablate_corpus"), form)),
            "start": start_event, "clear_stop_note": cleared_in_the_page(stop_note), "base_model": base_model}


def build(choices: list[str], app: gr.Blocks) -> tuple[gr.Dropdown, dict]:
    """The tab; returns its model selector (the app refreshes it with the session's models) and the
    ablation's fields (a link fills them) and Run event."""
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
    return names, build_ablation()
