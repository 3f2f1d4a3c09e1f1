"""Inside: the walk through one forward pass is the model's real computation, for every family,
option and adapter; its sentences come from the tensors; its sampling is Compare's."""

import pytest
import torch

from babygpt.checkpoint import load_adapter, load_checkpoint
from babygpt.inside import first_draw, sampling_stage, walk
from babygpt.lora import LoRAConfig, apply_lora
from babygpt.models import build_model
from babygpt.sampling import token_ids
from babygpt.tokenizer import CharTokenizer

from conftest import ROOT, VARIANTS, randomize_, variant_config

TEXT = "the cat sat on the mat; the dog sat on the log"
TOKENIZER = CharTokenizer.train(TEXT)


def random_model(name, seed=0, lora=False):
    torch.manual_seed(seed)
    model = build_model(variant_config(name, vocab_size=TOKENIZER.vocab_size)).eval()
    randomize_(model, scale=0.3, seed=seed)
    if lora:
        apply_lora(model, LoRAConfig(r=2, alpha=4, targets=("q", "v", "mlp")))
        for layer in model.modules():
            if hasattr(layer, "lora_B"):
                for b in layer.lora_B.values():
                    torch.nn.init.normal_(b, std=0.3)  # a trained adapter: B is no longer zero
    return model


