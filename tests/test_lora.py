"""LoRA adapters on a frozen base: the library (babygpt/lora.py)."""

import pytest
import torch

from babygpt.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    lora_layers,
    lora_state_dict,
    merge_lora,
    trainable_parameters,
    unmerge_lora,
)
from babygpt.models import build_model, make_config
from babygpt.sampling import generate

SMALL = {"vocab_size": 17, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}
MODELS = {
    "gpt": ("gpt", SMALL),
    "gpt-untied": ("gpt", {**SMALL, "tie_weights": False}),
    "llama-gqa": ("llama", {**SMALL, "n_head": 4, "n_kv_head": 2}),
}
ALL = ("q", "k", "v", "o", "mlp", "head")


def base(name: str, seed: int = 0):
    torch.manual_seed(seed)
    family, values = MODELS[name]
    return build_model(make_config(family, **values)).eval()


def ids(n=12, seed=1):
    return torch.randint(0, SMALL["vocab_size"], (2, n), generator=torch.Generator().manual_seed(seed))


def push_b(model, seed=2):
    """Training would move B away from zero; do it by hand so the adapter changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model):
            for b in layer.lora_B.values():
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)


@pytest.mark.parametrize("name", MODELS)
def test_adapted_model_equals_its_base_at_init(name):
    x = ids()
    model = base(name)
    before, _ = model(x)
    apply_lora(model, LoRAConfig(r=4, targets=ALL))
    after, _ = model(x)
    assert torch.equal(before, after)  # B = 0: the update is exactly zero


@pytest.mark.parametrize("name", MODELS)
def test_only_adapters_learn_and_the_base_stays_bit_identical(name):
    model = apply_lora(base(name), LoRAConfig(r=4, targets=ALL))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    model.train()
    x = ids()
    for _ in range(3):
        _, loss = model(x, x)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        optimizer.step()
    assert any(b.abs().sum() > 0 for layer in lora_layers(model) for b in layer.lora_B.values())
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_fused_qkv_parts_touch_only_their_rows():
    model = apply_lora(base("gpt"), LoRAConfig(r=2, targets=("q", "v")))
    push_b(model)
    attn = model.transformer.h[0].attn.c_attn
    assert isinstance(attn, LoRALinear) and set(attn.parts) == {"q", "v"}
    delta = attn.delta()
    inner = SMALL["n_embd"]
    assert delta[:inner].abs().sum() > 0 and delta[2 * inner:].abs().sum() > 0
    assert torch.equal(delta[inner:2 * inner], torch.zeros_like(delta[inner:2 * inner]))  # k untouched
    x = torch.randn(3, SMALL["n_embd"])
    torch.testing.assert_close(attn(x), attn.base(x) + x @ delta.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gpt-untied", "llama-gqa"])
def test_merge_matches_and_unmerge_restores_the_base_bit_for_bit(name):
    model = apply_lora(base(name), LoRAConfig(r=4, alpha=8, targets=ALL))
    push_b(model)
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if ".base." in n}
    x = ids()
    with torch.no_grad():
        unmerged, _ = model(x)
        merge_lora(model)
        assert all(layer.merged for layer in lora_layers(model))
        merged, _ = model(x)
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
        unmerge_lora(model)
        again, _ = model(x)
    for n, p in model.named_parameters():
        if n in base_weights:
            assert torch.equal(p, base_weights[n]), n
    assert torch.equal(again, unmerged)


def test_a_tied_head_is_not_merged():
    model = apply_lora(base("gpt"), LoRAConfig(targets=("q", "head")))
    with pytest.raises(ValueError, match="tied to the token embedding"):
        merge_lora(model)


@pytest.mark.parametrize("name", MODELS)
def test_kv_cached_sampling_equals_uncached_with_adapters(name):
    model = apply_lora(base(name), LoRAConfig(r=4, targets=ALL))
    push_b(model)
    prompt = [1, 2, 3]
    cached = generate(model, prompt, 20, temperature=1.0, seed=5)
    uncached = generate(model, prompt, 20, temperature=1.0, seed=5, use_cache=False)
    assert cached == uncached
    plain = generate(base(name), prompt, 20, temperature=1.0, seed=5)
    assert cached != plain  # the adapter changed what the model writes


def test_trainable_report_counts_what_it_should():
    model = apply_lora(base("gpt"), LoRAConfig(r=4, targets=("q", "v")))
    report = trainable_parameters(model)
    # per block: q and v parts, each A (4 x 16) and B (16 x 4)
    assert report["trainable"] == SMALL["n_layer"] * 2 * (4 * 16 + 16 * 4)
    assert report["total"] == base("gpt").num_parameters() + report["trainable"]
    assert report["text"].startswith(f"trainable params: {report['trainable']:,} || all params: ")
    assert set(lora_state_dict(model)) == {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("bad, message", [
    ({"r": 0}, "rank"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"targets": ("q", "z")}, "targets"), ({"targets": ()}, "targets"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_lora(base("gpt"), LoRAConfig(**bad))


def test_other_families_and_double_wrapping_are_refused():
    with pytest.raises(ValueError, match="attention families"):
        apply_lora(build_model(make_config("bigram", vocab_size=5)), LoRAConfig())
    model = apply_lora(base("gpt"), LoRAConfig())
    with pytest.raises(ValueError, match="already"):
        apply_lora(model, LoRAConfig())
