"""Named hook points and run_with_cache: what each family lets a reader look at, and proof that
looking changes nothing when nothing is asked for."""

import pytest
import torch

from babygpt.models import FAMILIES, build_model, make_config
from bench.reference_models import models_at

from conftest import ATTENTION_VARIANTS, VARIANTS, randomize_, variant_config

BLOCK = ["resid_pre", "norm1", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern", "attn.z", "attn_out",
         "resid_mid", "resid_post"]
MLP = ["norm2", "mlp.pre", "mlp.post", "mlp_out"]


def random_model(name, seed=0):
    torch.manual_seed(seed)
    model = build_model(variant_config(name)).eval()
    randomize_(model, scale=0.3, seed=seed)
    return model


def ids(batch=2, length=16, seed=0):
    return torch.randint(0, 20, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_every_family_names_what_its_docstring_promises():
    gpt = set(build_model(variant_config("gpt")).hook_points())
    assert {"embed", "pos_embed", "final_norm",
            "logits"} | {f"blocks.{i}.{n}" for i in range(2) for n in BLOCK + MLP} == gpt
    bare = set(build_model(variant_config("gpt-single-head")).hook_points())
    assert "blocks.0.mlp.pre" not in bare and "blocks.0.resid_post" in bare
    assert "blocks.1.attn.weighted_scores" in build_model(variant_config("gpt-time-weighted")).hook_points()
    llama = set(build_model(variant_config("llama-gqa")).hook_points())
    extra = ["attn.q_rot", "attn.k_rot", "mlp.up"]
    assert {"embed", "final_norm",
            "logits"} | {f"blocks.{i}.{n}" for i in range(2) for n in BLOCK + MLP + extra} == llama
    assert set(build_model(variant_config("bigram")).hook_points()) == {"logits"}
    assert set(build_model(variant_config("ngram")).hook_points()) == {"embed", "hidden.pre", "hidden.post", "logits"}
    for family in FAMILIES.values():  # every family can be looked at, at least at its logits
        assert "logits" in build_model(make_config(family.name, vocab_size=7, block_size=8)).hook_points()


@pytest.mark.parametrize("name", VARIANTS)
def test_nothing_asked_is_the_fast_path_bit_for_bit(name):
    model, x = random_model(name), ids()
    with torch.no_grad():
        plain, _ = model(x)
        nothing, kept = model.run_with_cache(x, [])
        # hook points outside attention and the LSTM's cells keep their tensors without leaving the fused kernels
        outside = [n for n in model.hook_points() if ".attn." not in n and not n.startswith("layers.")]
        some, kept_some = model.run_with_cache(x, outside)
    assert kept == {} and torch.equal(plain, nothing) and torch.equal(plain, some)
    assert set(kept_some) == set(outside)
    assert torch.equal(kept_some["logits"], plain)


BEFORE_FAMILIES = ("bigram", "ngram", "gpt", "llama")  # the families that model code had


@pytest.mark.parametrize("name", [name for name, (family, _) in VARIANTS.items() if family in BEFORE_FAMILIES])
def test_the_fast_path_is_what_the_model_code_computed_before_hook_points(name):
    """Bit-identical logits and loss against the model files as they were before the redesign
    (read from git), built with the same weights; in training mode, the kernels the trainer runs."""
    before = models_at()
    if before is None:
        pytest.skip("the pre-redesign model code is not in this clone's git history")
    family, settings = VARIANTS[name]
    old = before.build_model(before.make_config(family, vocab_size=20, **settings))
    new = random_model(name)
    old.load_state_dict(new.state_dict())
    x, y = ids(seed=1), ids(seed=2)
    for model in (old, new):
        model.train()  # dropout is 0 in every variant: training mode changes only the kernels' autograd
    (a, loss_a), (b, loss_b) = old(x, y), new(x, y)
    assert torch.equal(a, b) and torch.equal(loss_a, loss_b)


@pytest.mark.parametrize("name", VARIANTS)
def test_the_residual_stream_adds_up(name):
    """What one hook point hands on is what the next one receives, and the last residual read out
    is the model's logits."""
    model, x = random_model(name), ids()
    with torch.no_grad():
        logits, kept = model.run_with_cache(x)
    assert torch.equal(kept["logits"], logits)
    if not model.has_attention:
        return
    n_layer = model.config.n_layer
    for i in range(n_layer - 1):
        assert torch.equal(kept[f"blocks.{i}.resid_post"], kept[f"blocks.{i + 1}.resid_pre"])
    for i in range(n_layer):
        mid = kept[f"blocks.{i}.resid_pre"] + kept[f"blocks.{i}.attn_out"]
        assert torch.allclose(kept[f"blocks.{i}.resid_mid"], mid, atol=1e-6)
        if f"blocks.{i}.mlp_out" in kept:
            post = kept[f"blocks.{i}.resid_mid"] + kept[f"blocks.{i}.mlp_out"]
            assert torch.allclose(kept[f"blocks.{i}.resid_post"], post, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(model.unembed(kept[f"blocks.{n_layer - 1}.resid_post"]), logits, atol=1e-5)
    if "pos_embed" in kept:
        assert torch.allclose(kept["embed"] + kept["pos_embed"], kept["blocks.0.resid_pre"], atol=1e-6)


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_scores_are_masked_and_softmax_to_the_pattern(name):
    model, x = random_model(name), ids()
    with torch.no_grad():
        _, kept = model.run_with_cache(x, lambda n: n.startswith("blocks.0.attn."))
    scores = kept.get("blocks.0.attn.weighted_scores", kept["blocks.0.attn.scores"])
    above = torch.ones(16, 16, dtype=torch.bool).triu(1)
    assert torch.all(kept["blocks.0.attn.scores"][..., above] == float("-inf"))
    assert torch.allclose(scores.softmax(-1), kept["blocks.0.attn.pattern"], atol=1e-6)
    q, k = kept.get("blocks.0.attn.q_rot", kept["blocks.0.attn.q"]), kept.get("blocks.0.attn.k_rot",
                                                                              kept["blocks.0.attn.k"])
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
    raw = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    assert torch.allclose(kept["blocks.0.attn.scores"][..., ~above], raw[..., ~above], atol=1e-5)


def test_unknown_names_are_refused_and_a_failed_pass_leaves_no_point_asked():
    model = random_model("gpt")
    with pytest.raises(ValueError, match="no hook point 'blocks.9.attn.pattern'.*it has: embed"):
        model.run_with_cache(ids(), ["blocks.9.attn.pattern"])
    with pytest.raises(ValueError, match="longer than block_size"):
        model.run_with_cache(ids(length=17), ["blocks.0.attn.pattern"])
    assert not any(point.asked for point in model.hook_points().values())


def test_hook_points_follow_the_kv_cache():
    """With a cache, each pass's pattern rows are the full pattern's rows for its queries."""
    model, x = random_model("llama-gqa"), ids()
    with torch.no_grad():
        _, full = model.run_with_cache(x, ["blocks.1.attn.pattern"])
        cache = model.new_cache(batch_size=2)
        model(x[:, :9], cache=cache)
        _, piece = model.run_with_cache(x[:, 9:12], ["blocks.1.attn.pattern"], cache=cache)
    assert torch.allclose(piece["blocks.1.attn.pattern"], full["blocks.1.attn.pattern"][..., 9:12, :12], atol=1e-6)


def test_hook_points_cost_no_state_dict_entry_and_survive_a_copy():
    import copy

    model = random_model("gpt")
    assert not any("hook" in key for key in model.state_dict())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        _, a = model.run_with_cache(ids(), ["blocks.1.resid_post"])
        _, b = twin.run_with_cache(ids(), ["blocks.1.resid_post"])
    assert torch.equal(a["blocks.1.resid_post"], b["blocks.1.resid_post"])
