"""BertViz-style attention views (Vig 2019) as plain SVG: no JavaScript, no download.

The *head view* draws one layer: the text twice, side by side, and a line from each token on the
left (the query) to each token on the right it attends to, as opaque as the weight; every head
has its colour. The *model view* draws the same for every layer × head as small thumbnails.
Hovering a token on the left keeps only its lines (pure CSS: each query's lines are one group).
"""

from __future__ import annotations

import html

import torch

HEAD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
CSS = """
.bv-wrap {display: flex; flex-wrap: wrap; gap: 10px;}
.bv svg:hover .bv-q {opacity: 0.08;}
.bv svg .bv-q:hover {opacity: 1;}
.bv text {font: 11px monospace; fill: var(--body-text-color, #222);}
.bv-cap {font-size: 0.8em; text-align: center;}
"""


def token_label(token: str) -> str:
    return html.escape(repr(token)[1:-1] or " ")


def lines_svg(weights: torch.Tensor, tokens: list[str], colours: list[str], row: float = 14.0, width: float = 260.0,
              labels: bool = True, threshold: float = 0.02) -> str:
    """One SVG: ``weights`` (heads, T, T); head h's lines in ``colours[h]``; faint lines left out."""
    heads, T, _ = weights.shape
    label_width = 70.0 if labels else 4.0
    left, right = label_width, width - label_width
    height = T * row + 6
    parts = [f"<svg width='{width:.0f}' height='{height:.0f}' viewBox='0 0 {width:.0f} {height:.0f}'>"]
    if labels:
        for t, token in enumerate(tokens):  # keys on the right, drawn once, under the query groups
            parts.append(f"<text x='{right + 4:.0f}' y='{(t + 1) * row:.1f}'>{token_label(token)}</text>")
    for q in range(T):
        y = q * row + row * 0.7
        group = ["<g class='bv-q'>"]
        if labels:
            group.append(f"<text x='{left - 4:.0f}' y='{(q + 1) * row:.1f}' "
                         f"text-anchor='end'>{token_label(tokens[q])}</text>")
        for h in range(heads):
            for k in range(T):
                w = float(weights[h, q, k])
                if w >= threshold:
                    group.append(f"<line x1='{left:.0f}' y1='{y:.1f}' x2='{right:.0f}' y2='{k * row + row * 0.7:.1f}' "
                                 f"stroke='{colours[h]}' stroke-width='1.5' stroke-opacity='{min(w, 1.0):.2f}'/>")
        group.append("</g>")
        parts.append("".join(group))
    parts.append("</svg>")
    return "".join(parts)


def head_view(weights: torch.Tensor, tokens: list[str], layer: int) -> str:
    """Every head of ``layer`` (weights: layers, heads, T, T) in one diagram, a colour per head."""
    heads = weights.shape[1]
    colours = [HEAD_COLOURS[h % len(HEAD_COLOURS)] for h in range(heads)]
    legend = " ".join(f"<span style='color:{c}'>■ head {h}</span>" for h, c in enumerate(colours))
    return (f"<div class='bv'><div class='bv-cap'>layer {layer} · {legend} · hover a token on the left</div>"
            + lines_svg(weights[layer], tokens, colours, width=420) + "</div>")


def model_view(weights: torch.Tensor, tokens: list[str]) -> str:
    """Every layer × head as a thumbnail (no labels; the head view has them)."""
    n_layer, n_head = weights.shape[:2]
    cells = []
    for layer in range(n_layer):
        for head in range(n_head):
            svg = lines_svg(weights[layer, head : head + 1], tokens, [HEAD_COLOURS[head % len(HEAD_COLOURS)]],
                            row=4.0, width=90.0, labels=False, threshold=0.05)
            cells.append(f"<div class='bv'><div class='bv-cap'>L{layer} H{head}</div>{svg}</div>")
    columns = f"grid-template-columns: repeat({n_head}, max-content)"
    return f"<div style='display:grid; gap:8px; {columns}'>" + "".join(cells) + "</div>"
