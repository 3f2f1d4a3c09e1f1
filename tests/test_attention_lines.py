"""BertViz-style SVG views (babygpt/ui/attention_lines.py), checked on their markup."""

import re

import torch

from babygpt.ui.attention_lines import head_view, lines_svg, model_view


def test_one_line_per_weight_above_the_threshold_grouped_by_query():
    weights = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.01, 0.49, 0.5]]])  # one head, causal
    svg = lines_svg(weights, ["a", "<", "\n"], ["#123456"], threshold=0.02)
    assert svg.count("<g class='bv-q'>") == 3
    assert svg.count("<line") == 5  # the 0.01 and the zeros are left out
    assert "stroke-opacity='0.49'" in svg and "stroke='#123456'" in svg
    assert "&lt;" in svg and "\\n" in svg  # tokens escaped and shown visibly


def test_head_view_colours_each_head_and_model_view_has_every_head():
    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    view = head_view(weights, list("hello"), layer=1)
    assert "layer 1" in view and all(f"head {h}" in view for h in range(3))
    assert len(set(re.findall(r"stroke='(#[0-9a-f]{6})'", view))) == 3
    grid = model_view(weights, list("hello"))
    assert grid.count("<svg") == 6 and "L1 H2" in grid
