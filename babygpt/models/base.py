"""What every model family shares: the config checks, the loss, hook points and the family record.

A family is one file in this folder (a config dataclass, a ``LanguageModel`` subclass, its presets
and a ``FAMILY`` record) plus one line in ``FAMILIES`` (``__init__.py``). The rest of BabyGPT never
asks which family it holds: it asks the model, and each family answers in its own file.

- the computation: ``forward(idx, targets=None, cache=None, last_position_only=False)`` ->
  ``(logits, loss)``; ``last_position_only`` (for generation) returns the last position's logits
  only, ``(B, 1, V)``, and skips what no other position's logits need
- what there is to look at: ``HookPoint``\\ s, read with ``run_with_cache(idx, names)``; families with
  attention (``has_attention``) name each layer's pattern ``blocks.{i}.attn.pattern`` and its
  residual stream ``blocks.{i}.resid_pre`` / ``resid_post``, read out by ``unembed``
- the stats tab: ``parameter_groups()``, ``matmul_weights()``, ``attention_flops(context)``,
  ``saved_activations(bytes_per_value)``
- generation: ``new_cache(batch_size)`` (a KV cache, a recurrent state, or None) and
  ``max_context`` (the longest input, or None when the state carries the whole history)
- LoRA: ``lora_targets`` and ``lora_sites(targets)``
- transformers: ``to_transformers()``, or a ``ValueError`` that says why there is no counterpart
- the Train tab: the config's ``form_fields`` and ``from_form``
- the Inside tab: ``inside_choices()``, ``inside_stages(view)`` and ``recompose(ids, kept)``
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BaseConfig:
    """Fields every family has. ``vocab_size`` comes from the tokenizer, not from the user."""

    vocab_size: int = field(default=65, metadata={"help": "tokens in the vocabulary (set from the tokenizer)"})
    block_size: int = field(default=64, metadata={"help": "context length in tokens"})

    # The size fields of the app's Train tab that this family has (the tab shows every one of them).
    form_fields: ClassVar[tuple[str, ...]] = ("block_size",)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field; subclasses extend this."""
        check_int(self, "vocab_size", minimum=1)
        check_int(self, "block_size", minimum=1)

    @classmethod
    def from_form(cls, preset: dict, form: dict) -> dict:
        """A preset's model settings with the Train tab's values of this family's ``form_fields``."""
        return {**preset, **{name: value for name, value in form.items() if name in cls.form_fields}}

    def in_words(self) -> str:
        """What this model looks at to guess the next token, in one plain sentence from its own
        settings (Start here's ladder says what each rung adds)."""
        return f"a model over the last {self.block_size} tokens"


