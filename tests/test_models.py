import math
from collections import Counter

import pytest
import torch

from babygpt.models import FAMILIES, PRESETS, build_model, config_from_json, config_to_dict, make_config

from conftest import ATTENTION_VARIANTS, VARIANTS, randomize_, variant_config


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_loss(name):
    model = build_model(variant_config(name))
    idx = torch.randint(0, 20, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 20)
    assert loss.shape == () and math.isfinite(loss.item())
    logits, loss = model(idx)
    assert loss is None


@pytest.mark.parametrize("name", VARIANTS)
def test_causality_changing_token_t_never_changes_earlier_logits(name):
    torch.manual_seed(0)
    model = build_model(variant_config(name)).eval()
    randomize_(model)
    idx = torch.randint(0, 20, (2, 16))
    base, _ = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 7) % 20
        logits, _ = model(changed)
        assert torch.equal(logits[:, :t], base[:, :t]) or torch.allclose(logits[:, :t], base[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(logits[:, t], base[:, t]), "the changed position itself must change"


def patterns(model, idx):
    """Every layer's attention pattern, read from the hook points: (B, n_layer, n_head, T, T)."""
    logits, kept = model.run_with_cache(idx, lambda name: name.endswith(".attn.pattern"))
    return logits, torch.stack([kept[f"blocks.{i}.attn.pattern"] for i in range(model.config.n_layer)], dim=1)


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_attention_patterns_are_causal_normalised_and_match_the_fast_path(name):
    torch.manual_seed(0)
    config = variant_config(name)
    model = build_model(config).eval()
    randomize_(model, scale=0.3)
    idx = torch.randint(0, 20, (2, 16))
    fast, _ = model(idx)
    slow, attention = patterns(model, idx)
    assert attention.shape == (2, config.n_layer, config.n_head, 16, 16)
    assert torch.allclose(attention.sum(-1), torch.ones(2, config.n_layer, config.n_head, 16), atol=1e-5)
    above = torch.ones(16, 16, dtype=torch.bool).triu(1)
    assert torch.all(attention[..., above] == 0)
    assert torch.allclose(slow, fast, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_attention_output_equals_weights_times_values(name):
    """Recompute layer 0's attention output by hand from its pattern and its values, both read
    from hook points, through the output projection."""
    torch.manual_seed(0)
    config = variant_config(name)
    model = build_model(config).eval()
    randomize_(model, scale=0.3)
    idx = torch.randint(0, 20, (2, 16))
    _, kept = model.run_with_cache(idx, ["blocks.0.attn.pattern", "blocks.0.attn.v", "blocks.0.attn_out"])
    weights, v = kept["blocks.0.attn.pattern"], kept["blocks.0.attn.v"]  # (B, H, T, T), (B, H_kv, T, hs)
    v = v.repeat_interleave(config.n_head // v.size(1), dim=1)
    llama = VARIANTS[name][0] == "llama"
    projection = model.layers[0].self_attn.o_proj if llama else model.transformer.h[0].attn.c_proj
    with torch.no_grad():
        by_hand = projection((weights @ v).transpose(1, 2).reshape(2, 16, -1))
    assert torch.allclose(by_hand, kept["blocks.0.attn_out"], atol=1e-4, rtol=1e-4)


def conditional_entropy(x: torch.Tensor, y: torch.Tensor, context) -> float:
    """The lowest mean cross-entropy any model seeing context(x, b, t) can reach on (x, y)."""
    pairs = Counter()
    contexts = Counter()
    for b in range(x.size(0)):
        for t in range(x.size(1)):
            key = context(x, b, t)
            pairs[key, int(y[b, t])] += 1
            contexts[key] += 1
    total = sum(pairs.values())
    return -sum(n * math.log(n / contexts[key]) for (key, _), n in pairs.items()) / total


def overfit(model, x, y, steps=300, lr=1e-2):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model(x, y)[1].item()


@pytest.fixture(scope="module")
def small_batch(shakespeare):
    from babygpt.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.train(shakespeare)
    ids = torch.tensor(tokenizer.encode(shakespeare[:4000]))
    starts = torch.tensor([0, 700, 1500, 3100])
    x = torch.stack([ids[s : s + 16] for s in starts])
    y = torch.stack([ids[s + 1 : s + 17] for s in starts])
    return tokenizer.vocab_size, x, y


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "bigram"])
def test_every_family_overfits_one_small_batch(name, small_batch):
    vocab, x, y = small_batch
    torch.manual_seed(0)
    overrides = {"n": 8} if name == "ngram" else {}  # 7 characters of context tell positions apart
    model = build_model(variant_config(name, vocab_size=vocab, **overrides))
    assert overfit(model, x, y) < 0.1


def test_bigram_overfits_to_the_tables_optimum(small_batch):
    vocab, x, y = small_batch
    model = build_model(variant_config("bigram", vocab_size=vocab))
    optimum = conditional_entropy(x, y, lambda x, b, t: int(x[b, t]))
    assert optimum > 0.5, "a bigram cannot memorise text: its optimum stays well above 0.1"
    assert overfit(model, x, y, steps=600, lr=0.5) == pytest.approx(optimum, abs=0.01)


@pytest.mark.parametrize(
    "family, values, message",
    [
        ("gpt", {"n_embd": 30, "n_head": 4}, "divisible by n_head"),
        ("gpt", {"block_size": 0}, "block_size must be at least 1"),
        ("gpt", {"n_layer": 0}, "n_layer must be at least 1"),
        ("gpt", {"dropout": 1.5}, "dropout"),
        ("gpt", {"activation": "relu"}, "activation must be one of"),
        ("gpt", {"attn_rank": 64}, "attn_rank"),
        ("gpt", {"n_layers": 4}, "unknown GPTConfig field"),
        ("gpt", {"n_head": "4"}, "must be int"),
        ("gpt", {"n_head": 2.0}, "must be int"),
        ("llama", {"n_head": 4, "n_kv_head": 3}, "divisible by n_kv_head"),
        ("llama", {"n_embd": 12, "n_head": 4, "n_kv_head": 1}, "even head size"),
        ("ngram", {"n": 1}, "n must be at least 2"),
        ("transformer", {}, "unknown model family 'transformer'"),
    ],
)
def test_bad_hyperparameters_are_refused_clearly(family, values, message):
    with pytest.raises(ValueError, match=message):
        make_config(family, **values)


def test_registry_round_trips_configs_and_presets_are_valid():
    for family, settings in PRESETS.values():
        config = make_config(family, **settings["model"])
        assert config_from_json(config_to_dict(config)) == config
        assert family in FAMILIES


def test_input_longer_than_the_context_is_refused():
    model = build_model(variant_config("gpt"))
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_time_weighting_starts_as_plain_attention_and_low_rank_shrinks_attention():
    torch.manual_seed(0)
    plain = build_model(variant_config("gpt"))
    torch.manual_seed(0)
    weighted = build_model(variant_config("gpt-time-weighted"))
    weighted.load_state_dict(plain.state_dict(), strict=False)
    idx = torch.randint(0, 20, (2, 16))
    assert torch.allclose(plain(idx)[0], weighted(idx)[0], atol=1e-6)
    low_rank = build_model(variant_config("gpt-low-rank"))
    assert low_rank.transformer.h[0].attn.c_attn.weight.shape == (3 * 4 * 4, 32)
    assert low_rank.num_parameters() < plain.num_parameters()