def assert_recomposes(model, result):
    """The cards' arithmetic, redone from their tensors and the weights, is the model's own pass."""
    ids = torch.tensor([result.view.ids])
    redone = model.recompose(ids, result.view.kept)
    shared = [name for name in redone if name in result.view.kept]
    assert "logits" in shared and len(shared) >= 1
    for name in shared:
        assert torch.allclose(redone[name], result.view.kept[name], atol=1e-5, rtol=0), name
    assert torch.allclose(redone["logits"][0], result.view.logits, atol=1e-5, rtol=0)
    assert torch.allclose(result.view.logits, model(ids)[0][0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_family_and_option_recomposes_its_logits(name):
    model = random_model(name)
    layers, heads = model.inside_choices()
    result = walk(model, TOKENIZER, TEXT[:14], position=9, layer=max(0, layers - 1), head=max(0, heads - 1))
    assert_recomposes(model, result)
    assert result.stages[0].key == "tokens" and result.stages[-1].key == "sampling"
    assert all(stage.sentences for stage in result.stages)


@pytest.mark.parametrize("name", ["gpt", "gpt-time-weighted", "gpt-low-rank", "llama-gqa"])
def test_an_adapter_recomposes_and_shows_base_beside_update(name):
    model = random_model(name, lora=True)
    result = walk(model, TOKENIZER, TEXT[:12])
    assert_recomposes(model, result)
    adapter = next(stage for stage in result.stages if stage.key == "adapter")
    base, update = adapter.figures
    assert len(base.x) == len(update.x) > 0 and (update.values > 0).all()
    # W·x + (alpha/r)·B·A·x is what the adapted matrix hands on: for gpt's fused q, k, v matrix, the queries
    kept, site = result.view.kept, "transformer.h.0.attn.c_attn"
    if site in base.x:
        out = kept[f"{site}.base"] + kept[f"{site}.update"]  # (1, T, 3 * C)
        q = out.view(1, out.size(1), 3, 4, -1).permute(2, 0, 3, 1, 4)[0]
        assert torch.allclose(q, kept["blocks.0.attn.q"], atol=1e-6)
    assert "LoRA (r 2, alpha 4)" in adapter.sentences[0]


def test_the_shipped_models_and_adapter_recompose():
    for name in ("gpt", "llama", "lstm", "ngram", "bigram", "gpt-time-weighted", "gpt-low-rank"):
        checkpoint = load_checkpoint(ROOT / "checkpoints" / name)
        assert_recomposes(checkpoint.model, walk(checkpoint.model, checkpoint.tokenizer, "ROMEO:\nBut soft"))
    adapter = load_adapter(ROOT / "checkpoints" / "gpt-kjv-lora")
    result = walk(adapter.model, adapter.tokenizer, "And God said")
    assert_recomposes(adapter.model, result)
    assert any(stage.key == "adapter" for stage in result.stages)


def test_the_sentences_quote_the_model_so_another_model_says_other_things():
    one = walk(random_model("gpt", seed=0), TOKENIZER, TEXT[:20])
    other = walk(random_model("gpt", seed=1), TOKENIZER, TEXT[:20])
    pairs = [(a, b) for a, b in zip(one.stages, other.stages) if a.key not in ("tokens",)]
    assert len(pairs) > 8
    for a, b in pairs:
        assert a.key == b.key and a.sentences != b.sentences, a.key
    pattern = next(stage for stage in one.stages if stage.key.endswith("attn pattern"))
    row = one.view.kept["blocks.0.attn.pattern"][0, 0, one.view.position]
    assert f"{100 * float(row.max()):.0f} %" in pattern.sentences[-1]


def test_the_gpt_walk_has_the_stages_a_learner_expects():
    result = walk(random_model("gpt"), TOKENIZER, TEXT[:10], layer=1, head=2)
    keys = [stage.key for stage in result.stages]
    b = "blocks.1"
    assert keys == ["tokens", "embedding", f"{b} norm1", f"{b}.attn qkv", f"{b}.attn scores", f"{b}.attn pattern",
                    f"{b}.attn z", f"{b} attention residual", f"{b} norm2", f"{b} mlp", f"{b} mlp residual",
                    "residual stream", "logits", "sampling"]
    scores = result.stages[4].figures[0]
    assert scores.masked.sum() == 10 * 9 // 2 and not scores.masked.diagonal().any()  # the future, masked
    assert "position embedding" in result.stages[1].title


def test_llama_shows_rope_and_which_query_heads_share_a_key_value_head():
    result = walk(random_model("llama-gqa"), TOKENIZER, TEXT[:10], head=3)
    rope = next(stage for stage in result.stages if stage.key.endswith("rope"))
    angles = rope.figures[0].values
    assert torch.allclose(angles, 9 / (10000 ** (torch.arange(0, 8, 2).float() / 8)))
    qkv = next(stage for stage in result.stages if stage.key.endswith("qkv"))
    assert "heads 2, 3 read key/value head 1" in " ".join(qkv.sentences)
    assert "rotations" in " ".join(result.stages[1].sentences)


def test_lstm_ngram_and_bigram_have_their_own_stages():
    lstm = walk(random_model("lstm"), TOKENIZER, TEXT[:10], layer=1, head=3)
    assert [s.key for s in lstm.stages] == ["tokens", "embedding", "layers.1 gates", "layers.1 state", "logits",
                                            "sampling"]
    assert any("no heads" in note for note in lstm.notes)  # a choice that does not apply: said, not an error
    ngram = walk(random_model("ngram"), TOKENIZER, "th", position=0)
    assert ": · 't'." in ngram.stages[1].sentences[0]  # before the text starts: padding
    assert "1 of them comes before the text starts" in ngram.stages[1].sentences[1]
    bigram = walk(random_model("bigram"), TOKENIZER, TEXT[:5])
    assert [s.key for s in bigram.stages] == ["tokens", "logits", "sampling"]


def test_the_draw_is_the_one_compare_makes():
    model = random_model("gpt")
    ids = TOKENIZER.encode(TEXT[:12])
    for temperature, top_k, top_p, seed in ((1.0, 0, 1.0, 3), (0.7, 5, 1.0, 11), (1.3, 0, 0.8, 5), (0.0, 0, 1.0, 0)):
        result = walk(model, TOKENIZER, TEXT[:12], temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        first, *_ = next(token_ids(model, ids, 1, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed))
        assert result.stages[-1].token == first
    # the slider redoes only this stage, from the logits
    again = sampling_stage(result.logits, result.view.vocab, 0.7, 5, 1.0, first_draw(11))
    assert again.token == walk(model, TOKENIZER, TEXT[:12], temperature=0.7, top_k=5, seed=11).stages[-1].token
    assert "keeps 5 of" in " ".join(again.sentences)


def test_the_sampling_card_draws_the_slice_the_draw_falls_in():
    """The card the slider redoes is drawn as HTML: the top-10 bars and the strip of the cumulative
    distribution, whose highlighted slice is the token drawn; token text is escaped."""
    import html
    import re

    from babygpt.models.stages import shown
    from babygpt.ui.inside_tab import sampling_html

    vocab = ["a", "<b>", "&", "c", "d"]
    logits = torch.tensor([2.0, 1.5, 0.1, -1.0, 0.4])
    for u in (0.01, 0.3, 0.62, 0.97):
        stage = sampling_stage(logits, vocab, 1.0, 0, 1.0, u)
        drawn = sampling_html(3, stage)
        assert "<b>" not in drawn and "&lt;b&gt;" in drawn and "&amp;" in drawn
        widths = [float(w) for w in re.findall(r"draw-slice[^']*' style='width: ([0-9.]+)%'", drawn)]
        assert len(widths) == 5 and sum(widths) == pytest.approx(100, abs=0.01)
        picked = re.findall(r"draw-slice draw-picked' style='[^']*' title='([^:]*):", drawn)
        assert picked == [html.escape(shown(vocab[stage.token]))], (u, stage.token)
        assert f"u = {u:.3f}" in drawn and drawn.startswith("<h3>3. Sampling the next token</h3>")
        assert drawn.count("class='draw-row'") == 5  # the top 10 of 5 tokens: all of them
    # at temperature 0 there is no draw: the highest logits only, a negative one drawn apart
    greedy = sampling_html(3, sampling_stage(logits, vocab, 0.0))
    assert "draw-strip" not in greedy and "draw-negative" in greedy


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": ""}, "the prompt is empty"),
    ({"prompt": "the cat", "position": 7}, "position 7 is outside the prompt's 7 tokens"),
    ({"prompt": "the cat", "position": -1}, "position -1 is outside"),
    ({"prompt": "the cat", "layer": 2}, "layer 2 is outside this model's 2 layers"),
    ({"prompt": "the cat", "head": 4}, "head 4 is outside this model's 4 heads"),
    ({"prompt": "the QUEEN"}, "'E', 'N', 'Q', 'U'"),
])
def test_bad_choices_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        walk(random_model("gpt"), TOKENIZER, **kwargs)


def test_a_prompt_longer_than_the_context_is_cut_and_said():
    result = walk(random_model("gpt"), TOKENIZER, TEXT)  # block_size 16
    assert result.cut and len(result.view.ids) == 16
    assert "longer than the model's context" in " ".join(result.stages[0].sentences)
    lstm = walk(random_model("lstm"), TOKENIZER, TEXT)  # no window: read whole
    assert not lstm.cut and len(lstm.view.ids) == len(TEXT)
