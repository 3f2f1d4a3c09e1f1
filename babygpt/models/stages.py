"""The pieces of an Inside walk: one forward pass shown stage by stage, on the model's own tensors.

A family answers ``inside_stages(view)`` with a list of ``Stage``\\ s, each a title, a few
sentences that quote this model's numbers on this prompt, and the ``Figure``\\ s to draw (the UI
turns them into plots; nothing here draws). Every tensor comes from a hook point of one
``run_with_cache`` pass (``InsideView.kept``), and ``recompose(kept)`` redoes the arithmetic the
cards describe from those tensors and the model's weights, so a test can hold the walk to the
model's own logits. The helpers below are the cards several families share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class Figure:
    """One plot of a stage card: ``kind`` is ``bars`` (1-D values, one label per bar), ``vector``
    (1-D values, indexed by dimension), ``heatmap`` (2-D values, ``y`` labels rows and ``x``
    columns; ``masked`` cells are drawn as masked, not as numbers) or ``cumulative`` (a cumulative
    distribution, one label per step, with ``mark`` the point drawn on it)."""

    kind: str
    title: str
    values: torch.Tensor
    x: list[str] | None = None
    y: list[str] | None = None
    masked: torch.Tensor | None = None
    mark: float | None = None


@dataclass
class Stage:
    key: str  # a stable id: "embedding", "block 0 attention pattern", "logits", ...
    title: str
    sentences: list[str]
    figures: list[Figure] = field(default_factory=list)
    token: int | None = None  # the sampling stage: the token drawn


@dataclass
class InsideView:
    """One forward pass on one prompt with every hook point kept, and what the learner picked."""

    tokens: list[str]  # the prompt as the model saw it, one display string per token
    ids: list[int]
    kept: dict[str, torch.Tensor]  # hook point -> tensor, as the pass made it (a batch of one)
    logits: torch.Tensor  # (T, V)
    vocab: list[str]  # every token id's text
    position: int  # the token whose next-token prediction is followed
    layer: int = 0
    head: int = 0

    def at(self, name: str) -> torch.Tensor:
        """The hook point's vector at the chosen position (from a (1, T, ...) tensor)."""
        return self.kept[name][0, self.position]

    def row(self, name: str) -> torch.Tensor:
        """The hook point's tensor for the one prompt (its batch dimension dropped)."""
        return self.kept[name][0]

    @property
    def token(self) -> str:
        return self.tokens[self.position]


def shown(token: str) -> str:
    """A token as a label a reader can see: spaces and line breaks made visible, quoted."""
    return repr(token.replace(" ", "␣").replace("\n", "⏎"))[1:-1].join("''")


def norm(x: torch.Tensor) -> float:
    return float(x.float().norm())


