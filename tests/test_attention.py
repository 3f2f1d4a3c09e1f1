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


@pytest.mark.parametrize("n_layer, n_head", [(1, 1), (2, 3), (4, 4)])
def test_the_grid_of_heatmaps_puts_each_head_in_its_cell(n_layer, n_head):
    """The grid is built from a cached layout: it must be the figure plotly's own subplots give."""
    from plotly.subplots import make_subplots

    from babygpt.ui.attention_tab import grid

    T = 5
    weights = torch.rand(n_layer, n_head, T, T)
    tokens = list("abcde")
    expected = make_subplots(rows=n_layer, cols=n_head, horizontal_spacing=0.02, vertical_spacing=0.04,
                             subplot_titles=[f"L{l} H{h}" for l in range(n_layer) for h in range(n_head)])
    for l in range(n_layer):
        for h in range(n_head):
            expected.add_heatmap(z=weights[l, h].tolist(), row=l + 1, col=h + 1)
    for _ in range(2):  # the second call takes the cached layout
        figure = grid(weights, tokens)
        assert len(figure.data) == n_layer * n_head
        for trace, reference in zip(figure.data, expected.data):
            assert (trace.xaxis, trace.yaxis) == (reference.xaxis, reference.yaxis)
            assert trace.z == reference.z
            assert figure.layout[trace.xaxis.replace("x", "xaxis")].domain == \
                expected.layout[reference.xaxis.replace("x", "xaxis")].domain
        assert [a.text for a in figure.layout.annotations] == [a.text for a in expected.layout.annotations]
        assert figure.layout.yaxis.autorange == "reversed" and figure.layout.height == max(300, 170 * n_layer)
    figure.layout.height = 999  # a caller changing one figure leaves the next one as it was
    assert grid(weights, tokens).layout.height == max(300, 170 * n_layer)
