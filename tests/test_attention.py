import pytest
import torch

from babygpt.attention import attention_maps
from babygpt.models import build_model
from babygpt.tokenizer import CharTokenizer

from conftest import randomize_, variant_config


def test_maps_have_one_row_per_token_and_match_the_model():
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrst")
    model = build_model(variant_config("llama-gqa", vocab_size=tokenizer.vocab_size))
    randomize_(model, scale=0.3)
    maps = attention_maps(model, tokenizer, "abcabcde")
    assert maps.tokens == list("abcabcde")
    assert maps.weights.shape == (2, 4, 8, 8)
    _, kept = model.run_with_cache(torch.tensor([tokenizer.encode("abcabcde")]), lambda name: name.endswith("pattern"))
    direct = torch.stack([kept[f"blocks.{i}.attn.pattern"] for i in range(2)], dim=1)
    assert torch.equal(maps.weights, direct[0])
    assert torch.allclose(maps.head_average(1), direct[0, 1].mean(0))


def test_long_text_keeps_the_last_block_and_bad_text_is_refused():
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrst")
    model = build_model(variant_config("gpt", vocab_size=tokenizer.vocab_size))
    maps = attention_maps(model, tokenizer, "abcdefghij" * 3)
    assert len(maps.tokens) == 16 and "".join(maps.tokens) == ("abcdefghij" * 3)[-16:]
    with pytest.raises(ValueError, match="empty"):
        attention_maps(model, tokenizer, "")
    with pytest.raises(ValueError, match="not in this model's vocabulary"):
        attention_maps(model, tokenizer, "xyz!")
    bigram = build_model(variant_config("bigram", vocab_size=tokenizer.vocab_size))
    with pytest.raises(ValueError, match="no attention"):
        attention_maps(bigram, tokenizer, "abc")
