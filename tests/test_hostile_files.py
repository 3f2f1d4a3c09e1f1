"""Hostile files: a checkpoint directory holding pickle is refused, and its payload never runs."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from babygpt.checkpoint import load_checkpoint
from babygpt.hub import download_checkpoint, push_checkpoint
from babygpt.ui.models import shipped_checkpoints

from conftest import HUB_TOKEN, ROOT

GPT = shipped_checkpoints()["gpt"]
ADAPTER = shipped_checkpoints()["gpt-kjv-lora"]
PICKLE_NAMES = ["pytorch_model.bin", "model.pt", "weights.pth", "state.pkl", "last.ckpt"]


class Payload:
    """Unpickling this writes a marker file: proof that loading ran the file's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


def plant(directory, name, marker):
    (directory / name).write_bytes(pickle.dumps(Payload(marker)))


def planted_copy(source, tmp_path, name) -> tuple:
    """(a copy of ``source`` holding a live payload named ``name``, the file it writes if it runs)."""
    directory, marker = tmp_path / source.name, tmp_path / "ran"
    shutil.copytree(source, directory)
    plant(directory, name, marker)
    return directory, marker


def test_the_payload_is_live(tmp_path):
    """Without this, the tests below could pass because the payload does nothing. Unpickling the
    planted bytes calls ``function(*arguments)`` from ``__reduce__``: the bytes carry both, and
    that call writes the marker (made here directly: this project never unpickles, not even here)."""
    marker = tmp_path / "ran"
    function, arguments = Payload(marker).__reduce__()
    planted = pickle.dumps(Payload(marker))
    assert b"exec" in planted and arguments[0].encode() in planted
    function(*arguments)
    assert marker.read_text() == "the payload ran"


@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_a_checkpoint_holding_pickle_is_refused_and_the_payload_never_runs(tmp_path, name):
    directory, marker = planted_copy(GPT, tmp_path, name)
    with pytest.raises(ValueError, match=f"holds pickle files \\({name}\\).*never loads pickle"):
        load_checkpoint(directory)
    (directory / "model.safetensors").unlink()  # only the pickle left: still refused, not loaded
    with pytest.raises(ValueError, match="never loads pickle"):
        load_checkpoint(directory)
    assert not marker.exists()


def test_an_adapter_or_its_base_holding_pickle_is_refused(tmp_path):
    adapter, marker = planted_copy(ADAPTER, tmp_path, "adapter_model.bin")
    with pytest.raises(ValueError, match="never loads pickle"):
        load_checkpoint(adapter)
    assert not marker.exists()


def test_the_command_line_refuses_it_with_a_message_not_a_traceback(tmp_path):
    directory, marker = planted_copy(GPT, tmp_path, "pytorch_model.bin")
    for command in (["sample", str(directory), "--prompt", "Hi", "--max-new-tokens", "5"], ["eval", str(directory)]):
        result = subprocess.run([sys.executable, "-m", "babygpt", *command], cwd=ROOT, capture_output=True, text=True,
                                timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode != 0 and "never loads pickle" in result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_hub_repo_holding_pickle_downloads_only_safetensors_and_json(hub, tmp_path):
    marker = tmp_path / "ran"
    push_checkpoint(GPT, "mallory/gpt", token=HUB_TOKEN, endpoint=hub.url)
    hub.repos["mallory/gpt"]["files"]["pytorch_model.bin"] = pickle.dumps(Payload(marker))
    assert "pytorch_model.bin" in HfApi(endpoint=hub.url, token=HUB_TOKEN).list_repo_files("mallory/gpt")
    local = download_checkpoint("mallory/gpt", tmp_path / "copy", token=HUB_TOKEN, endpoint=hub.url)
    assert not any(p.suffix == ".bin" for p in local.iterdir())
    load_checkpoint(local)
    assert not marker.exists()


def test_a_hub_repo_listing_files_outside_itself_writes_nothing_outside_the_download(hub, tmp_path):
    """A hostile Hub may list any name: climbing out with ../, absolute, or a checkpoint file in a
    subfolder. Only the checkpoint's own file names are fetched, into the download's folder."""
    push_checkpoint(GPT, "mallory/climb", token=HUB_TOKEN, endpoint=hub.url)
    repo = hub.repos["mallory/climb"]
    hostile = {"../../escape.json": b"{}", "/tmp/absolute.json": b"{}", "sub/config.json": b"{}",
               "..%2F..%2Fencoded.json": b"{}"}
    hub._commit(repo, {**repo["files"], **hostile}, "hostile names")
    assert set(hostile) <= set(HfApi(endpoint=hub.url, token=HUB_TOKEN).list_repo_files("mallory/climb"))
    (tmp_path / "inside").mkdir()
    local = download_checkpoint("mallory/climb", tmp_path / "inside" / "copy", token=HUB_TOKEN, endpoint=hub.url)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["inside", "copy", *(p.name for p in local.iterdir())])
    assert all(p.is_file() and not p.is_symlink() for p in local.iterdir())
    assert not Path("/tmp/absolute.json").exists()
    load_checkpoint(local)
