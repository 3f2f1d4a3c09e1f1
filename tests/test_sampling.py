import pytest
import torch

from babygpt.models import build_model
from babygpt.sampling import generate, next_token_distribution, stream
from conftest import randomize_, variant_config


@pytest.fixture(scope="module")
def model():
    m = build_model(variant_config("gpt")).eval()
    randomize_(m, scale=0.3)
    return m


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


def test_stream_yields_the_same_tokens_one_by_one_and_stops_at_a_stop_id(model):
    tokens = list(stream(model, [1, 2], 25, seed=2))
    assert tokens == generate(model, [1, 2], 25, seed=2)[2:]
    stop = tokens[4]
    stopped = list(stream(model, [1, 2], 25, seed=2, stop_ids=[stop]))
    assert stopped[-1] == stop and len(stopped) == tokens.index(stop) + 1


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert torch.allclose(next_token_distribution(logits, 1.0), torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert torch.allclose(next_token_distribution(logits, 1.0, top_k=2), torch.tensor([2 / 3, 1 / 3, 0, 0]))
    # 0.5 + 0.25 reaches 0.7: the nucleus is the first two tokens.
    assert torch.allclose(next_token_distribution(logits, 1.0, top_p=0.7), torch.tensor([2 / 3, 1 / 3, 0, 0]))
    assert torch.allclose(next_token_distribution(logits, 1.0, top_p=0.5), torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(next_token_distribution(logits, 1e-30), torch.tensor([1.0, 0, 0, 0]))


@pytest.mark.parametrize(
    "settings, message",
    [({"temperature": -1.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
     ({"temperature": float("inf")}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_p": 0.0}, "top_p"),
     ({"top_p": 1.5}, "top_p")],
)
def test_bad_settings_are_refused(model, settings, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [1], 5, **settings)
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, [], 5)


def test_side_by_side_streams_every_model_and_matches_solo_generation(model):
    from babygpt.sampling import side_by_side
    from babygpt.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.train("abcdefghijklmnopqrst")
    other = build_model(variant_config("llama-gqa")).eval()
    rounds = list(side_by_side({"a": (model, tokenizer), "b": (other, tokenizer)}, "abc", 12, seed=4))
    final = rounds[-1]
    assert final["a"]["new_tokens"] == final["b"]["new_tokens"] == 12 and final["a"]["done"]
    assert final["a"]["text"] == tokenizer.decode(generate(model, tokenizer.encode("abc"), 12, seed=4))
    assert final["b"]["text"] == tokenizer.decode(generate(other, tokenizer.encode("abc"), 12, seed=4))
    assert final["a"]["tokens_per_sec"] > 0
    assert [r["a"]["new_tokens"] for r in rounds[:3]] == [1, 2, 3], "columns grow together"