def per_cent(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


def where_it_looks(key: int, query: int, tokens: list[str]) -> str:
    """Where a query at ``query`` looks when it looks at ``key``, in words."""
    if key == query:
        return f"itself ({shown(tokens[key])})"
    if key == query - 1:
        return f"the previous token {shown(tokens[key])}"
    if key == 0:
        return f"the first token {shown(tokens[key])}"
    return f"{shown(tokens[key])}, {query - key} tokens back"


def top_bars(values: torch.Tensor, labels: list[str], k: int, title: str) -> Figure:
    """The ``k`` largest of ``values`` as bars, largest first."""
    top = torch.topk(values.float(), min(k, values.numel()))
    return Figure("bars", title, top.values, x=[labels[i] for i in top.indices.tolist()])


def embedding_card(view: InsideView, table_rows: int, width: int, position_vector: torch.Tensor | None = None,
                   positions_note: str | None = None) -> Stage:
    """Token embedding, plus the learned position embedding where the family has one
    (``positions_note`` says where positions enter instead, when it has none)."""
    token_vector = view.at("embed")
    sentences = [f"{shown(view.token)} is token {view.ids[view.position]}: its row of the {table_rows} × {width} "
                 f"embedding table is a vector of {width} numbers (norm {norm(token_vector):.2f})."]
    figures = [Figure("vector", f"token embedding of {shown(view.token)}", token_vector)]
    title = "Token embedding"
    if position_vector is not None:
        total = token_vector + position_vector
        sentences.append(f"Position {view.position} adds row {view.position} of the position table (norm "
                         f"{norm(position_vector):.2f}); the sum, norm {norm(total):.2f}, enters the first block.")
        figures += [Figure("vector", f"position embedding {view.position}", position_vector),
                    Figure("vector", "their sum: the residual stream", total)]
        title += " + position embedding"
    elif positions_note:
        sentences.append(positions_note)
    return Stage("embedding", title, sentences, figures)


def norm_card(view: InsideView, before: str, after: str, kind: str, title: str, key: str) -> Stage:
    """A LayerNorm or RMSNorm at the chosen position: the vector before and after, its statistics."""
    x, y = view.at(before).float(), view.at(after).float()
    if kind == "LayerNorm":
        how = (f"LayerNorm subtracts the vector's mean ({float(x.mean()):+.3f}) and divides by its standard "
               f"deviation ({float(x.std(unbiased=False)):.3f}), then multiplies by a learned scale and adds a "
               f"learned shift, one of each per dimension.")
    else:
        how = (f"RMSNorm divides by the vector's root mean square ({float(x.pow(2).mean().sqrt()):.3f}; no mean is "
               f"subtracted) and multiplies by a learned scale per dimension.")
    sentences = [how, f"At {shown(view.token)} the norm of the vector goes from {norm(x):.2f} to {norm(y):.2f}."]
    figures = [Figure("vector", "before", x), Figure("vector", f"after {kind}", y)]
    return Stage(key, title, sentences, figures)


def attention_cards(view: InsideView, prefix: str, n_head: int, head_dim: int, kv_group: int = 1,
                    extra: list[str] | None = None) -> list[Stage]:
    """q, k, v of the chosen head; its scores with the causal mask; the pattern; the weighted sum of v.
    ``kv_group``: query heads per key/value head (grouped-query attention)."""
    h, p, tokens = view.head, view.position, view.tokens
    kv = h // kv_group
    q = view.row(f"{prefix}.q_rot" if f"{prefix}.q_rot" in view.kept else f"{prefix}.q")[h]  # (T, hs)
    k = view.row(f"{prefix}.k_rot" if f"{prefix}.k_rot" in view.kept else f"{prefix}.k")[kv]
    v = view.row(f"{prefix}.v")[kv]
    seen = tokens[: p + 1]
    labels = [shown(t) for t in tokens]
    qkv = Stage(f"{prefix} qkv", f"Queries, keys and values (head {h})", [
        f"{n_head} heads of {head_dim} dimensions each. Head {h}'s query for {shown(view.token)} has norm "
        f"{norm(q[p]):.2f}; the keys of the {len(seen)} tokens it may look at have norms "
        f"{min(norm(r) for r in k[: p + 1]):.2f} to {max(norm(r) for r in k[: p + 1]):.2f}.",
        "A query asks what this token is looking for, a key says what a token offers, and a value is what it "
        "hands on when it is looked at.",
        *(extra or []),
    ], [Figure("vector", f"query of {shown(view.token)}", q[p]),
        Figure("heatmap", "keys (one row per token)", k, y=labels),
        Figure("heatmap", "values (one row per token)", v, y=labels)])
    scores = view.row(f"{prefix}.scores")[h]  # (T, T), -inf above the diagonal
    masked = torch.isinf(scores)
    best = int(scores[p, : p + 1].argmax())
    score_stage = Stage(f"{prefix} scores", f"Scores q·k/√{head_dim} and the causal mask (head {h})", [
        f"Each score is the dot product of a query and a key, divided by √{head_dim} = {math.sqrt(head_dim):.2f} "
        f"so its size does not grow with the head. The query of {shown(view.token)} scores highest on "
        f"{where_it_looks(best, p, tokens)}: {float(scores[p, best]):.2f}.",
        f"The {int(masked.sum())} cells above the diagonal are later tokens: they are set to −∞ before the softmax, "
        "so no token can look at the future.",
    ], [Figure("heatmap", "scores (row: query, column: key)", scores.masked_fill(masked, 0.0), x=labels, y=labels,
               masked=masked)])
    pattern = view.row(f"{prefix}.pattern")[h]  # (T, T)
    row = pattern[p, : p + 1]
    best = int(row.argmax())
    pattern_stage = Stage(f"{prefix} pattern", f"Softmax: the attention pattern (head {h})", [
        f"Softmax turns each row of scores into weights that are positive and sum to 1. Head {h} puts "
        f"{per_cent(float(row[best]))} of the attention of {shown(view.token)} on {where_it_looks(best, p, tokens)}.",
    ], [Figure("heatmap", "pattern (row: query, column: key)", pattern, x=labels, y=labels, masked=masked),
        Figure("bars", f"where {shown(view.token)} looks", row, x=labels[: p + 1])])
    z = view.row(f"{prefix}.z")[h]  # (T, hs)
    weighted = Stage(f"{prefix} z", f"The weighted sum of the values (head {h})", [
        f"Head {h}'s output for {shown(view.token)} is the average of the values weighted by that row: a vector of "
        f"{head_dim} numbers with norm {norm(z[p]):.2f}.",
    ], [Figure("vector", f"head {h}'s output for {shown(view.token)}", z[p])])
    return [qkv, score_stage, pattern_stage, weighted]


def residual_card(view: InsideView, before: str, added: str, after: str, what: str, key: str, n_head: int = 0,
                  width: int = 0) -> Stage:
    """The residual add: what a sub-layer adds to the stream, and the stream's norm before and after."""
    x, delta, y = view.at(before), view.at(added), view.at(after)
    sentences = []
    if n_head:
        sentences.append(f"The {n_head} heads' outputs are laid side by side and one matrix projects them back to "
                         f"the stream's {width} dimensions.")
    sentences.append(f"The {what} adds a vector of norm {norm(delta):.2f} to the residual stream: its norm at "
                     f"{shown(view.token)} goes from {norm(x):.2f} to {norm(y):.2f}.")
    return Stage(key, f"Residual add: + {what}", sentences,
                 [Figure("vector", f"the {what}'s output", delta), Figure("vector", "the residual stream after", y)])


def logits_card(view: InsideView, final_norm: str | None) -> Stage:
    """The last step before sampling: (the final norm and) the output head's score for every token."""
    logits = view.logits[view.position].float()
    best = int(logits.argmax())
    scored = (f"the output head gives each of the {logits.numel()} tokens of the vocabulary a score: "
              f"{shown(view.vocab[best])} scores highest ({float(logits[best]):.2f}), the lowest "
              f"{float(logits.min()):.2f}.")
    if final_norm:
        sentence = (f"The stream at {shown(view.token)} is normalised once more (norm {norm(view.at(final_norm)):.2f});"
                    f" then {scored}")
    else:
        sentence = scored[0].upper() + scored[1:]
    return Stage("logits", "Logits: a score for every next token", [sentence],
                 [top_bars(logits, [shown(t) for t in view.vocab], 10, "the 10 highest logits")])


def mlp_card(view: InsideView, prefix: str, width: int, hidden: int, how: str, active: torch.Tensor, key: str,
             title: str, figures: list[Figure]) -> Stage:
    """The feed-forward layer at the chosen position; ``active`` marks the hidden units that pass
    something on (booleans, one per unit)."""
    share = float(active.float().mean())
    sentences = [f"The MLP widens the {width}-number vector to {hidden} numbers, {how}, and projects it back to "
                 f"{width}. At {shown(view.token)}, {per_cent(share)} of the {hidden} units are active "
                 f"({int(active.sum())}).",
                 f"Its output has norm {norm(view.at(f'{prefix}.mlp_out')):.2f}."]
    return Stage(key, title, sentences, figures)


def stream_card(view: InsideView, steps: list[tuple[str, str]]) -> Stage:
    """The residual stream's norm at the chosen position after each step that adds to it:
    ``steps`` are (label, hook point) pairs, first to last."""
    norms = torch.tensor([norm(view.at(name)) for _, name in steps])
    grew = int(norms[1:].sub(norms[:-1]).argmax()) + 1 if len(steps) > 1 else 0
    sentences = [f"Every block adds to one residual stream; its norm at {shown(view.token)} goes from "
                 f"{float(norms[0]):.2f} to {float(norms[-1]):.2f}."]
    if len(steps) > 1:
        sentences.append(f"The largest step is {steps[grew][0]} (+{float(norms[grew] - norms[grew - 1]):.2f}).")
    return Stage("residual stream", "The residual stream, step by step", sentences,
                 [Figure("bars", f"norm of the stream at {shown(view.token)}", norms, x=[label for label, _ in steps])])


def layer_norm_spelled(x: torch.Tensor, module) -> torch.Tensor:
    """LayerNorm written out: (x - mean) / sqrt(variance + eps) * weight + bias; Identity passes x."""
    if not isinstance(module, torch.nn.LayerNorm):
        return x
    centred = x - x.mean(-1, keepdim=True)
    normed = centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + module.eps)
    return normed * module.weight + (module.bias if module.bias is not None else 0.0)


def masked_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q·kᵀ/√d for (H, T, d) queries and keys, −∞ where a key comes after its query."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf"))
