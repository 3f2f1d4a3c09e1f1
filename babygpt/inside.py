"""Inside: one forward pass of a model on a prompt, stage by stage, from the text to the token drawn.

``walk(model, tokenizer, prompt)`` runs the model once with every hook point kept and asks the
family for its stages (``inside_stages``: embeddings, each block's parts, the logits), framed by
the two stages every family shares: the text cut into tokens, and the sampling of the next token
from the logits. ``sampling_stage`` is that last stage alone, cheap enough to redo whenever the
temperature slider moves, without running the model again. The draw is the one Compare makes: a
single uniform number ``u`` from a generator seeded with ``seed``, and the token whose slice of
the cumulative distribution holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .lora import lora_config, lora_hook_sites
from .models import LanguageModel, evaluating
from .models.stages import Figure, InsideView, Stage, norm, per_cent, shown, top_bars
from .sampling import check_settings, inverse_cdf, next_token_distribution


@dataclass
class Walk:
    stages: list[Stage]  # text to tokens, the family's own stages, then the sampling
    view: InsideView  # what they were read from
    cut: bool  # the prompt was longer than the model's context: these are its last tokens
    notes: list[str]  # choices that do not apply to this model, explained

    @property
    def logits(self) -> torch.Tensor:
        """(V,): the model's logits at the chosen position."""
        return self.view.logits[self.view.position]


def first_draw(seed: int) -> float:
    """The uniform number Compare's first sampled step uses for ``seed``."""
    return float(torch.rand((), generator=torch.Generator(device="cpu").manual_seed(seed), dtype=torch.float64))


