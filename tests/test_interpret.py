"""Looking inside: the logit lens and the head-role scores (babygpt/interpret.py)."""

import pytest
import torch

from babygpt.checkpoint import load_checkpoint, shipped_checkpoints
from babygpt.interpret import ROLES, head_roles, logit_lens, pattern_score, role_patterns
from babygpt.models import build_model

from conftest import ATTENTION_VARIANTS, variant_config


def causal_uniform(T):
    weights = torch.tril(torch.ones(T, T))
    return weights / weights.sum(-1, keepdim=True)


def test_a_head_that_always_looks_back_one_scores_1_as_previous_token_and_0_otherwise():
    T, n = 8, 4
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1
    induction = torch.zeros(T, T)
    induction[:n, 0] = 1
    induction[torch.arange(n, T), torch.arange(1, n + 1)] = 1  # t - n + 1
    weights = torch.stack([previous, induction, causal_uniform(T)]).view(1, 3, T, T)  # one layer, three heads
    patterns = role_patterns(T, repeat_from=n)
    scores = {role: pattern_score(weights, patterns[role])[0] for role in ROLES}
    assert scores["previous token"][0] == 1 and scores["induction"][0] == pytest.approx(0.0)
    assert scores["induction"][1] == 1 and scores["previous token"][1] == pytest.approx(1 / 7)  # only t=1 -> 0
    # uniform causal attention: position t gives 1 / (t + 1) to each earlier position
    expected_previous = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    assert scores["previous token"][2] == pytest.approx(expected_previous)
    assert scores["first token"][2] == pytest.approx(expected_previous)


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_logit_lens_rows_end_with_the_models_own_prediction(name, shakespeare):
    from babygpt.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.train(shakespeare)
    torch.manual_seed(0)
    model = build_model(variant_config(name, vocab_size=tokenizer.vocab_size)).eval()
    text = "ROMEO:\nWhat light through yonder window"
    lens = logit_lens(model, tokenizer, text)
    T = model.config.block_size
    assert lens.tokens == list(text[-T:]) and lens.layers[0] == "embeddings"
    assert len(lens.layers) == model.config.n_layer + 1
    assert lens.top_probabilities.shape == (len(lens.layers), T)
    logits, _ = model(torch.tensor([tokenizer.encode(text[-T:])]))
    assert "".join(lens.top_tokens[-1]) == tokenizer.decode(logits[0].argmax(-1).tolist())
    assert torch.allclose(lens.top_probabilities[-1], logits[0].softmax(-1).max(-1).values, atol=1e-5)
    assert lens.target_probabilities.shape == (len(lens.layers), T - 1)


def test_logit_lens_and_head_roles_refuse_models_without_layers_of_attention():
    model = build_model(variant_config("bigram"))
    with pytest.raises(ValueError, match="not of a bigram model"):
        logit_lens(model, None, "hi")
    with pytest.raises(ValueError, match="not of a bigram model"):
        head_roles(model)


def test_head_roles_of_the_shipped_models():
    shipped = shipped_checkpoints()
    llama = load_checkpoint(shipped["llama"]).model
    roles = head_roles(llama)
    assert set(roles["scores"]) == set(ROLES) and roles["length"] == 32
    for scores in roles["scores"].values():
        assert scores.shape == (4, 4) and (scores >= 0).all() and (scores <= 1).all()
    # Measured on the shipped llama: a previous-token head in the last layer, no induction head
    # (2,000 steps of a 4-layer model trained on 64-character windows do not grow one).
    assert roles["scores"]["previous token"].max() > 0.5
    assert roles["scores"]["induction"].max() < 0.1
    assert head_roles(llama, seed=0)["scores"]["induction"].equal(roles["scores"]["induction"])
    with pytest.raises(ValueError, match="repeated half must be 2 to 32"):
        head_roles(llama, copies_of=40)
    adapter = load_checkpoint(shipped["gpt-kjv-lora"])  # adapters are models here too
    assert logit_lens(adapter.model, adapter.tokenizer, "And God said").layers[-1] == "layer 3"


def planted_model():
    """A 1-layer, 2-head gpt whose heads are set by hand: head 0 attends to the previous token,
    head 1 to the first. No norms, zero token embeddings, position t embedded as the unit vector
    e_t: then q_t . k_s is whatever the query and key matrices make of (t, s)."""
    from babygpt.models import make_config

    T, scale = 8, 30.0
    config = make_config("gpt", vocab_size=11, block_size=T, n_layer=1, n_head=2, n_embd=2 * T, layer_norm=False,
                         feed_forward=False, bias=False, tie_weights=False)
    model = build_model(config).eval()
    C = config.n_embd
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wpe.weight[:, :T] = torch.eye(T)
        w = model.transformer.h[0].attn.c_attn.weight  # rows: q (C), k (C), v (C); head h = rows h*T .. h*T+T
        w[:T, :T] = scale * torch.eye(T)  # head 0: q_t = scale * e_t
        w[C + 1 : C + T, : T - 1] = torch.eye(T - 1)  # head 0: k_s = e_(s+1), so q_t . k_s = scale when s = t - 1
        w[T, :T] = scale  # head 1: q_t = scale * e_0 for every t
        w[C + T, 0] = 1.0  # head 1: k_s = e_0 only for s = 0
    return model


def test_planted_previous_token_and_first_token_heads_are_detected():
    roles = head_roles(planted_model())
    scores = roles["scores"]
    assert roles["length"] == 4
    assert scores["previous token"][0, 0] > 0.99 and scores["first token"][0, 1] > 0.99
    assert scores["previous token"][0, 1] < 0.2 and scores["first token"][0, 0] < 0.2
    assert scores["induction"].max() < 0.2  # one layer cannot do induction
