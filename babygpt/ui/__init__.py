"""The Gradio app, one module per tab. Handlers only call tested package functions."""

from __future__ import annotations

import os
import sys

import gradio as gr

from ..checkpoint import is_adapter
from ..machine import describe
from . import (
    attention_lines,
    attention_tab,
    compare_tab,
    experiments_tab,
    hub_tab,
    inside_tab,
    links,
    start_tab,
    stats_tab,
    tokenizer_tab,
    train_tab,
)
from .common import CSS_EXTRA, base_choices, model_choices, on_torch_thread, session_of
from .models import can_be_a_base, end_session, has_attention, load, shipped_checkpoints

TITLE = "BabyGPT"
INTRO = ("Build, train, compare and look inside tiny language models — written from scratch in PyTorch. "
         "Train one on Shakespeare in a minute, then compare it with the shipped models and look at its attention.")


def preload(shipped: dict) -> None:
    """Load every shipped checkpoint, so it is ready before the first visitor arrives."""
    for name, path in shipped.items():
        try:
            load(path)
        except ValueError as error:  # e.g. an adapter whose base was rebuilt: the app still starts
            print(f"warning: shipped checkpoint {name} does not load: {error}", file=sys.stderr)


def build_app() -> gr.Blocks:
    shipped = shipped_checkpoints()
    on_torch_thread(preload, shipped)  # where every handler's torch work runs: see common.py
    choices = list(shipped)
    attention_choices = [name for name, path in shipped.items() if has_attention(path)]
    bases = [name for name, path in shipped.items() if can_be_a_base(path)]
    # Uploads and the files the app hands out sit in gradio's cache, not in a session's folder:
    # gradio deletes them once this old, checking as often, so a visitor's corpus is not kept.
    cache_seconds = int(os.environ.get("BABYGPT_CACHE_SECONDS", 3600))
    with gr.Blocks(title=TITLE, delete_cache=(cache_seconds, cache_seconds)) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}\n\n{machine_line()}")
        link_note = gr.Markdown(visible=False, elem_id="link-note")
        if hub_tab.ON_A_SPACE:  # one Space trains for one visitor at a time: a copy of one's own does not wait
            gr.DuplicateButton("Duplicate this Space to train without waiting", size="sm")
        model_names = gr.JSON(visible=False)
        with gr.Tabs() as tabs:
            with gr.Tab("Start here", id="start"):
                start_buttons = start_tab.build(app)
            with gr.Tab("Train", id="train"):
                train_form = train_tab.build(model_names, bases)
            with gr.Tab("Compare", id="compare"):
                compare_selector, compare_prompt = compare_tab.build(choices)
            with gr.Tab("Inside", id="inside"):
                inside_selector = inside_tab.build(choices, app)
            with gr.Tab("Attention", id="attention"):
                attention_selector = attention_tab.build(attention_choices, app)
            with gr.Tab("Model stats", id="stats"):
                stats_selector = stats_tab.build(choices, app)
            with gr.Tab("Experiments", id="experiments"):
                experiments_selector, ablation = experiments_tab.build(choices, app)
            with gr.Tab("Tokenizers", id="tokenizers"):
                tokenizer_lab = tokenizer_tab.build(app)
            with gr.Tab("Hub", id="hub"):
                hub_selector = hub_tab.build(choices, model_names)
        base_selector = train_form["base"]
        start_tab.connect(start_buttons, start_tab.Targets(
            tabs, compare_selector, compare_prompt, train_form["mode"], train_form["preset"], train_form["corpus"],
            train_form["max_seconds"], base_selector, inside_selector, attention_selector, hub_selector))

        def refresh(request: gr.Request):
            session = session_of(request)
            names = model_choices(session)
            return (gr.update(choices=names), gr.update(choices=names),
                    gr.update(choices=model_choices(session, attention_only=True)), gr.update(choices=names),
                    gr.update(choices=names), gr.update(choices=base_choices(session)), gr.update(choices=names),
                    gr.update(choices=[name for name, path in session.models().items() if not is_adapter(path)]))

        selectors = [compare_selector, inside_selector, attention_selector, stats_selector, hub_selector,
                     base_selector, experiments_selector, ablation["base_model"]]
        model_names.change(refresh, None, selectors, api_name="refresh_models")
        app.load(refresh, None, selectors, api_name="models")
        tokenizer_tab.connect(tokenizer_lab, tabs, ablation)
        linked = {**train_form["fields"], **ablation["fields"]}
        app.load(links.opener(linked), None, [tabs, link_note, *linked.values()], api_name="open_link",
                 show_progress="hidden")
        app.unload(forget_session)
    return app


def machine_line() -> str:
    """Where this app runs, from the description every benchmark report starts with: the speeds on
    its pages (tokens/s, MFU) are this machine's."""
    facts = describe()
    gpu = f", GPU {facts['GPU']}" if facts["GPU"] != "none" else ""
    return (f"<small>Running on {facts['cpu']} ({facts['logical cpus']} logical CPUs, {facts['torch threads']} "
            f"torch threads{gpu}, torch {facts['torch']}): every speed shown is this machine's.</small>")


def forget_session(request: gr.Request) -> None:
    """The visitor left: stop their training, delete their models and files, leave the trainer's line."""
    train_tab.TRAINER_LINE.leave(request.session_hash)
    end_session(request.session_hash)


CSS = compare_tab.CSS + attention_lines.CSS + start_tab.CSS + inside_tab.CSS + tokenizer_tab.CSS + CSS_EXTRA
