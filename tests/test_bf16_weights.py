"""babygpt.kernels.bfloat16_weights: a bf16 copy of a model for generation, and its place in Compare."""

import copy

import pytest
import torch

from babygpt import kernels
from babygpt.checkpoint import load_checkpoint, shipped_checkpoints
from babygpt.kernels import ONEDNN_AVAILABLE, PackedBF16Linear, bfloat16_weights
from babygpt.machine import bf16_instructions
from babygpt.sampling import token_ids
from babygpt.ui import compare_tab
from babygpt.ui.models import load

SHIPPED = {name: path for name, path in shipped_checkpoints().items() if (path / "model.safetensors").exists()}
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_bf16_copy_leaves_the_model_alone_and_rounds_only_near_ties(name):
    checkpoint = load_checkpoint(SHIPPED[name])
    model = checkpoint.model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    half = bfloat16_weights(model)
    if not model.generates_in_bf16:  # the LSTM's recurrence stays fp32: it is given back as it is
        assert half is model and all(p.dtype == torch.float32 for p in model.parameters())
        return
    assert all(p.dtype == torch.bfloat16 for p in half.parameters() if p.is_floating_point())
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    assert not half.training
    ids = torch.tensor([checkpoint.tokenizer.encode(TEXT)[: model.config.block_size]])
    with torch.no_grad():
        full_logits, half_logits = model(ids)[0][0], half(ids)[0][0].float()
    # bf16 keeps 8 bits of mantissa: the logits move by rounding, so the likeliest token may change
    # only where the two likeliest were nearly tied in float32.
    top2 = full_logits.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.5
    assert clear.sum() >= len(clear) // 3, "the check needs positions with a clear favourite"
    assert torch.equal(full_logits.argmax(-1)[clear], half_logits.argmax(-1)[clear])
    assert (full_logits - half_logits).abs().max() < 0.1 * full_logits.abs().max()


@pytest.mark.parametrize("name", ["gpt", "llama", "gpt-low-rank"])
def test_a_bf16_copy_generates_with_a_cache_of_its_own_dtype(name):
    model = bfloat16_weights(load_checkpoint(SHIPPED[name]).model)
    steps = list(token_ids(model, [1, 2, 3], 20, temperature=0.0))
    assert len(steps) == 20 and all(0 <= t < model.config.vocab_size for t, _, _ in steps)
    assert all(logits.dtype == torch.bfloat16 for _, logits, _ in steps)


NATIVE_BF16 = bool(ONEDNN_AVAILABLE and bf16_instructions())


@pytest.mark.skipif(not NATIVE_BF16, reason="packs only where the CPU multiplies bf16 natively")
@pytest.mark.parametrize("name", ["gpt", "llama", "gpt-kjv-lora"])
def test_packed_bf16_layers_compute_what_plain_bf16_does_and_follow_their_weights(name):
    checkpoint = load(shipped_checkpoints()[name])  # an adapter too: its base's Linears and its own
    half, plain = bfloat16_weights(checkpoint.model), copy.deepcopy(checkpoint.model).to(torch.bfloat16).eval()
    packed = [m for m in half.modules() if isinstance(m, PackedBF16Linear)]
    assert packed and not any(type(m) is torch.nn.Linear for m in half.modules()), "every Linear packed"
    ids = torch.tensor([checkpoint.tokenizer.encode(TEXT)[: half.config.block_size]])
    with torch.inference_mode():
        assert torch.equal(half(ids)[0], plain(ids)[0]), "the same kernel as bf16 F.linear, bit for bit"
        assert torch.equal(half(ids[:, :1])[0], plain(ids[:, :1])[0])
    layer = packed[0]
    x = torch.randn(1, 3, layer.in_features, dtype=torch.bfloat16)
    with torch.inference_mode():
        before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(2)  # written in place: the packed copy is stale and must be made again
    with torch.inference_mode():
        after = layer(x)
    assert torch.equal(after, torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert not torch.equal(after, before)
    twin = copy.deepcopy(half)  # oneDNN's packed layout cannot be copied: the copy packs afresh
    with torch.inference_mode():
        assert torch.equal(twin(ids)[0], half(ids)[0])
    with torch.enable_grad():  # autograd on: plain F.linear, which has a backward
        y = layer(x.requires_grad_())
    assert y.grad_fn is not None


def test_without_native_bf16_the_copy_keeps_plain_linears(monkeypatch):
    monkeypatch.setattr(kernels, "bf16_instructions", lambda: None)
    half = bfloat16_weights(load(SHIPPED["gpt"]).model)
    assert not any(isinstance(m, PackedBF16Linear) for m in half.modules())
    assert any(type(m) is torch.nn.Linear for m in half.modules())


def test_the_app_keeps_the_float32_model_and_its_bf16_copy_apart():
    path = SHIPPED["gpt"]
    full, half = load(path), load(path, weights="bfloat16")
    assert load(path, weights="bfloat16") is half, "loaded once, then cached"
    assert next(full.model.parameters()).dtype == torch.float32
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert load(path) is full and half.tokenizer is full.tokenizer
    with pytest.raises(ValueError, match="weights must be one of float32, bfloat16"):
        load(path, weights="float16")


def test_compare_generates_with_bf16_weights_when_asked(monkeypatch):
    from babygpt.ui import models as ui_models

    monkeypatch.setattr(ui_models, "loaded_models", ui_models.LoadedModels())
    args = (["gpt", "llama", "lstm"], "ROMEO:\n", 30, 1.0, 0, 1.0, 0, "greedy", "", "probability", False)
    *_, (_, texts, note, details) = compare_tab.compare(*args, "bfloat16")
    *_, (_, full_texts, full_note, _) = compare_tab.compare(*args, "float32")
    assert note == "bfloat16 weights: gpt, llama; lstm stays float32 (its family cannot generate in bfloat16)"
    assert full_note == ""
    assert set(texts) == {"gpt", "llama", "lstm"} and all(details[n]["new_tokens"] == 30 for n in texts)
    assert texts["lstm"] == full_texts["lstm"], "the LSTM column is the float32 model itself"
    loaded = [key[3] for key in ui_models.loaded_models._loaded]
    assert loaded.count("bfloat16") == 3 and loaded.count("float32") == 3
    assert all(t.startswith("ROMEO:\n") for t in {**texts, **full_texts}.values())
    with pytest.raises(Exception, match="weights must be one of"):
        list(compare_tab.compare(*args, "int4"))
