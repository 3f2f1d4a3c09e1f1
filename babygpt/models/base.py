"""What every model family shares: the config checks, the loss, and the family record.

A family is one file holding a config dataclass, an ``nn.Module`` and a few presets; the
registry in ``babygpt/models/__init__.py`` lists one ``Family`` per file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BaseConfig:
    """Fields every family has. ``vocab_size`` comes from the tokenizer, not from the user."""

    vocab_size: int = field(default=65, metadata={"help": "tokens in the vocabulary (set from the tokenizer)"})
    block_size: int = field(default=64, metadata={"help": "context length in tokens"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field; subclasses extend this."""
        check_int(self, "vocab_size", minimum=1)
        check_int(self, "block_size", minimum=1)


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


class LanguageModel(nn.Module):
    """A next-token predictor: ids ``(B, T)`` -> logits ``(B, T, V)`` and, given targets, the loss.

    ``forward(idx, targets=None, return_attention=False)`` returns ``(logits, loss)``, or
    ``(logits, loss, attention)`` with ``attention`` shaped ``(B, n_layer, n_head, T, T)`` when
    asked for. Families without attention raise ``ValueError`` when asked. Attention families also
    take ``cache=`` (a ``KVCache`` from ``new_cache()``): ``idx`` then continues the cached positions.
    """

    config: BaseConfig

    def num_parameters(self, trainable_only: bool = False) -> int:
        # A tied head shares its tensor with the embedding; parameters() already counts it once.
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        if targets is None:
            return None
        # float() so a bf16 autocast forward still averages the loss in fp32.
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    def new_cache(self, batch_size: int = 1):
        """A ``KVCache`` for ``forward(..., cache=)``, or None for families with nothing to cache."""
        return None

    def check_input(self, idx: torch.Tensor, start: int = 0) -> None:
        """``start``: positions already in a KV cache before ``idx``."""
        if idx.dim() != 2:
            raise ValueError(f"expected token ids shaped (batch, time), got shape {tuple(idx.shape)}")
        if start + idx.size(1) > self.config.block_size:
            cached = f" after {start} cached positions" if start else ""
            raise ValueError(
                f"sequence of {idx.size(1)} tokens{cached} is longer than block_size {self.config.block_size}"
            )

    def no_attention(self, return_attention: bool) -> None:
        if return_attention:
            raise ValueError(f"{type(self).__name__} has no attention weights to return")


@dataclass(frozen=True)
class Family:
    """One entry of the registry: a name, its config class, its model class, its presets.

    Each preset is ``{"model": {config overrides}, "train": {TrainConfig overrides}}``.
    """

    name: str
    config_class: type
    model_class: type
    presets: dict[str, dict[str, dict]] = field(default_factory=dict)
