"""Generation for every family: a KV cache, sampling controls, and a stream of steps that say what
the model believed.

What the model sees
    The last ``model.max_context`` tokens (its ``block_size``), as in nanoGPT's ``generate``. A
    prompt longer than that is cut to its last ``block_size`` tokens (``Step.context_cut`` says
    so). A recurrent model (``max_context`` None) sees the whole text through its state.

The cache (``use_cache=True``, the default; whatever the family's ``new_cache`` makes)
    The prompt is encoded once; each step then feeds only the new token. For an attention family
    the cache holds keys and values; once the text outgrows ``block_size`` the window slides by one
    token a step and is *re-encoded* from scratch: with learned positions every token's position
    embedding changes when the window moves; with RoPE the first layer could keep its keys, but a
    deeper layer's keys were computed from tokens that have since left the window. Re-encoding
    keeps cached generation equal to uncached generation (same tokens, logits within float
    rounding) at every length. Past ``block_size`` a step costs about what uncached generation
    costs, less the work no other position needs: the cached path asks the model for the last
    position only (``last_position_only``), so the final block computes one query, one MLP row and
    one row of logits, yet still caches every key and value. A recurrent family's cache is its
    state, which never needs re-encoding.

Randomness, and fair comparisons
    Every sampled step draws exactly one uniform number ``u`` from a ``torch.Generator`` made for the
    call (the global RNG is never touched) and picks the token where the cumulative distribution
    first passes ``u`` (inverse-CDF sampling). So two models given the same seed use the same ``u``
    at every step: differences in their text come from their distributions, not from the dice, and
    two copies of one model write the same text. Greedy decoding (``temperature=0``) draws nothing.

Settings
    ``temperature`` 0 = greedy, else > 0; ``top_k`` 0 = off, larger than the vocabulary = off;
    ``top_p`` in (0, 1]; ``stop_strings`` end generation once the new text contains one (the stop
    string is kept, as the token that completed it has been shown); ``max_new_tokens`` up to
    ``MAX_NEW_TOKENS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .models import evaluating

MAX_NEW_TOKENS = 100_000  # a bound on any one call; the app sets a lower one
TOP_ALTERNATIVES = 5


def next_token_distribution(logits: torch.Tensor, temperature: float, top_k: int = 0,
                            top_p: float = 1.0) -> torch.Tensor:
    """Probabilities (V,) from the last position's logits (V,) after temperature, top-k and top-p."""
    # Subtract the maximum first: (logits - max) / temperature is never +inf, so even a tiny
    # temperature gives a valid (nearly one-hot) distribution instead of NaN.
    logits = (logits.float() - logits.max()) / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        # Nucleus sampling: keep the smallest set of likeliest tokens whose mass reaches top_p.
        sorted_probs, order = torch.sort(probs, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs[mass_before >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def inverse_cdf(probs: torch.Tensor, u: float) -> int:
    """The token whose slice of [0, 1) holds ``u``, slices laid out in token-id order.

    A token of probability 0 has an empty slice and is never chosen; ``u`` is scaled by the total
    so rounding in the sum cannot run past the last token.
    """
    cdf = torch.cumsum(probs.double(), dim=-1)
    target = torch.tensor([u * float(cdf[-1])], dtype=torch.float64)
    return int(torch.searchsorted(cdf, target, right=True).clamp(max=probs.numel() - 1))


def check_settings(max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise ValueError(f"max_new_tokens must be a whole number, got {max_new_tokens!r}")
    if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 0 and {MAX_NEW_TOKENS:,}, got {max_new_tokens:,}")
    if not (temperature >= 0) or math.isinf(temperature):  # also refuses NaN
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be 0 (off) or a positive whole number, got {top_k!r}")
    if not 0.0 < top_p <= 1.0:  # also refuses NaN
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


class Context:
    """Feeds a growing list of ids to a model and returns the next-token logits, cached or not.

    ``encodes`` counts full (re-)encodings of the window, so tests and benchmarks can see the cache
    at work: 1 for a whole generation that stays within ``block_size``.
    """

    def __init__(self, model, use_cache: bool = True):
        self.model = model
        self.max_context = model.max_context  # None: a recurrent state carries the whole text
        self.device = next(model.parameters()).device
        self.cache = model.new_cache() if use_cache else None
        self.window_start = 0
        self.encodes = 0

    @torch.inference_mode()
    def next_logits(self, ids: list[int]) -> torch.Tensor:
        start = max(0, len(ids) - self.max_context) if self.max_context else 0
        if self.cache is None:
            self.encodes += 1
            logits, _ = self.model(torch.tensor([ids[start:]], device=self.device))
            return logits[0, -1]
        if self.cache.length == 0 or start != self.window_start:
            self.cache.reset()  # the window moved: every position changed
            self.window_start = start
            self.encodes += 1
        new = ids[start + self.cache.length :]
        logits, _ = self.model(torch.tensor([new], device=self.device), cache=self.cache, last_position_only=True)
        return logits[0, -1]


@torch.inference_mode()  # like no_grad, and lighter per operation: no version counters
def token_ids(
    model,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_ids: list[int] | None = None,
    use_cache: bool = True,
) -> Iterator[tuple[int, torch.Tensor, float]]:
    """The core loop: yield ``(token id, the model's logits (V,), the token's sampling probability)``."""
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token to continue from")
    vocab_size = model.config.vocab_size
    unknown = [i for i in prompt_ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size]
    if unknown:
        raise ValueError(f"token ids must be whole numbers from 0 to {vocab_size - 1}, got {unknown[:5]}")
    check_settings(max_new_tokens, temperature, top_k, top_p)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = list(prompt_ids)
    stop = set(stop_ids or ())
    context = Context(model, use_cache)
    with evaluating(model):
        for _ in range(max_new_tokens):
            logits = context.next_logits(ids)
            if temperature == 0:
                token, chance = int(logits.argmax()), 1.0
            else:
                probs = next_token_distribution(logits, temperature, top_k, top_p).cpu()
                u = float(torch.rand((), generator=generator, dtype=torch.float64))
                token = inverse_cdf(probs, u)
                chance = float(probs[token])
            ids.append(token)
            yield token, logits, chance
            if token in stop:
                break


def generate(model, prompt_ids: list[int], max_new_tokens: int, **settings) -> list[int]:
    """The prompt followed by up to ``max_new_tokens`` new ids (settings as ``token_ids``)."""
    return list(prompt_ids) + [token for token, _, _ in token_ids(model, prompt_ids, max_new_tokens, **settings)]


@dataclass
class Step:
    """One generated token and what the model believed when it chose it."""

    token_id: int
    text: str  # what the token adds to the text ("" while a multi-byte character is incomplete)
    probability: float  # the model's own probability of this token: softmax of its logits, temperature 1
    sampled_probability: float  # its probability after temperature / top-k / top-p (1.0 when greedy)
    entropy: float  # entropy of the model's own distribution, in bits: 0 = certain, log2(V) = clueless
    alternatives: list[tuple[str, float]]  # the model's five likeliest tokens, with probabilities
    logits: torch.Tensor = field(repr=False)  # (V,) raw logits, for checks and analysis
    context_cut: bool = False  # the prompt was longer than block_size and the model saw its end only
    finish_reason: str | None = None  # on the last step: "stop" (stop string or id) or "length"


class TextTracker:
    """Turns new ids into new text, holding back an incomplete multi-byte character (byte-level BPE).

    Only the ids since the last complete character are decoded, so a step costs the same at token
    1000 as at token 1: once a character is complete the decoder starts afresh on the next one.
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.pending = tokenizer, []

    def add(self, token: int, last: bool = False) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and not last:  # the character's remaining bytes may still come
            return ""
        self.pending = []
        return text


def stream(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    stop_strings: list[str] | tuple[str, ...] = (),
    **settings,
) -> Iterator[Step]:
    """Yield a ``Step`` per new token (settings as ``token_ids``: temperature, top_k, top_p, seed,
    stop_ids, use_cache)."""
    if not prompt:
        raise ValueError("the prompt is empty: give at least one character to continue from")
    if any(not s for s in stop_strings):
        raise ValueError("stop strings must not be empty")
    prompt_ids = tokenizer.encode(prompt)
    cut = model.max_context is not None and len(prompt_ids) > model.max_context
    tracker, new_text = TextTracker(tokenizer), ""
    longest_stop = max((len(s) for s in stop_strings), default=0)
    stop_ids = set(settings.get("stop_ids") or ())
    for n, (token, logits, chance) in enumerate(token_ids(model, prompt_ids, max_new_tokens, **settings), start=1):
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        top = torch.topk(probs, min(TOP_ALTERNATIVES, probs.numel()))
        entropy = float(-(probs * torch.log2(probs.clamp_min(1e-30))).sum())
        text = tracker.add(token, last=n == max_new_tokens or token in stop_ids)
        # Only the tail can hold a stop string that this token completed.
        tail_start = max(0, len(new_text) - longest_stop + 1)
        new_text += text
        stopped = token in stop_ids or any(s in new_text[tail_start:] for s in stop_strings)
        yield Step(
            token, text, float(probs[token]), chance, entropy,
            [(tokenizer.decode([i]), p) for p, i in zip(top.values.tolist(), top.indices.tolist())],
            logits, context_cut=cut and n == 1,
            finish_reason="stop" if stopped else "length" if n == max_new_tokens else None,
        )
        if stopped:
            return


def sample_text(model, tokenizer, prompt: str, max_new_tokens: int, **settings) -> str:
    """Text in, prompt plus continuation out (settings as ``stream``)."""
    return prompt + "".join(step.text for step in stream(model, tokenizer, prompt, max_new_tokens, **settings))


def side_by_side(models: dict, prompt: str, max_new_tokens: int, tokens_per_turn: int = 1,
                 **settings) -> Iterator[dict]:
    """Generate from several ``{name: (model, tokenizer)}`` at once, each writing up to
    ``tokens_per_turn`` tokens in its turn.

    With one seed for all, every model uses the same random draw at each step (see the module
    docstring), so the columns differ only where the models do; each model has its own generator,
    so the turns' length changes no text. Longer turns are faster: a model's weights and cache are
    still in the processor's caches for its next token, where one token per turn reads five models'
    in a row. Yields after every round ``{name: {"text", "steps", "new_tokens", "tokens_per_sec",
    "first_token_seconds", "done", "finish_reason", "context_cut"}}``. Times count each model's own
    work only: the prompt's encoding, the forward passes and the sampling.
    """
    if isinstance(tokens_per_turn, bool) or not isinstance(tokens_per_turn, int) or tokens_per_turn < 1:
        raise ValueError(f"tokens_per_turn must be a whole number of at least 1, got {tokens_per_turn!r}")
    streams, state = {}, {}
    for name, (model, tokenizer) in models.items():
        streams[name] = stream(model, tokenizer, prompt, max_new_tokens, **settings)
        state[name] = {"text": prompt, "steps": [], "new_tokens": 0, "tokens_per_sec": 0.0,
                       "first_token_seconds": None, "done": False, "finish_reason": None, "context_cut": False,
                       "_seconds": 0.0}
    while not all(s["done"] for s in state.values()):
        for name in models:
            entry = state[name]
            for _ in range(tokens_per_turn):
                if entry["done"]:
                    break
                take_step(entry, streams[name])
        yield {name: {k: v for k, v in entry.items() if not k.startswith("_")} for name, entry in state.items()}


def take_step(entry: dict, steps: Iterator[Step]) -> None:
    """One step of a model's stream into its column's ``entry`` (``side_by_side``)."""
    started = time.perf_counter()
    step = next(steps, None)
    entry["_seconds"] += time.perf_counter() - started
    if step is None:
        entry["done"] = True
        return
    if entry["first_token_seconds"] is None:
        entry["first_token_seconds"] = entry["_seconds"]
        entry["context_cut"] = step.context_cut
    entry["steps"].append(step)
    entry["new_tokens"] += 1
    entry["text"] += step.text
    entry["tokens_per_sec"] = entry["new_tokens"] / max(entry["_seconds"], 1e-9)
    if step.finish_reason:
        entry["finish_reason"], entry["done"] = step.finish_reason, True
