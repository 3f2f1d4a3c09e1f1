import os
import shutil
import tempfile

# Set before anything imports gradio or huggingface_hub: no telemetry, no network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Measured machine facts (the matmul peak behind MFU) go to a folder of the test run, not ~/.cache.
os.environ.setdefault("BABYGPT_CACHE_DIR", tempfile.mkdtemp(prefix="babygpt-cache-"))

import contextlib
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from babygpt.data import load_text
from babygpt.models import make_config

from hub_server import FakeHub, record_retry_waits

ROOT = Path(__file__).resolve().parent.parent

# Every family and every option that changes the model's computation, at a tiny size.
SMALL = {"block_size": 16}
TRANSFORMER = {**SMALL, "n_layer": 2, "n_head": 4, "n_embd": 32}
VARIANTS = {
    "bigram": ("bigram", SMALL),
    "ngram": ("ngram", {**SMALL, "n": 3, "n_embd": 8, "n_hidden": 32}),
    "lstm": ("lstm", {**SMALL, "n_layer": 2, "n_embd": 16, "n_hidden": 24}),
    "gpt": ("gpt", TRANSFORMER),
    "gpt-single-head": ("gpt", {**TRANSFORMER, "n_layer": 1, "n_head": 1, "feed_forward": False, "layer_norm": False}),
    "gpt-multi-head": ("gpt", {**TRANSFORMER, "n_layer": 1, "feed_forward": False, "layer_norm": False}),
    "gpt-time-weighted": ("gpt", {**TRANSFORMER, "time_weighting": True}),
    "gpt-low-rank": ("gpt", {**TRANSFORMER, "attn_rank": 4}),
    "gpt-untied-tanh-nobias": ("gpt", {**TRANSFORMER, "activation": "gelu_tanh", "bias": False, "tie_weights": False}),
    "llama-gqa": ("llama", {**TRANSFORMER, "n_kv_head": 2}),
    "llama-mha": ("llama", {**TRANSFORMER, "n_kv_head": 4}),
    "llama-mqa-tied": ("llama", {**TRANSFORMER, "n_kv_head": 1, "tie_weights": True}),
}
ATTENTION_VARIANTS = [name for name, (family, _) in VARIANTS.items() if family in ("gpt", "llama")]


def variant_config(name: str, vocab_size: int = 20, **overrides):
    family, settings = VARIANTS[name]
    return make_config(family, vocab_size=vocab_size, **{**settings, **overrides})


def randomize_(model: torch.nn.Module, scale: float = 0.5, seed: int = 0) -> None:
    """Large random values in every parameter (norm gains too), so that equality tests are sharp."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return load_text("shakespeare")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log_to: Path | None = None, **env_extra):
    """``python app.py`` on a free port of 127.0.0.1, as a user starts it; stopped afterwards.
    ``log_to``: keep everything it prints in that file."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
           **env_extra}
    started = time.monotonic()
    # a file, not a pipe: nobody reads while the server runs
    log = open(log_to, "w+") if log_to else tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() - started > 60:
                process.kill()
                log.seek(0)
                raise AssertionError("the app did not start:\n" + log.read())
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def cli_here(*args) -> subprocess.CompletedProcess:
    """``python -m babygpt ARGS`` as ``babygpt.cli.main(ARGS)`` in this process: the same code, its
    exit status, stdout and stderr, without a Python start-up (a couple of seconds) per case."""
    from babygpt.cli import main

    out, err = io.StringIO(), io.StringIO()
    # what a command may change for the rest of its process: its Ctrl-C handler, torch's threads
    handler, threads = signal.getsignal(signal.SIGINT), torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit:  # argparse's --help and usage errors
                code = exit.code
    finally:
        signal.signal(signal.SIGINT, handler)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def raw_call(url: str, api_name: str, body: str, http: httpx.Client | None = None) -> tuple[str, object]:
    """An endpoint called over plain HTTP, as any client can: (last event, its data). ``http``: one
    connection kept for many calls (with a ``session_hash`` in the body they are one visitor's;
    without, each call is a new visitor, whose copy of the page gradio makes first)."""
    http = http or httpx
    posted = http.post(f"{url}gradio_api/call/{api_name}", content=body,
                       headers={"content-type": "application/json"}, timeout=30)
    posted.raise_for_status()
    answer = http.get(f"{url}gradio_api/call/{api_name}/{posted.json()['event_id']}", timeout=120).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", answer, flags=re.MULTILINE)
    event, data = events[-1]
    return event, json.loads(data)


@pytest.fixture(scope="session")
def app_and_its_tmp(tmp_path_factory):
    """One ``python app.py`` for the whole run: (url, the TMPDIR it keeps visitors' files in), so
    that a test can look at what appeared there while it ran."""
    server_tmp = tmp_path_factory.mktemp("server")
    with running_app(log_to=os.environ.get("BABYGPT_TEST_APP_LOG"), TMPDIR=str(server_tmp)) as url:
        yield url, server_tmp


@pytest.fixture(scope="session")
def app_url(app_and_its_tmp):
    return app_and_its_tmp[0]


HUB_TOKEN = "hf_secret_test_token_1234"


@pytest.fixture
def hub(monkeypatch):
    """A Hub server on 127.0.0.1; ``hub.retry_waits`` lists the waits huggingface_hub skipped."""
    # huggingface_hub reads these once, at import: offline mode would refuse even 127.0.0.1, and
    # the xet transfer protocol (hf_xet is installed) is not spoken by the test server.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)
    waits = record_retry_waits(monkeypatch.setattr)
    with FakeHub(token=HUB_TOKEN) as server:
        server.retry_waits = waits
        yield server


def adapter_on_a_local_base(tmp_path):
    """A copy of the shipped gpt that is only on this machine, and a LoRA adapter trained on it."""
    from babygpt.lora import LoRAConfig
    from babygpt.runs import new_finetune

    base = tmp_path / "my-base"
    shutil.copytree(ROOT / "checkpoints" / "gpt", base)
    trainer = new_finetune(str(base), "kjv", LoRAConfig(r=2), {"max_iters": 2, "eval_iters": 1}, tmp_path / "adapter",
                           drop_unknown=True)
    for _ in trainer.run():
        pass
    return base, tmp_path / "adapter"
