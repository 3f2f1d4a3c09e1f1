import os

# Set before anything imports gradio or huggingface_hub: no telemetry, no network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from babygpt.data import load_text
from babygpt.models import make_config

# Every family and every option that changes the model's computation, at a tiny size.
SMALL = {"block_size": 16}
TRANSFORMER = {**SMALL, "n_layer": 2, "n_head": 4, "n_embd": 32}
VARIANTS = {
    "bigram": ("bigram", SMALL),
    "ngram": ("ngram", {**SMALL, "n": 3, "n_embd": 8, "n_hidden": 32}),
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
