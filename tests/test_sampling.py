import math

import pytest
import torch

from babygpt.models import build_model, make_config
from babygpt.sampling import (
    MAX_NEW_TOKENS,
    Context,
    TextTracker,
    generate,
    inverse_cdf,
    next_token_distribution,
    sample_text,
    side_by_side,
    stream,
    token_ids,
)
from babygpt.tokenizer import BPETokenizer, CharTokenizer

from conftest import ATTENTION_VARIANTS, VARIANTS, randomize_, variant_config

BLOCK = 16  # every variant's block_size (conftest.SMALL)


def random_model(name: str, seed: int = 0):
    model = build_model(variant_config(name)).eval()
    randomize_(model, scale=0.3, seed=seed)
    return model


@pytest.fixture(scope="module")
def model():
    return random_model("gpt")


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.train("abcdefghijklmnopqrst")  # 20 tokens, as the variants' vocabulary


# --- KV cache: exactness --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize(
    "settings",
    [{"temperature": 0.0}, {"temperature": 1.0, "seed": 3}, {"temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 8}],
    ids=["greedy", "sampled", "top-k-top-p"],
)
def test_cached_generation_equals_uncached_past_block_size(name, settings):
    model = random_model(name)
    # 5 + 40 tokens: the window fills at 16 and slides for the remaining 29 steps.
    cached = list(token_ids(model, [1, 2, 3, 4, 5], 40, use_cache=True, **settings))
    uncached = list(token_ids(model, [1, 2, 3, 4, 5], 40, use_cache=False, **settings))
    assert [t for t, _, _ in cached] == [t for t, _, _ in uncached]
    for (_, a, _), (_, b, _) in zip(cached, uncached):
        assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_a_prompt_longer_than_the_context_gives_the_same_logits_cached_and_not(name):
    model = random_model(name, seed=1)
    prompt = [i % 20 for i in range(3 * BLOCK)]
    cached = list(token_ids(model, prompt, 5, temperature=0.0, use_cache=True))
    uncached = list(token_ids(model, prompt, 5, temperature=0.0, use_cache=False))
    assert [t for t, _, _ in cached] == [t for t, _, _ in uncached]
    assert max(float((a - b).abs().max()) for (_, a, _), (_, b, _) in zip(cached, uncached)) <= 1e-5


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_feeding_a_sequence_in_pieces_through_the_cache_equals_one_forward(name):
    """Prefill, a chunk of several tokens (an explicit causal mask) and single tokens, attention included."""
    model = random_model(name, seed=2)
    ids = torch.randint(0, 20, (2, BLOCK), generator=torch.Generator().manual_seed(0))
    patterns = [f"blocks.{i}.attn.pattern" for i in range(model.config.n_layer)]
    with torch.no_grad():
        full, kept = model.run_with_cache(ids, patterns)
        full_attention = torch.stack([kept[name] for name in patterns], dim=1)  # (B, layers, heads, T, T)
        for keep_attention in (False, True):  # the fused kernel and the spelled-out path
            cache = model.new_cache(batch_size=2)
            pieces, attentions = [], []
            for start, end in [(0, 5), (5, 9), (9, 10), (10, 16)]:
                logits, kept = model.run_with_cache(ids[:, start:end], patterns if keep_attention else [], cache=cache)
                pieces.append(logits)
                attentions.append([kept.get(name) for name in patterns])
            assert cache.length == BLOCK
            assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    # Each piece's attention rows are the full map's rows for those queries over the keys so far.
    assert torch.allclose(torch.stack(attentions[1], dim=1), full_attention[..., 5:9, :9], atol=1e-6)
    with pytest.raises(ValueError, match="after 16 cached positions"):
        model(ids[:, :1], cache=cache)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_last_position_alone_equals_the_last_row_of_the_whole_forward(name):
    """``last_position_only`` skips work, not information: the same last row of logits, with and
    without a cache, and the cache it fills serves the next step as one filled by a whole forward."""
    model = random_model(name, seed=4)
    ids = torch.randint(0, 20, (2, BLOCK), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full, _ = model(ids)
        last, _ = model(ids, last_position_only=True)
        assert last.shape == (2, 1, 20)
        assert torch.allclose(last, full[:, -1:], atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="a loss needs logits for every target position"):
            model(ids, ids, last_position_only=True)
        if model.new_cache() is None:
            return
        whole, lean = model.new_cache(batch_size=2), model.new_cache(batch_size=2)
        model(ids[:, :-1], cache=whole)
        cached_last, _ = model(ids[:, :-1], cache=lean, last_position_only=True)
        assert torch.allclose(cached_last, full[:, -2:-1], atol=1e-5, rtol=0)
        after_whole, _ = model(ids[:, -1:], cache=whole)
        after_lean, _ = model(ids[:, -1:], cache=lean)
    assert torch.allclose(after_lean, after_whole, atol=1e-5, rtol=0)
    assert torch.allclose(after_lean, full[:, -1:], atol=1e-5, rtol=0)


def test_the_cache_is_allocated_once_and_encodes_only_when_the_window_moves(model):
    context = Context(model, use_cache=True)
    ids = [1, 2, 3]
    context.next_logits(ids)
    buffers = (context.cache.keys.data_ptr(), context.cache.values.data_ptr())
    for token in range(BLOCK - 3):
        ids.append(token)
        context.next_logits(ids)
    assert context.encodes == 1, "within block_size the prompt is encoded once, then one token a step"
    for token in range(4):
        ids.append(token)
        context.next_logits(ids)
    assert context.encodes == 5, "past block_size each step re-encodes the slid window"
    assert (context.cache.keys.data_ptr(), context.cache.values.data_ptr()) == buffers
    assert Context(model, use_cache=False).cache is None


def test_grouped_query_attention_caches_only_the_key_value_heads():
    cache = random_model("llama-mqa-tied").new_cache()
    assert cache.keys.shape == (2, 1, 1, BLOCK, 8)  # layers, batch, kv heads, positions, head size
    assert random_model("bigram").new_cache() is None


# --- sampling ----------------------------------------------------------------------------------


def test_same_seed_same_tokens_and_greedy_is_argmax(model):
    a = generate(model, [1, 2, 3], 30, temperature=1.0, seed=5)
    assert a == generate(model, [1, 2, 3], 30, temperature=1.0, seed=5)
    assert a != generate(model, [1, 2, 3], 30, temperature=1.0, seed=6)
    greedy = generate(model, [1, 2, 3], 10, temperature=0)
    with torch.no_grad():
        first = int(model(torch.tensor([[1, 2, 3]]))[0][0, -1].argmax())
    assert greedy[3] == first


def test_sampling_never_touches_the_global_rng(model):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    generate(model, [1], 20, seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_inverse_cdf_samples_the_distribution_and_never_a_zero_probability_token():
    probs = torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0])
    assert [inverse_cdf(probs, u) for u in (0.0, 0.49, 0.5, 0.69, 0.7, 0.999999)] == [0, 0, 2, 2, 3, 3]
    generator = torch.Generator().manual_seed(0)
    draws = [inverse_cdf(probs, float(u)) for u in torch.rand(20000, generator=generator)]
    counts = torch.bincount(torch.tensor(draws), minlength=5)
    assert counts[1] == counts[4] == 0
    assert torch.allclose(counts / 20000, probs, atol=0.015)


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert torch.allclose(next_token_distribution(logits, 1.0), torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert torch.allclose(next_token_distribution(logits, 1.0, top_k=2), torch.tensor([2 / 3, 1 / 3, 0, 0]))
    # 0.5 + 0.25 reaches 0.7: the nucleus is the first two tokens.
    assert torch.allclose(next_token_distribution(logits, 1.0, top_p=0.7), torch.tensor([2 / 3, 1 / 3, 0, 0]))
    assert torch.allclose(next_token_distribution(logits, 1.0, top_p=0.5), torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(next_token_distribution(logits, 1e-30), torch.tensor([1.0, 0, 0, 0]))
    # top-k larger than the vocabulary is documented as "off".
    assert torch.equal(next_token_distribution(logits, 1.0, top_k=99), next_token_distribution(logits, 1.0))


def test_top_k_sampling_only_ever_picks_the_k_likeliest(model):
    for step in token_ids(model, [1, 2], 30, top_k=3, seed=1):
        token, logits, _ = step
        assert token in torch.topk(logits, 3).indices.tolist()


# --- streaming ----------------------------------------------------------------------------------


def test_stream_steps_report_what_the_model_believed(model, tokenizer):
    steps = list(stream(model, tokenizer, "abc", 20, temperature=0.8, top_k=6, seed=2))
    assert len(steps) == 20 and steps[-1].finish_reason == "length"
    assert all(s.finish_reason is None for s in steps[:-1])
    assert "abc" + "".join(s.text for s in steps) == sample_text(model, tokenizer, "abc", 20, temperature=0.8,
                                                                  top_k=6, seed=2)
    for step in steps:
        probs = torch.softmax(step.logits, dim=-1)
        assert step.probability == pytest.approx(float(probs[step.token_id]), abs=1e-6)
        assert step.entropy == pytest.approx(-sum(p * math.log2(p) for p in probs.tolist() if p > 0), abs=1e-4)
        assert len(step.alternatives) == 5
        assert [p for _, p in step.alternatives] == sorted((p for _, p in step.alternatives), reverse=True)
        assert step.alternatives[0][1] == pytest.approx(float(probs.max()), abs=1e-6)
        assert step.text == tokenizer.decode([step.token_id])
        # The sampled distribution is the top-6 renormalised at temperature 0.8: higher than the model's own.
        assert step.sampled_probability >= step.probability
    greedy = list(stream(model, tokenizer, "abc", 10, temperature=0))
    assert all(s.text == s.alternatives[0][0] and s.sampled_probability == 1.0 for s in greedy)


def test_a_confident_model_has_low_entropy_and_a_clueless_one_log2_v():
    bigram = build_model(make_config("bigram", vocab_size=20, block_size=8)).eval()
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrst")
    uniform = next(stream(bigram, tokenizer, "a", 1, temperature=0))
    assert uniform.entropy == pytest.approx(math.log2(20), abs=1e-5) and uniform.probability == pytest.approx(0.05)
    with torch.no_grad():
        bigram.table.weight[0, 7] = 30.0  # after "a", "h" is all but certain
    certain = next(stream(bigram, tokenizer, "a", 1, temperature=0))
    assert certain.text == "h" and certain.entropy < 0.01 and certain.probability > 0.999


def test_stop_strings_and_stop_ids_end_generation(model, tokenizer):
    free = list(stream(model, tokenizer, "abc", 40, seed=2))
    text = "".join(s.text for s in free)
    stop = text[10:12]
    stopped = list(stream(model, tokenizer, "abc", 40, seed=2, stop_strings=[stop, "not-there"]))
    stopped_text = "".join(s.text for s in stopped)
    assert stopped_text == text[: text.index(stop) + 2] and stopped_text.endswith(stop)
    assert stopped[-1].finish_reason == "stop"
    by_id = list(stream(model, tokenizer, "abc", 40, seed=2, stop_ids=[free[7].token_id]))
    assert by_id[-1].token_id == free[7].token_id and by_id[-1].finish_reason == "stop"
    assert len(by_id) == [s.token_id for s in free].index(free[7].token_id) + 1
    with pytest.raises(ValueError, match="stop strings"):
        list(stream(model, tokenizer, "abc", 5, stop_strings=[""]))


def test_stream_text_holds_back_an_incomplete_multibyte_character(shakespeare):
    tokenizer = BPETokenizer.train(shakespeare[:20000] + " café naïve", vocab_size=300)
    emoji = tokenizer.encode("🙂")
    assert len(emoji) > 1, "the emoji must span several byte tokens for this test to mean anything"
    tracker = TextTracker(tokenizer)
    pieces = [tracker.add(token) for token in tokenizer.encode("a🙂b")]
    assert "".join(pieces) == "a🙂b" and pieces.count("") == len(emoji) - 1
    # A random model spells broken UTF-8 too: the streamed pieces still join to the decoded ids.
    model = build_model(make_config("gpt", vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2,
                                    n_embd=16)).eval()
    randomize_(model, scale=0.5)
    steps = list(stream(model, tokenizer, "hi", 60, seed=0))
    assert "".join(s.text for s in steps) == tokenizer.decode([s.token_id for s in steps])


# --- fairness -----------------------------------------------------------------------------------


def test_two_copies_of_a_model_write_the_same_text_side_by_side(model, tokenizer):
    copy = random_model("gpt")  # the same weights, a different object (and an uncached one below)
    final = list(side_by_side({"a": (model, tokenizer), "b": (copy, tokenizer)}, "abc", 60, seed=11))[-1]
    assert final["a"]["text"] == final["b"]["text"] and final["a"]["new_tokens"] == 60
    uncached = list(side_by_side({"a": (model, tokenizer), "b": (copy, tokenizer)}, "abc", 60, seed=11,
                                 use_cache=False))[-1]
    assert uncached["b"]["text"] == final["a"]["text"]


def test_every_model_uses_the_same_random_draw_at_each_step(tokenizer):
    """Two bigrams with different fixed distributions: each step's token is that model's inverse CDF
    at the *same* uniform, the t-th draw of the seed's generator."""
    distributions = {}
    models = {}
    for name, seed in (("a", 0), ("b", 1)):
        bigram = build_model(make_config("bigram", vocab_size=20, block_size=8)).eval()
        row = torch.randn(20, generator=torch.Generator().manual_seed(seed)) * 2
        with torch.no_grad():
            bigram.table.weight.copy_(row.expand(20, 20))  # the same distribution after every token
        distributions[name] = torch.softmax(row, dim=-1)
        models[name] = (bigram, tokenizer)
    final = list(side_by_side(models, "a", 50, seed=7))[-1]
    generator = torch.Generator().manual_seed(7)
    uniforms = [float(torch.rand((), generator=generator, dtype=torch.float64)) for _ in range(50)]
    for name in models:
        expected = [inverse_cdf(distributions[name], u) for u in uniforms]
        assert [s.token_id for s in final[name]["steps"]] == expected
    agree = sum(x.token_id == y.token_id for x, y in zip(final["a"]["steps"], final["b"]["steps"]))
    assert agree > 0


def test_side_by_side_streams_every_model_and_matches_solo_generation(model, tokenizer):
    other = build_model(variant_config("llama-gqa")).eval()
    rounds = list(side_by_side({"a": (model, tokenizer), "b": (other, tokenizer)}, "abc", 12, seed=4))
    final = rounds[-1]
    assert final["a"]["new_tokens"] == final["b"]["new_tokens"] == 12 and final["a"]["done"]
    assert final["a"]["finish_reason"] == "length"
    assert final["a"]["text"] == tokenizer.decode(generate(model, tokenizer.encode("abc"), 12, seed=4))
    assert final["b"]["text"] == tokenizer.decode(generate(other, tokenizer.encode("abc"), 12, seed=4))
    assert final["a"]["tokens_per_sec"] > 0
    assert 0 < final["a"]["first_token_seconds"] < 5
    assert [r["a"]["new_tokens"] for r in rounds[:3]] == [1, 2, 3], "columns grow together"


def test_longer_turns_write_the_same_columns_in_fewer_rounds(model, tokenizer):
    other = build_model(variant_config("llama-gqa")).eval()
    models = {"a": (model, tokenizer), "b": (other, tokenizer)}
    one = list(side_by_side(models, "abc", 10, seed=4))
    four = list(side_by_side(models, "abc", 10, seed=4, tokens_per_turn=4))
    assert [r["a"]["new_tokens"] for r in four] == [4, 8, 10] and [r["b"]["new_tokens"] for r in four] == [4, 8, 10]
    assert len(one) == 10 and four[-1]["a"]["done"] and four[-1]["b"]["done"]
    for name in models:
        assert four[-1][name]["text"] == one[-1][name]["text"]
        assert [s.token_id for s in four[-1][name]["steps"]] == [s.token_id for s in one[-1][name]["steps"]]
    for bad in (0, -1, True, 2.5, "4"):
        with pytest.raises(ValueError, match="tokens_per_turn"):
            next(side_by_side(models, "abc", 10, tokens_per_turn=bad))


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [({"temperature": -1.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
     ({"temperature": float("inf")}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_k": 2.5}, "top_k"),
     ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": float("nan")}, "top_p")],
)
def test_bad_settings_are_refused(model, settings, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [1], 5, **settings)


def test_bad_lengths_and_prompts_are_refused_or_clamped(model, tokenizer):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, [], 5)
    with pytest.raises(ValueError, match="prompt is empty"):
        list(stream(model, tokenizer, "", 5))
    with pytest.raises(ValueError, match="max_new_tokens must be between 0"):
        generate(model, [1], MAX_NEW_TOKENS + 1)
    with pytest.raises(ValueError, match="max_new_tokens must be a whole number"):
        generate(model, [1], 5.5)
    with pytest.raises(ValueError, match="'z'"):
        list(stream(model, tokenizer, "abz", 5))
    assert generate(model, [1], 0) == [1]
    # A prompt longer than the context: the model sees its last block_size tokens, and says so.
    long_prompt = "abcdefghij" * 5
    steps = list(stream(model, tokenizer, long_prompt, 3, temperature=0))
    assert steps[0].context_cut and not steps[1].context_cut
    tail = list(stream(model, tokenizer, long_prompt[-BLOCK:], 3, temperature=0))
    assert [s.token_id for s in steps] == [s.token_id for s in tail] and not tail[0].context_cut


def test_a_bf16_model_generates_with_a_bf16_cache():
    model = random_model("llama-gqa").to(torch.bfloat16)
    assert model.new_cache().keys.dtype == torch.bfloat16
    steps = list(token_ids(model, [1, 2, 3], 30, use_cache=True, seed=1))
    assert len(steps) == 30 and all(torch.isfinite(logits).all() for _, logits, _ in steps)
