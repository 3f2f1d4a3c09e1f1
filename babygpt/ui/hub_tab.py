"""Hub tab: download a model as a zip, push it to the Hugging Face Hub, load one by repo id.

On a Space the token is the visitor's own, from "Sign in with Hugging Face"; locally it is
``HF_TOKEN`` or the stored login. ``HF_ENDPOINT`` points the tab at another Hub.
"""

from __future__ import annotations

import os
import shutil

import gradio as gr

from ..hub import download_checkpoint, push_checkpoint
from .common import first_of, friendly_io, model_choices, session_of

ON_A_SPACE = bool(os.environ.get("SPACE_ID"))


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
def push(name, repo_id, private, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
    if not name:
        raise ValueError("pick a model to push")
    pushed = push_checkpoint(session_of(request).path_of(name), repo_id, token=visitor_token(oauth_token),
                             private=bool(private), endpoint=os.environ.get("HF_ENDPOINT"))
    card = ("with a generated model card" if pushed.card_written
            else "keeping the repo's own README.md (it was written or edited by hand; only its val loss in the "
                 "metadata follows the checkpoint)")
    return f"pushed **{name}** to [{pushed.url}]({pushed.url}), {card}"


@friendly_io
def load(repo_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
    session = session_of(request)
    name, folder = session.new_model_dir((repo_id or "").strip().replace("/", "-"))
    download_checkpoint(repo_id, folder, token=visitor_token(oauth_token), endpoint=os.environ.get("HF_ENDPOINT"),
                        bases=session.models())
    session.own[name] = folder
    return f"loaded **{repo_id.strip()}** as **{name}**: it is now in every tab's model list", model_choices(session)


def build(choices: list[str], model_names: gr.JSON) -> gr.Dropdown:
    if ON_A_SPACE:
        gr.LoginButton()  # locally it would need a stored login just to render
    gr.Markdown("Download a model's checkpoint as a zip, push it to a Hugging Face model repo with a generated "
                "model card, or load one back by its repo id: it joins every tab's model list.")
    model = gr.Dropdown(choices, value=first_of(choices), label="model", allow_custom_value=True)
    with gr.Row():
        button = gr.Button("Download checkpoint (zip)")
        archive = gr.File(label="checkpoint")
    with gr.Row():
        repo_id = gr.Textbox(label="push to repo id (owner/name)", placeholder="alice/babygpt-shakespeare", scale=3)
        private = gr.Checkbox(label="private", value=True)
        push_button = gr.Button("Push to the Hub")
    with gr.Row():
        source = gr.Textbox(label="load from repo id", placeholder="alice/babygpt-shakespeare", scale=3)
        load_button = gr.Button("Load from the Hub")
    status = gr.Markdown()
    button.click(download, model, archive, api_name="download")
    push_button.click(push, [model, repo_id, private], status, api_name="push", show_progress_on=status)
    load_button.click(load, source, [status, model_names], api_name="load", show_progress_on=status)
    return model