def check_int(config: Any, name: str, minimum: int | None = None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def check_fraction(config: Any, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_choice(config: Any, name: str, choices: tuple) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def config_from_dict(config_class: type, values: dict) -> Any:
    """Build a config from plain JSON values, refusing unknown keys and wrong types clearly."""
    if not isinstance(values, dict):
        raise ValueError(f"a {config_class.__name__} must be a JSON object, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {config_class.__name__} field(s): {', '.join(unknown)}; "
            f"known fields: {', '.join(known)}"
        )
    for name, value in values.items():
        expected = type(getattr(config_class(), name))
        # JSON has one number type: accept an int where a float is expected, nothing looser.
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if type(value) is not expected:
            raise ValueError(f"{config_class.__name__}.{name} must be {expected.__name__}, got {value!r}")
    return config_class(**values)


class HookPoint:
    """A named place in the forward pass whose tensor ``run_with_cache`` can keep (the idea of
    TransformerLens' ``HookPoint``). It hands its input back unchanged and keeps a detached copy
    only while it is asked for, so a forward that asks for nothing pays one attribute check per
    point. It is a plain object, not a module: a module's call machinery would cost more than it.
    """

    __slots__ = ("name", "kept")

    def __init__(self, name: str):
        self.name = name
        self.kept: dict[str, torch.Tensor] | None = None  # set by run_with_cache while asked for

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kept is not None:
            self.kept[self.name] = x.detach()
        return x

    @property
    def asked(self) -> bool:
        """Whether a caller wants this tensor: a family takes its spelled-out path for it."""
        return self.kept is not None

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (no dropout) inside the block, the model's own mode again after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass
class SavedActivations:
    """Bytes autograd keeps per token for the backward pass: ``per_layer`` rows, each kept by every
    one of ``layers`` layers, and ``outside`` for the rest (embeddings, final norm, head, loss)."""

    per_layer: dict[str, float]
    layers: int
    outside: float


def head_and_loss_bytes(width: int, vocab_size: int, bytes_per_value: int) -> int:
    """What the output head and the loss keep per token: the head's input, the log-probabilities
    (fp32 even under autocast) and the int64 target."""
    return width * bytes_per_value + vocab_size * 4 + 8


class LanguageModel(nn.Module):
    """A next-token predictor: ids ``(B, T)`` -> logits ``(B, T, V)`` and, given targets, the loss.

    ``forward(idx, targets=None, cache=None, last_position_only=False)`` returns ``(logits, loss)``;
    with a ``cache`` from ``new_cache()``, ``idx`` continues the positions the cache holds (and the
    cache still receives every position's keys and values when ``last_position_only`` is set). The
    class attributes and the methods below are each family's answers to what the rest of BabyGPT
    needs to know (see the module docstring); the defaults fit a family without attention and
    without a cache.
    """

    config: BaseConfig
    has_attention: ClassVar[bool] = False  # attention patterns to draw, heads to score
    lora_targets: ClassVar[tuple[str, ...]] = ()  # where babygpt.lora's adapters can sit
    # transformers keeps this family's projection weights as in x out (GPT-2's Conv1D): PEFT's fan_in_fan_out
    transformers_weights_transposed: ClassVar[bool] = False
    # the ``model_type`` values of transformers' config.json that this family imports
    transformers_model_types: ClassVar[tuple[str, ...]] = ()
    # whether it can generate with bf16 weights (babygpt.kernels.bfloat16_weights)
    generates_in_bf16: ClassVar[bool] = True

    # --- the computation ----------------------------------------------------------------------------

    def num_parameters(self, trainable_only: bool = False) -> int:
        # A tied head shares its tensor with the embedding; parameters() already counts it once.
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        if targets is None:
            return None
        if logits.shape[:-1] != targets.shape:  # last_position_only: one row of logits per sequence
            raise ValueError(f"a loss needs logits for every target position: got logits {tuple(logits.shape)} for "
                             f"targets {tuple(targets.shape)} (last_position_only is for generation)")
        # float() so a bf16 autocast forward still averages the loss in fp32.
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    @property
    def max_context(self) -> int | None:
        """The most tokens one forward sees; None when a recurrent state carries any length."""
        return self.config.block_size

    def check_input(self, idx: torch.Tensor, start: int = 0) -> None:
        """``start``: positions already in a cache before ``idx``."""
        if idx.dim() != 2:
            raise ValueError(f"expected token ids shaped (batch, time), got shape {tuple(idx.shape)}")
        if self.max_context is not None and start + idx.size(1) > self.max_context:
            cached = f" after {start} cached positions" if start else ""
            raise ValueError(
                f"sequence of {idx.size(1)} tokens{cached} is longer than block_size {self.config.block_size}"
            )

    # --- generation state ---------------------------------------------------------------------------

    def new_cache(self, batch_size: int = 1):
        """What generation carries from one step to the next (``forward(..., cache=)``): the KV cache
        of an attention family, the state of a recurrent one; None when nothing is worth keeping."""
        return None

    # --- looking inside -----------------------------------------------------------------------------

    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point of the model by name: a module's attributes, or the items of a list or
        dict attribute (one hook point per layer and gate, say)."""
        points = {}
        for module in self.modules():
            for value in vars(module).values():
                if isinstance(value, dict):
                    items = value.values()
                else:
                    items = value if isinstance(value, (list, tuple)) else [value]
                points.update((point.name, point) for point in items if isinstance(point, HookPoint))
        return points

    def run_with_cache(
        self, idx: torch.Tensor, names: Iterable[str] | Callable[[str], bool] | None = None, **forward_kwargs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, {name: tensor})``: one forward pass that keeps the hook points asked for.

        ``names``: a list of hook point names, a test on a name (``lambda n: n.endswith("pattern")``)
        or None for every one. The tensors come back detached, in the order the pass made them."""
        points = self.hook_points()
        if names is None:
            wanted = list(points)
        elif callable(names):
            wanted = [name for name in points if names(name)]
        else:
            wanted = list(names)
            unknown = [name for name in wanted if name not in points]
            if unknown:
                raise ValueError(f"{type(self).__name__} has no hook point {', '.join(map(repr, unknown))}; "
                                 f"it has: {', '.join(points)}")
        kept: dict[str, torch.Tensor] = {}
        for name in wanted:
            points[name].kept = kept
        try:
            logits, _ = self(idx, **forward_kwargs)
        finally:
            for name in wanted:
                points[name].kept = None
        return logits, kept

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits from a residual stream (the final norm and the head): the logit lens' readout."""
        raise ValueError(f"a {type(self).__name__} model has no residual stream to read out")

    # --- inside, stage by stage (the Inside tab; ``stages.py`` has the shared cards) ------------------

    def inside_choices(self) -> tuple[int, int]:
        """(layers, heads) a learner can pick from in the Inside tab; 0 where the family has none."""
        return 0, 0

    def inside_stages(self, view) -> list:
        """The forward pass at ``view.position`` as ``Stage`` cards, embeddings to logits, read from
        ``view.kept`` (every hook point of one pass): this family's own stages."""
        raise NotImplementedError(f"{type(self).__name__} has no Inside walk")

    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The arithmetic the stage cards describe, redone from the ids (1, T), the embeddings' hook
        points and the weights: ``{hook point: tensor}``, ending with ``logits``. A test holds it to
        the real pass."""
        raise NotImplementedError(f"{type(self).__name__} has no Inside walk")

    # --- counting -----------------------------------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by readable group, in reading order, for the stats breakdown. The default:
        one group per top-level module."""
        return {name: list(module.parameters()) for name, module in self.named_children()}

    def matrices(self) -> list[nn.Parameter]:
        """The weight matrices that multiply activations: what weight decay applies to (embedding
        tables aside) and what ``matmul_weights`` counts. The default: every ``nn.Linear`` weight."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The matrices between the input and the output: what Muon orthogonalises, while the
        embedding table and the output head stay with AdamW (as the modded-nanogpt speedrun does).
        The default: ``matrices()`` without embedding tables and without the layer that writes the
        logits (an ``nn.Linear`` with ``vocab_size`` outputs)."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        heads = {id(m.weight) for m in self.modules()
                 if isinstance(m, nn.Linear) and m.out_features == self.config.vocab_size}
        return [p for p in self.matrices() if id(p) not in embeddings | heads]

    def matmul_weights(self) -> int:
        """Weights multiplied once per token (2 FLOPs each): every matrix, a head tied to the
        embedding included; embedding lookups are indexing, not arithmetic."""
        return sum(p.numel() for p in self.matrices())

    def flop_formulas(self) -> dict:
        """FLOP formulas for ``torch.utils.flop_counter.FlopCounterMode`` of kernels it does not
        know (``custom_mapping``: op packet -> formula on shapes) that this family's forward runs."""
        return {}

    def attention_flops(self, context: int) -> int:
        """FLOPs per token of the attention scores and weighted sums at ``context`` tokens."""
        return 0

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        """What autograd keeps per token for the backward pass, tensor by tensor (``babygpt.stats``
        explains the conventions); ``bytes_per_value`` is 2 under bf16 autocast, else 4."""
        raise NotImplementedError(f"{type(self).__name__} does not count its activations")

    def autocast_weight_bytes(self) -> int:
        """What bf16 autocast adds for a training step: its bf16 copy of every matrix it casts."""
        return 2 * self.matmul_weights()

    # --- adapters and other libraries ---------------------------------------------------------------

    def lora_sites(self, targets: set[str]) -> Iterator[tuple[nn.Module, str, dict | None, bool]]:
        """``(parent module, attribute, parts, tied)`` for each ``nn.Linear`` that LoRA's ``targets``
        adapt: ``parts`` names blocks of a fused matrix's output rows (None: all of it), ``tied``
        says the weight is also the token embedding."""
        return iter(())

    def to_transformers(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """``(config.json, state dict)`` of the same model in Hugging Face transformers."""
        raise ValueError(f"transformers has no counterpart of the {type(self).__name__} model")

    def transformers_module_name(self, name: str) -> str:
        """A module's name in ``to_transformers``' model (for adapters exported to PEFT)."""
        return name

    @classmethod
    def config_from_transformers(cls, hf_config: dict) -> dict:
        """This family's config fields for a transformers ``config.json`` of ``transformers_model_types``,
        or a ``ValueError`` naming every feature of it the family cannot express."""
        raise ValueError(f"{cls.__name__} imports nothing from transformers")

    def state_from_transformers(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of ``to_transformers``: transformers' weights under this model's names."""
        raise ValueError(f"{type(self).__name__} imports nothing from transformers")


@dataclass(frozen=True)
class Family:
    """One entry of the registry: a name, its config class, its model class, its presets.

    Each preset is ``{"model": {config overrides}, "train": {TrainConfig overrides}}``.
    """

    name: str
    config_class: type
    model_class: type
    presets: dict[str, dict[str, dict]] = field(default_factory=dict)
    summary: str = ""  # one line for people: what the family is

    @property
    def has_attention(self) -> bool:
        return self.model_class.has_attention

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return self.model_class.lora_targets
