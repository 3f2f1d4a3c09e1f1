"""Hub tab: download a model as a zip, push it to the Hugging Face Hub, load one by repo id.

A push can use transformers' layout (the repo then runs in ``pipeline``); a load takes BabyGPT
repos and transformers GPT-2 / Llama repos (imported), up to ``BABYGPT_MAX_MODEL_MB`` of weights.
On a Space the token is the visitor's own, from "Sign in with Hugging Face"; locally it is
``HF_TOKEN`` or the stored login. ``HF_ENDPOINT`` points the tab at another Hub.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import gradio as gr

from ..checkpoint import is_adapter, read_adapter_config, read_config
from ..from_transformers import max_weight_bytes
from ..hub import download_checkpoint, push_checkpoint
from .common import first_of, friendly_io, model_choices, session_of

ON_A_SPACE = bool(os.environ.get("SPACE_ID"))
LAYOUT_CHOICES = [("BabyGPT's own files (babygpt)", "babygpt"),
                  ("runs in transformers' pipeline, BabyGPT's files in babygpt/ (transformers)", "transformers")]


@friendly_io
def download(name, request: gr.Request):
    """A zip of the chosen model's checkpoint directory, made in this session's folder."""
    if not name:
        raise ValueError("pick a model")
    session = session_of(request)
    path = session.path_of(name)
    return shutil.make_archive(str(session.folder / f"{name}-checkpoint"), "zip", path)


def visitor_token(oauth_token: gr.OAuthToken | None) -> str | None:
    return oauth_token.token if oauth_token is not None else None  # None: HF_TOKEN or the stored login


@friendly_io
def push(name, repo_id, private, layout, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
    if not name:
        raise ValueError("pick a model to push")
    pushed = push_checkpoint(session_of(request).path_of(name), repo_id, token=visitor_token(oauth_token),
                             private=bool(private), endpoint=os.environ.get("HF_ENDPOINT"), layout=layout)
    card = ("with a generated model card" if pushed.card_written
            else "keeping the repo's own README.md (it was written or edited by hand; only its val loss in the "
                 "metadata follows the checkpoint)")
    runs = (" in transformers' layout: `pipeline(\"text-generation\", model=\"" + repo_id.strip() + "\")` runs it"
            if layout == "transformers" else "")
    return f"pushed **{name}** to [{pushed.url}]({pushed.url}){runs}, {card}"


@friendly_io
def load(repo_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
    session = session_of(request)
    name, folder = session.new_model_dir((repo_id or "").strip().replace("/", "-"))
    download_checkpoint(repo_id, folder, token=visitor_token(oauth_token), endpoint=os.environ.get("HF_ENDPOINT"),
                        bases=session.models(), max_bytes=max_weight_bytes())
    session.own[name] = folder
    fetched_base = ""
    if is_adapter(folder):
        base = Path(read_adapter_config(folder)["base"])
        if base.parent == session.folder.resolve() and base not in session.models().values():  # fetched with it
            session.own[f"{name}-base"] = base
            fetched_base = f"its base fetched from the Hub as **{name}-base** (hash checked), "
    config = {} if is_adapter(folder) else read_config(folder)
    imported = config.get("imported_from")
    how = (f"imported from transformers ({', '.join(imported['architectures']) or imported['model_type']}) into "
           f"BabyGPT's {config['model']['family']} family, " if imported else "")
    return (f"loaded **{repo_id.strip()}** as **{name}**, {how}{fetched_base}now in every tab's model list: look at "
            "it in Compare, Inside, Attention and Model stats", model_choices(session))


def build(choices: list[str], model_names: gr.JSON) -> gr.Dropdown:
    if ON_A_SPACE:
        gr.LoginButton()  # locally it would need a stored login just to render
    limit = max_weight_bytes()
    gr.Markdown("Download a model's checkpoint as a zip, push it to a Hugging Face model repo with a generated "
                "model card, or load one back by its repo id: it joins every tab's model list. A transformers "
                "GPT-2 or Llama repo (such as `openai-community/gpt2`, 124M parameters) is imported, "
                + (f"up to {limit / 2**20:,.0f} MB of weights." if limit else "of any size."))
    model = gr.Dropdown(choices, value=first_of(choices), label="model", allow_custom_value=True)
    with gr.Row():
        button = gr.Button("Download checkpoint (zip)")
        archive = gr.File(label="checkpoint")
    with gr.Row():
        repo_id = gr.Textbox(label="push to repo id (owner/name)", placeholder="alice/babygpt-shakespeare", scale=3)
        private = gr.Checkbox(label="private", value=True)
        push_button = gr.Button("Push to the Hub")
    layout = gr.Radio(LAYOUT_CHOICES, value="babygpt", label="repo layout (layout)")
    with gr.Row():
        source = gr.Textbox(label="load from repo id: a BabyGPT repo, or a transformers GPT-2 or Llama",
                            placeholder="alice/babygpt-shakespeare or openai-community/gpt2", scale=3)
        load_button = gr.Button("Load from the Hub")
    status = gr.Markdown()
    button.click(download, model, archive, api_name="download")
    push_button.click(push, [model, repo_id, private, layout], status, api_name="push", show_progress_on=status)
    load_button.click(load, source, [status, model_names], api_name="load", show_progress_on=status)
    return model