def check_choice(kind: str, value, count: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the {kind} must be a whole number, got {value!r}")
    if not 0 <= value < count:
        raise ValueError(f"{kind} {value} is outside {what}: choose 0 to {count - 1}" if count else
                         f"{what}: there is no {kind} to choose")


def encode_prompt(model: LanguageModel, tokenizer, prompt: str) -> tuple[list[int], bool]:
    """The ids the model sees of ``prompt`` (its last ``max_context``) and whether it was cut; the
    character tokenizer names characters it does not know."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("the prompt is empty: type at least one character")
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens")
    seen = ids[-model.max_context:] if model.max_context else ids
    return seen, len(seen) < len(ids)


@torch.no_grad()
def walk(model: LanguageModel, tokenizer, prompt: str, position: int | None = None, layer: int = 0, head: int = 0,
         temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> Walk:
    """Every stage of ``model``'s forward pass on ``prompt``, following the prediction made at
    ``position`` (default: the last token) through ``layer`` and ``head``."""
    ids, cut = encode_prompt(model, tokenizer, prompt)
    position = len(ids) - 1 if position is None else position
    check_choice("position", position, len(ids), f"the prompt's {len(ids)} tokens")
    layers, heads = model.inside_choices()
    notes = []
    for kind, value, count in (("layer", layer, layers), ("head", head, heads)):
        if count:
            check_choice(kind, value, count, f"this model's {count} {kind}s")
        elif value:
            notes.append(f"This model ({type(model).__name__}) has no {kind}s to choose from: the {kind} picker does "
                         "not apply to it.")
    device = next(model.parameters()).device
    with evaluating(model):
        logits, kept = model.run_with_cache(torch.tensor([ids], device=device))
    kept = {name: tensor.float().cpu() for name, tensor in kept.items()}
    vocab = [tokenizer.decode([i]) for i in range(model.config.vocab_size)]
    view = InsideView([tokenizer.decode([i]) for i in ids], ids, kept, logits[0].float().cpu(), vocab, position,
                      layer if layers else 0, head if heads else 0)
    stages = [tokens_stage(view, prompt, cut, tokenizer), *model.inside_stages(view)]
    if lora_config(model) is not None:
        stages.insert(-1, adapter_stage(model, view))  # before the logits
    stages.append(sampling_stage(view.logits[position], vocab, temperature, top_k, top_p, first_draw(seed)))
    return Walk(stages, view, cut, notes)


def tokens_stage(view: InsideView, prompt: str, cut: bool, tokenizer) -> Stage:
    kind = "characters" if tokenizer.kind == "char" else "byte-level BPE pieces"
    sentences = [f"The tokenizer cuts the {len(prompt)}-character prompt into {len(view.ids)} tokens ({kind}), each "
                 f"an id in a vocabulary of {len(view.vocab)}."]
    if cut:
        sentences.append(f"The prompt is longer than the model's context: it sees the last {len(view.ids)} tokens.")
    sentences.append(f"The walk follows the prediction made at token {view.position}, {shown(view.token)}: "
                     "what comes after it.")
    figure = Figure("bars", "token ids", torch.tensor(view.ids, dtype=torch.float32),
                    x=[f"{i}: {shown(t)}" for i, t in enumerate(view.tokens)])
    return Stage("tokens", "Text → tokens", sentences, [figure])


def adapter_stage(model: LanguageModel, view: InsideView) -> Stage:
    """At every adapted matrix, the base's W·x beside the adapter's (alpha/r)·B·A·x, at the chosen token."""
    config = lora_config(model)
    sites = lora_hook_sites(model)
    how = (f"LoRA (r {config.r}, alpha {config.alpha:g}): each adapted matrix W is frozen and adds "
           f"(alpha/r)·B·A·x = {config.scale:g}·B·A·x, with A of {config.r} rows.")
    if not sites:
        return Stage("adapter", "The LoRA adapter", [how, "The adapter is merged into the base weights here, so "
                                                     "its share cannot be told apart: load it unmerged to see it."])
    base = torch.tensor([norm(view.at(f"{site}.base")) for site in sites])
    update = torch.tensor([norm(view.at(f"{site}.update")) for site in sites])
    ratio = update / base.clamp(min=1e-12)
    most = int(ratio.argmax())
    sentences = [how, f"At {shown(view.token)} the adapter changes {sites[most]} the most: its update has norm "
                      f"{float(update[most]):.2f} beside the base's {float(base[most]):.2f} "
                      f"({per_cent(float(ratio[most]))}); over all {len(sites)} adapted matrices the update is "
                      f"{per_cent(float(update.sum() / base.sum()))} of the base's size."]
    return Stage("adapter", "The LoRA adapter: base W·x beside the update", sentences,
                 [Figure("bars", "norm of W·x (the frozen base)", base, x=sites),
                  Figure("bars", "norm of (alpha/r)·B·A·x (the adapter)", update, x=sites)])


def sampling_stage(logits: torch.Tensor, vocab: list[str], temperature: float, top_k: int = 0, top_p: float = 1.0,
                   u: float = 0.5) -> Stage:
    """From logits (V,) to the token drawn: temperature, the top-k / top-p cut, the probabilities,
    and the draw ``u`` on the cumulative distribution (greedy at temperature 0)."""
    check_settings(1, temperature, top_k, top_p)
    labels = [shown(t) for t in vocab]
    if temperature == 0:
        token = int(logits.argmax())
        return Stage("sampling", "Sampling the next token", [
            f"At temperature 0 there is no draw: the highest logit wins, {labels[token]}."],
            [top_bars(logits, labels, 10, "the 10 highest logits")], token=token)
    probs = next_token_distribution(logits, temperature, top_k, top_p)
    token = inverse_cdf(probs, u)
    kept = int((probs > 0).sum())
    plain = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = torch.cumsum(probs.double(), dim=-1)
    low = float(cdf[token - 1]) if token else 0.0
    sentences = [f"Logits divided by the temperature {temperature:g} and turned into probabilities by softmax"
                 + (" (a temperature below 1 sharpens them, above 1 flattens them)." if temperature != 1 else ".")]
    if kept < len(vocab):
        share = per_cent(float(plain[probs > 0].sum()))
        sentences.append(f"The cut (top-k {top_k or 'off'}, top-p {top_p:g}) keeps {kept} of {len(vocab)} tokens, "
                         f"{share} of the probability, and rescales them to sum to 1.")
    sentences.append(f"The draw u = {u:.3f} falls in the slice of {labels[token]}, [{low:.3f}, "
                     f"{float(cdf[token]):.3f}) of the cumulative distribution (tokens in id order), so "
                     f"{labels[token]} comes next, with probability {per_cent(float(probs[token]))}.")
    ordered = torch.nonzero(probs > 0).flatten()
    cumulative = Figure("cumulative", f"cumulative distribution; u = {u:.3f} picks {labels[token]}",
                        cdf[ordered].float(), x=[labels[i] for i in ordered.tolist()], mark=u)
    return Stage("sampling", "Sampling the next token", sentences,
                 [top_bars(probs, labels, 10, "the 10 likeliest next tokens"), cumulative], token=token)
