"""Hub tab: take a model away as a zip of its checkpoint directory."""

from __future__ import annotations

import shutil

import gradio as gr

from .common import friendly, session_of


@friendly
def download(name, request: gr.Request):
    """A zip of the chosen model's checkpoint directory, made in this session's folder."""
    if not name:
        raise ValueError("pick a model")
    session = session_of(request)
    path = session.path_of(name)
    return shutil.make_archive(str(session.folder / f"{name}-checkpoint"), "zip", path)


def build(choices: list[str]) -> gr.Dropdown:
    model = gr.Dropdown(choices, value=None, label="model", allow_custom_value=True)
    button = gr.Button("Download checkpoint (zip)")
    archive = gr.File(label="checkpoint")
    gr.Markdown("Pushing to and loading from the Hugging Face Hub comes in the next release.")
    button.click(download, model, archive, api_name="download")
    return model
